"""Temperature (alpha) controllers for maximum-entropy RL behind one small interface: fixed,
learned by dual descent on log alpha (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", Sec. 5, Eq. 18), or scheduled over training steps.

Every controller exposes ``value`` as a 0-dim float32 tensor so agents use alpha in tensor math
without a host sync, and checkpoints through ``state_dict`` holding only tensors and JSON scalars.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "AutoTemperature",
    "EntropyTargetController",
    "FixedCurriculum",
    "FixedTemperature",
    "GammaCurriculum",
    "LinearCurriculum",
    "ScheduledTemperature",
    "TemperatureController",
    "TemperatureCurriculum",
    "gamma_kl",
    "make_temperature",
]


@runtime_checkable
class TemperatureController(Protocol):
    """What an agent needs from a temperature: read alpha, step it, checkpoint it."""

    @property
    def value(self) -> Tensor:
        """Current alpha: a detached 0-dim float32 tensor, never changed in place later."""
        ...

    def update(self, *, entropy: Tensor | None = None, step: int | None = None) -> Tensor | None:
        """Advance the controller; returns a detached 0-dim loss tensor or None."""
        ...

    def state_dict(self) -> dict:
        """Checkpointable state: torch tensors and int/float/str values only."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""
        ...


def _check_keys(name: str, state: dict, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(
            f"{name}.load_state_dict: state is missing {missing}; pass a dict returned by "
            f"{name}.state_dict() (keys {list(keys)}), got keys {sorted(state)}"
        )


def _finite_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


class FixedTemperature:
    """A constant alpha; ``update`` does nothing. SAC with a hand-tuned temperature (Eq. 1).

    Args:
        alpha: the temperature, >= 0 (0 gives the standard, non-entropic objective).
        device: device of ``value``.
    """

    def __init__(self, alpha: float, *, device: torch.device | str = "cpu") -> None:
        alpha = _finite_float("alpha", alpha)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (0 disables the entropy bonus), got {alpha}")
        self._value = torch.tensor(alpha, dtype=torch.float32, device=device)

    @property
    def value(self) -> Tensor:
        """alpha, a 0-dim float32 tensor."""
        return self._value

    def update(self, *, entropy: Tensor | None = None, step: int | None = None) -> None:
        """No-op (alpha is constant); returns None."""

    def tensors(self) -> tuple[Tensor]:
        """``(alpha,)``: the state a compiled update reads (see :meth:`AutoTemperature.tensors`)."""
        return (self._value,)

    @staticmethod
    def value_from(tensors: tuple[Tensor]) -> Tensor:
        return tensors[0]

    def step_(self, tensors: tuple[Tensor], entropy: Tensor) -> None:
        """No-op, as :meth:`update`."""

    def state_dict(self) -> dict:
        """``{"alpha": float}``."""
        return {"alpha": float(self._value)}

    def load_state_dict(self, state: dict) -> None:
        """Restore alpha from ``state_dict()``."""
        _check_keys("FixedTemperature", state, ("alpha",))
        restored = FixedTemperature(state["alpha"], device=self._value.device)
        self._value.copy_(restored._value)  # in place: a compiled update holds this tensor

    def __repr__(self) -> str:
        return f"FixedTemperature(alpha={float(self._value):g})"


class AutoTemperature:
    """Learned alpha by dual gradient descent on log alpha toward a target entropy (Eq. 18).

    The loss is J(log alpha) = -log alpha * (log pi(a|s) + H_target).detach()
    = log alpha * (H - H_target) with H = -mean(log pi), as in Stable-Baselines3 and CleanRL, so
    dJ/d log alpha = H - H_target: alpha rises while the policy's entropy is below the target and
    falls while above. One Adam step is taken per ``update`` with exactly ``torch.optim.Adam``'s
    arithmetic (bias correction included), written in 0-dim tensor ops: no autograd, no optimizer
    object, no host sync, so it can sit inside a compiled or graph-captured update.

    Args:
        target_entropy: H_target in nats; SAC's heuristic is -dim(action space) for continuous
            actions.
        initial_alpha: alpha before the first update, > 0 (SB3 and CleanRL use 1.0).
        lr: Adam learning rate for log alpha, > 0.
        betas: Adam's (beta1, beta2), each in [0, 1).
        eps: Adam's epsilon, >= 0.
        device: device of ``log_alpha`` and of the optimizer state.
    """

    _STATE_KEYS = ("log_alpha", "exp_avg", "exp_avg_sq", "step", "target_entropy", "lr")

    def __init__(
        self,
        target_entropy: float,
        *,
        initial_alpha: float = 1.0,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        device: torch.device | str = "cpu",
    ) -> None:
        self.target_entropy = _finite_float("target_entropy", target_entropy)
        initial_alpha = _finite_float("initial_alpha", initial_alpha)
        if initial_alpha <= 0:
            raise ValueError(
                f"initial_alpha must be > 0 (alpha is learned as log alpha), got {initial_alpha}; "
                "use FixedTemperature(0.0) to turn the entropy bonus off"
            )
        self.lr = _finite_float("lr", lr)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr} (SAC's default is 3e-4)")
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        # log beta in float64 on the host; beta = 0 gives -inf, so the bias correction is 1.
        self._log_beta1 = math.log(self.betas[0]) if self.betas[0] > 0 else -math.inf
        self._log_beta2 = math.log(self.betas[1]) if self.betas[1] > 0 else -math.inf
        self.eps = _finite_float("eps", eps)
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        kw = {"dtype": torch.float32, "device": device}
        self.log_alpha = torch.tensor(math.log(initial_alpha), **kw)
        self._exp_avg = torch.zeros((), **kw)
        self._exp_avg_sq = torch.zeros((), **kw)
        self._step = torch.zeros((), **kw)  # float32, like torch.optim.Adam's step

    @property
    def value(self) -> Tensor:
        """alpha = exp(log_alpha), a fresh detached 0-dim float32 tensor."""
        return self.log_alpha.exp()

    def update(self, *, entropy: Tensor | None = None, step: int | None = None) -> Tensor:
        """One Adam step on log alpha; returns the loss log_alpha * (mean(entropy) - target).

        Args:
            entropy: entropy estimate of the current policy, e.g. ``-log_prob`` of fresh samples
                (any shape; averaged and detached). Required.
            step: ignored (accepted for the common interface).

        Returns:
            The temperature loss at the pre-step log alpha, a detached 0-dim tensor.
        """
        if entropy is None:
            raise ValueError(
                "AutoTemperature.update needs entropy=..., an entropy estimate such as "
                "-log_prob of actions sampled from the current policy"
            )
        return self.step_(self.tensors(), entropy)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(log_alpha, exp_avg, exp_avg_sq, step)``: the state :meth:`step_` updates in place."""
        return self.log_alpha, self._exp_avg, self._exp_avg_sq, self._step

    @staticmethod
    def value_from(tensors: tuple[Tensor, ...]) -> Tensor:
        """alpha from :meth:`tensors` (or copies of them)."""
        return tensors[0].exp()

    def step_(self, tensors: tuple[Tensor, Tensor, Tensor, Tensor], entropy: Tensor) -> Tensor:
        """:meth:`update`'s Adam step on the given state tensors (this controller's own, or copies
        of them: a compiled update traced on copies then runs on the real ones); reads only its
        arguments and this controller's hyperparameters. Returns the loss."""
        log_alpha, exp_avg, exp_avg_sq, step = tensors
        beta1, beta2 = self.betas
        # dJ/d log_alpha for J = log_alpha * (H - H_target).
        entropy = torch.as_tensor(entropy).detach()
        grad = entropy.to(log_alpha).mean() - self.target_entropy
        loss = log_alpha * grad
        # torch.optim.Adam's step with the step count and bias corrections kept on device.
        step += 1
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        # 1 - beta^t as -expm1(t log beta): float32-accurate; 1 - 0.999f ** t loses ~1e-5.
        neg_bias_correction1 = torch.expm1(step * self._log_beta1)
        bias_correction2_sqrt = torch.expm1(step * self._log_beta2).neg_().sqrt_()
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        # log_alpha -= lr / bias_correction1 * exp_avg / denom
        log_alpha.addcdiv_(exp_avg, neg_bias_correction1 * denom, value=self.lr)
        return loss

    def state_dict(self) -> dict:
        """log_alpha, exp_avg, exp_avg_sq, step (0-dim tensors, copied) and target_entropy, lr."""
        return {
            "log_alpha": self.log_alpha.clone(),
            "exp_avg": self._exp_avg.clone(),
            "exp_avg_sq": self._exp_avg_sq.clone(),
            "step": self._step.clone(),
            "target_entropy": self.target_entropy,
            "lr": self.lr,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``; tensors are copied onto this controller's device."""
        _check_keys("AutoTemperature", state, self._STATE_KEYS)
        for name, dst in (
            ("log_alpha", self.log_alpha),
            ("exp_avg", self._exp_avg),
            ("exp_avg_sq", self._exp_avg_sq),
            ("step", self._step),
        ):
            src = torch.as_tensor(state[name])
            if src.numel() != 1:
                raise ValueError(
                    f"AutoTemperature.load_state_dict: {name} must hold one value, got shape "
                    f"{tuple(src.shape)}"
                )
            dst.copy_(src.reshape(()))
        self.target_entropy = _finite_float("target_entropy", state["target_entropy"])
        self.lr = _finite_float("lr", state["lr"])

    def __repr__(self) -> str:
        return (
            f"AutoTemperature(target_entropy={self.target_entropy:g}, lr={self.lr:g}, "
            f"betas={self.betas}, eps={self.eps:g})"
        )


_SCHEDULES = ("linear", "exponential", "cosine")


class ScheduledTemperature:
    """alpha annealed from ``start`` to ``end`` over ``duration`` steps, then held at ``end``.

    With t clamped to [0, T] (T = duration):
      linear:      alpha(t) = start + (end - start) * t / T
      exponential: alpha(t) = start * (end / start) ** (t / T)      (start, end > 0)
      cosine:      alpha(t) = end + (start - end) * 0.5 * (1 + cos(pi * t / T))
    Used e.g. for the linear temperature-curriculum ablation of QARL (Reddi et al., ICLR 2024).

    Args:
        start: alpha at step 0, >= 0.
        end: alpha from step ``duration`` on, >= 0.
        duration: number of steps of the annealing, >= 1.
        schedule: one of "linear", "exponential", "cosine".
        device: device of ``value``.
    """

    def __init__(
        self,
        start: float,
        end: float,
        duration: int,
        *,
        schedule: str = "linear",
        device: torch.device | str = "cpu",
    ) -> None:
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {list(_SCHEDULES)}, got {schedule!r}")
        self.start = _finite_float("start", start)
        self.end = _finite_float("end", end)
        if self.start < 0 or self.end < 0:
            raise ValueError(f"start and end must be >= 0, got start={start}, end={end}")
        if schedule == "exponential" and (self.start <= 0 or self.end <= 0):
            raise ValueError(
                f"the exponential schedule needs start > 0 and end > 0, got start={start}, "
                f"end={end}; use schedule='linear' or 'cosine' to reach 0"
            )
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
            raise ValueError(f"duration must be an int >= 1 (steps), got {duration!r}")
        self.duration = duration
        self.schedule = schedule
        self.device = torch.device(device)
        self.step = 0
        self._value = self._make(self.alpha_at(0))

    def _make(self, alpha: float) -> Tensor:
        # torch.full launches a fill kernel: no host-to-device copy, no sync.
        return torch.full((), alpha, dtype=torch.float32, device=self.device)

    def alpha_at(self, step: int) -> float:
        """The scheduled alpha at ``step`` as a Python float (formulas in the class docstring)."""
        frac = min(max(step, 0), self.duration) / self.duration
        if self.schedule == "linear":
            return self.start + (self.end - self.start) * frac
        if self.schedule == "exponential":
            return self.start * (self.end / self.start) ** frac
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * frac))

    @property
    def value(self) -> Tensor:
        """alpha at the last ``update`` step, a 0-dim float32 tensor (replaced, not mutated)."""
        return self._value

    def update(self, *, entropy: Tensor | None = None, step: int | None = None) -> None:
        """Set alpha to the schedule's value at ``step`` (required); ``entropy`` is ignored."""
        if step is None:
            raise ValueError(
                "ScheduledTemperature.update needs step=..., the training step to read the "
                "schedule at"
            )
        self.step = int(step)
        self._value = self._make(self.alpha_at(self.step))

    def state_dict(self) -> dict:
        """start, end, duration, schedule and the last step, all JSON scalars."""
        return {
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "schedule": self.schedule,
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``."""
        _check_keys("ScheduledTemperature", state, ("start", "end", "duration", "schedule", "step"))
        restored = ScheduledTemperature(
            state["start"],
            state["end"],
            int(state["duration"]),
            schedule=state["schedule"],
            device=self.device,
        )
        restored.update(step=int(state["step"]))
        self.__dict__.update(restored.__dict__)

    def __repr__(self) -> str:
        return (
            f"ScheduledTemperature(start={self.start:g}, end={self.end:g}, "
            f"duration={self.duration}, schedule={self.schedule!r})"
        )


class EntropyTargetController(AutoTemperature):
    """Entropy-bonus coefficient of a token-level policy gradient, steered towards a target entropy.

    The same dual descent as SAC's alpha (Eq. 18), applied to the masked mean token entropy of a
    language model's completions: the loss the policy sees is ``pg_loss - value * H_tokens`` and
    ``update(entropy=H_tokens)`` raises the coefficient while H is below ``target_entropy`` and
    lowers it while above. Unlike SAC's alpha the coefficient is capped at ``max_coef``: a bonus
    that grows without bound turns the policy into uniform noise over the vocabulary before the
    controller can react (entropy responds to it with a delay of several updates).

    Args:
        target_entropy: target token entropy in nats, > 0 (e.g. 0.3 to hold a math model near its
            initial exploration level).
        initial_coef: coefficient before the first update, > 0.
        lr: Adam learning rate on log(coef); token entropy moves slowly, so larger than SAC's.
        max_coef: upper bound on the coefficient, > initial_coef.
        device: device of the state tensors.
    """

    _STATE_KEYS = AutoTemperature._STATE_KEYS + ("max_coef",)

    def __init__(self, target_entropy: float, *, initial_coef: float = 1e-3, lr: float = 1e-2,
                 max_coef: float = 0.1, device: torch.device | str = "cpu") -> None:
        target_entropy = _finite_float("target_entropy", target_entropy)
        if target_entropy <= 0:
            raise ValueError(f"target_entropy must be > 0 nats for token entropy, got {target_entropy}")
        max_coef = _finite_float("max_coef", max_coef)
        if not max_coef > initial_coef:
            raise ValueError(f"max_coef must exceed initial_coef ({initial_coef}), got {max_coef}")
        super().__init__(target_entropy, initial_alpha=initial_coef, lr=lr, device=device)
        self.max_coef = max_coef

    def update(self, *, entropy: Tensor | None = None, step: int | None = None) -> Tensor:
        loss = super().update(entropy=entropy, step=step)
        self.log_alpha.clamp_(max=math.log(self.max_coef))
        return loss

    def state_dict(self) -> dict:
        return {**super().state_dict(), "max_coef": self.max_coef}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)  # checks every key, max_coef included
        self.max_coef = _finite_float("max_coef", state["max_coef"])

    def __repr__(self) -> str:
        return (f"EntropyTargetController(target_entropy={self.target_entropy:g}, lr={self.lr:g}, "
                f"max_coef={self.max_coef:g})")


_KINDS = {"fixed": FixedTemperature, "auto": AutoTemperature, "scheduled": ScheduledTemperature,
          "entropy_target": EntropyTargetController}


def make_temperature(kind: str, **kwargs: Any) -> TemperatureController:
    """Build a controller by name: "fixed" | "auto" | "scheduled" |
    "entropy_target", kwargs to its constructor.

    Example: ``make_temperature("auto", target_entropy=-6.0, lr=3e-4)``.
    """
    try:
        cls = _KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown temperature kind {kind!r}; choose one of {list(_KINDS)}"
        ) from None
    return cls(**kwargs)


# --------------------------------------------------------------------------- curricula (QARL)
# The adversary temperature of QARL (Reddi et al., ICLR 2024, "Robust Adversarial RL via Bounded
# Rationality Curricula") is not learned: each episode draws alpha from a curriculum that starts
# with a near-random adversary and ends near a fully rational one. A curriculum is a temperature
# controller with three more methods: ``sample`` (draw an episode's alpha), ``observe`` (report the
# protagonist's discounted return at that alpha) and ``concentration``-like state in state_dict.


@runtime_checkable
class TemperatureCurriculum(TemperatureController, Protocol):
    """A distribution over the adversary temperature, moved by the protagonist's performance."""

    def sample(self, rng: Any, n: int | None = None) -> Any:
        """alpha for the next episode(s), drawn with the numpy Generator ``rng``."""
        ...

    def observe(self, alpha: float, performance: float) -> bool:
        """Record (alpha, discounted return); True when the distribution was updated."""
        ...


def gamma_kl(concentration_p: float, concentration_q: float) -> float:
    """KL(Gamma(k_p, b) || Gamma(k_q, b)) for a shared rate b:
    (k_p - k_q) digamma(k_p) - lgamma(k_p) + lgamma(k_q)."""
    from scipy.special import digamma, gammaln

    kp, kq = float(concentration_p), float(concentration_q)
    return float((kp - kq) * digamma(kp) - gammaln(kp) + gammaln(kq))


def _gamma_kl_grad(kp: float, kq: float) -> float:
    from scipy.special import polygamma

    return float((kp - kq) * polygamma(1, kp))  # d/dk_p of gamma_kl


def _gamma_log_pdf(alpha: Any, concentration: float, rate: float) -> Any:
    import numpy as np
    from scipy.special import gammaln

    return (concentration * math.log(rate) - gammaln(concentration)
            + (concentration - 1.0) * np.log(alpha) - rate * alpha)


class GammaCurriculum:
    """Self-paced Gamma teacher of QARL (Klink et al.'s self-paced RL applied to the temperature).

    alpha ~ Gamma(k, rate), rate fixed. After every ``samples_per_update`` observed pairs
    (alpha_i, J_i) (J = the protagonist's discounted return), the new concentration solves

        min_k KL(Gamma(k) || Gamma(k_target))
        s.t.  KL(Gamma(k) || Gamma(k_old)) <= max_kl,
              mean_i[p_k(alpha_i) / p_k_old(alpha_i) * J_i] >= performance_bound,  k >= min_concentration

    with scipy's SLSQP. The distribution is frozen while the expected return under the current
    distribution, mean(J_i), is below the bound (it moves only when the bound holds). Once
    KL(current || target) <= ``target_kl_threshold`` the constraints are dropped and the
    distribution is set to the target (the unconstrained minimiser).

    Args:
        initial_concentration: k at the start (paper: 50, mean alpha 0.05), > 0.
        target_concentration: k of the target (paper: 1, mean alpha 0.001), > 0.
        rate: the Gamma's fixed rate (paper: 1000), > 0.
        max_kl: bound on KL(new || old) per update (paper: 0.5), > 0.
        performance_bound: discounted return the protagonist must reach (task-specific).
        samples_per_update: (alpha, return) pairs per update (paper: 30), >= 2.
        target_kl_threshold: KL to the target below which the curriculum is unconstrained (0.01).
        min_concentration: lower bound on k while constrained, > 0.
        alpha_bounds: (low, high) clip of sampled alphas.
        device: device of ``value``.
    """

    def __init__(self, initial_concentration: float = 50.0, target_concentration: float = 1.0, *,
                 rate: float = 1000.0, max_kl: float = 0.5, performance_bound: float = 0.0,
                 samples_per_update: int = 30, target_kl_threshold: float = 0.01,
                 min_concentration: float = 1e-8, alpha_bounds: tuple[float, float] = (0.0, math.inf),
                 device: torch.device | str = "cpu") -> None:
        for name, value in (("initial_concentration", initial_concentration),
                            ("target_concentration", target_concentration), ("rate", rate),
                            ("max_kl", max_kl), ("min_concentration", min_concentration)):
            if not _finite_float(name, value) > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if isinstance(samples_per_update, bool) or int(samples_per_update) != samples_per_update \
                or samples_per_update < 2:
            raise ValueError(f"samples_per_update must be an int >= 2, got {samples_per_update!r}")
        if not _finite_float("target_kl_threshold", target_kl_threshold) >= 0:
            raise ValueError(f"target_kl_threshold must be >= 0, got {target_kl_threshold}")
        low, high = float(alpha_bounds[0]), float(alpha_bounds[1])
        if not 0 <= low < high:
            raise ValueError(f"alpha_bounds must be (low, high) with 0 <= low < high, got {alpha_bounds}")
        self.concentration = float(initial_concentration)
        self.target_concentration = float(target_concentration)
        self.rate = float(rate)
        self.max_kl = float(max_kl)
        self.performance_bound = _finite_float("performance_bound", performance_bound)
        self.samples_per_update = int(samples_per_update)
        self.target_kl_threshold = float(target_kl_threshold)
        self.min_concentration = float(min_concentration)
        self.alpha_bounds = (low, high)
        self.device = torch.device(device)
        self.n_updates = 0           # distribution updates attempted
        self.n_moves = 0             # of which changed k
        self.bound_reached = False   # the performance bound was met at least once
        self.last_info: dict[str, Any] = {}
        self._alphas: list[float] = []
        self._performances: list[float] = []

    # ------------------------------------------------------------------ the distribution
    @property
    def value(self) -> Tensor:
        """Mean alpha k / rate, a 0-dim float32 tensor."""
        return torch.full((), self.concentration / self.rate, dtype=torch.float32, device=self.device)

    def target_kl(self) -> float:
        """KL(current || target)."""
        return gamma_kl(self.concentration, self.target_concentration)

    def sample(self, rng: Any, n: int | None = None) -> Any:
        """Draw alpha ~ Gamma(k, rate) (clipped to ``alpha_bounds``) with numpy Generator ``rng``;
        a float, or an array of ``n``."""
        import numpy as np

        draw = rng.gamma(self.concentration, 1.0 / self.rate, size=n)
        draw = np.clip(draw, *self.alpha_bounds)
        return float(draw) if n is None else draw

    def update(self, *, entropy: Tensor | None = None, step: int | None = None) -> None:
        """No-op: the distribution moves in :meth:`observe` (common controller interface)."""

    def observe(self, alpha: float, performance: float) -> bool:
        """Buffer one (alpha, discounted return) pair; update once ``samples_per_update`` are in."""
        self._alphas.append(float(alpha))
        self._performances.append(_finite_float("performance", performance))
        if len(self._alphas) < self.samples_per_update:
            return False
        alphas, performances = self._alphas, self._performances
        self._alphas, self._performances = [], []
        self.update_distribution(alphas, performances)
        return True

    def expected_performance(self, concentration: float, alphas: Any, performances: Any,
                             old_concentration: float | None = None) -> float:
        """Importance-weighted mean return mean_i[p_k(a_i) / p_old(a_i) * J_i] (old = current k)."""
        import numpy as np

        old = self.concentration if old_concentration is None else old_concentration
        alphas = np.maximum(np.asarray(alphas, dtype=np.float64), 1e-300)
        log_w = _gamma_log_pdf(alphas, concentration, self.rate) - _gamma_log_pdf(alphas, old, self.rate)
        return float(np.mean(np.exp(log_w) * np.asarray(performances, dtype=np.float64)))

    def update_distribution(self, alphas: Any, performances: Any) -> dict[str, Any]:
        """One teacher step on these pairs (see the class docstring); returns what happened in
        ``{"moved", "reason", "concentration", "kl_step", "expected_performance"}``."""
        import numpy as np
        from scipy.optimize import minimize
        from scipy.special import digamma

        alphas = np.maximum(np.asarray(alphas, dtype=np.float64).reshape(-1), 1e-300)
        perf = np.asarray(performances, dtype=np.float64).reshape(-1)
        if alphas.shape != perf.shape or alphas.size == 0:
            raise ValueError(f"alphas and performances must be non-empty and of equal length, got "
                             f"{alphas.size} and {perf.size}")
        old = self.concentration
        self.n_updates += 1
        current = float(perf.mean())
        info: dict[str, Any] = {"moved": False, "concentration": old, "kl_step": 0.0,
                                "expected_performance": current}
        if self.target_kl() <= self.target_kl_threshold:
            self.concentration = self.target_concentration
            info.update(moved=old != self.concentration, reason="unconstrained: at target",
                        concentration=self.concentration,
                        kl_step=gamma_kl(self.concentration, old))
            self.n_moves += int(info["moved"])
            self.last_info = info
            return info
        if current < self.performance_bound:
            info["reason"] = "frozen: below performance bound" if not self.bound_reached else \
                "held: below performance bound"
            self.last_info = info
            return info
        self.bound_reached = True
        target, log_rate = self.target_concentration, math.log(self.rate)

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            k = float(x[0])
            return gamma_kl(k, target), np.array([_gamma_kl_grad(k, target)])

        def kl_slack(x: np.ndarray) -> float:
            return self.max_kl - gamma_kl(float(x[0]), old)

        def perf_slack(x: np.ndarray) -> float:
            return self.expected_performance(float(x[0]), alphas, perf, old) - self.performance_bound

        def perf_slack_grad(x: np.ndarray) -> np.ndarray:
            k = float(x[0])
            log_w = _gamma_log_pdf(alphas, k, self.rate) - _gamma_log_pdf(alphas, old, self.rate)
            dlog = log_rate - digamma(k) + np.log(alphas)
            return np.array([np.mean(np.exp(log_w) * perf * dlog)])

        result = minimize(
            objective, np.array([old]), jac=True, method="SLSQP",
            bounds=[(self.min_concentration, None)],
            constraints=[{"type": "ineq", "fun": kl_slack,
                          "jac": lambda x: np.array([-_gamma_kl_grad(float(x[0]), old)])},
                         {"type": "ineq", "fun": perf_slack, "jac": perf_slack_grad}],
            options={"ftol": 1e-10, "maxiter": 200})
        candidate = float(result.x[0]) if np.all(np.isfinite(result.x)) else old

        def feasible(k: float) -> bool:
            return (k >= self.min_concentration and gamma_kl(k, old) <= self.max_kl
                    and perf_slack(np.array([k])) >= 0)

        if not feasible(candidate):
            # Walk back towards the old k (always feasible here) to the last feasible point: the
            # step bound is then never exceeded, whatever the optimiser returned.
            lo, hi = 0.0, 1.0
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                if feasible(old + mid * (candidate - old)):
                    lo = mid
                else:
                    hi = mid
            candidate = old + lo * (candidate - old)
        if gamma_kl(candidate, target) < gamma_kl(old, target):
            self.concentration = candidate
        info.update(moved=self.concentration != old, concentration=self.concentration,
                    kl_step=gamma_kl(self.concentration, old),
                    expected_performance=self.expected_performance(self.concentration, alphas, perf, old),
                    reason="moved towards target" if self.concentration != old else "no feasible move")
        self.n_moves += int(info["moved"])
        self.last_info = info
        return info

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Settings, k, counters (JSON scalars) and the buffered pairs (a float64 tensor (n, 2))."""
        return {
            "concentration": self.concentration, "target_concentration": self.target_concentration,
            "rate": self.rate, "max_kl": self.max_kl, "performance_bound": self.performance_bound,
            "samples_per_update": self.samples_per_update,
            "target_kl_threshold": self.target_kl_threshold,
            "min_concentration": self.min_concentration,
            "alpha_low": self.alpha_bounds[0], "alpha_high": self.alpha_bounds[1],
            "n_updates": self.n_updates, "n_moves": self.n_moves,
            "bound_reached": int(self.bound_reached),
            "buffer": torch.tensor([self._alphas, self._performances], dtype=torch.float64).T.reshape(-1, 2),
        }

    _STATE_KEYS = ("concentration", "target_concentration", "rate", "max_kl", "performance_bound",
                   "samples_per_update", "target_kl_threshold", "min_concentration", "alpha_low",
                   "alpha_high", "n_updates", "n_moves", "bound_reached", "buffer")

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``."""
        _check_keys("GammaCurriculum", state, self._STATE_KEYS)
        restored = GammaCurriculum(
            state["concentration"], state["target_concentration"], rate=state["rate"],
            max_kl=state["max_kl"], performance_bound=state["performance_bound"],
            samples_per_update=int(state["samples_per_update"]),
            target_kl_threshold=state["target_kl_threshold"],
            min_concentration=state["min_concentration"],
            alpha_bounds=(float(state["alpha_low"]), float(state["alpha_high"])), device=self.device)
        restored.n_updates, restored.n_moves = int(state["n_updates"]), int(state["n_moves"])
        restored.bound_reached = bool(state["bound_reached"])
        buffer = torch.as_tensor(state["buffer"], dtype=torch.float64).reshape(-1, 2)
        restored._alphas = buffer[:, 0].tolist()
        restored._performances = buffer[:, 1].tolist()
        self.__dict__.update(restored.__dict__)

    def __repr__(self) -> str:
        return (f"GammaCurriculum(concentration={self.concentration:g}, "
                f"target={self.target_concentration:g}, rate={self.rate:g}, max_kl={self.max_kl:g}, "
                f"performance_bound={self.performance_bound:g})")


class LinearCurriculum(ScheduledTemperature):
    """QARL's linear ablation: alpha falls linearly from ``start`` (0.05) to ``end`` (0.001) over
    ``duration`` steps (the paper: the first 2/3 of training), then stays; every episode uses the
    schedule's value at the step it starts (``update(step=...)``). Args as
    :class:`ScheduledTemperature` with ``schedule="linear"``."""

    def __init__(self, start: float = 0.05, end: float = 0.001, duration: int = 1, *,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(start, end, duration, schedule="linear", device=device)

    def sample(self, rng: Any, n: int | None = None) -> Any:
        """The scheduled alpha (no randomness; ``rng`` is unused)."""
        import numpy as np

        alpha = self.alpha_at(self.step)
        return alpha if n is None else np.full(n, alpha)

    def observe(self, alpha: float, performance: float) -> bool:
        """Ignored (the schedule does not depend on performance); returns False."""
        return False

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict({**state, "schedule": "linear"})


class FixedCurriculum(FixedTemperature):
    """QARL's fixed-temperature ablation (and RARL with a small alpha): every episode uses ``alpha``."""

    def sample(self, rng: Any, n: int | None = None) -> Any:
        """alpha (no randomness; ``rng`` is unused)."""
        import numpy as np

        alpha = float(self._value)
        return alpha if n is None else np.full(n, alpha)

    def observe(self, alpha: float, performance: float) -> bool:
        """Ignored; returns False."""
        return False

    def __repr__(self) -> str:
        return f"FixedCurriculum(alpha={float(self._value):g})"


_KINDS.update({"gamma_curriculum": GammaCurriculum, "linear_curriculum": LinearCurriculum,
               "fixed_curriculum": FixedCurriculum})
