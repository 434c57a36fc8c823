"""K-armed bandit agents: UCB1 (Auer, Cesa-Bianchi & Fischer 2002), Thompson sampling
(Beta-Bernoulli or Gaussian) and :class:`Boltzmann`, whose temperature comes from the maxent layer.

:class:`Boltzmann` plays pi proportional to exp(Q / alpha), alpha from
:mod:`maxent.entropy.temperature` (e.g. ``AutoTemperature`` steering the policy entropy to a
target, the same controller SAC uses). All three treat any discrete-action env as a K-armed bandit.
The planners and learners for LSD and recharging bandits live in :mod:`maxent.agents.planners` and
:mod:`maxent.agents.lsd`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import maxent.envs  # noqa: F401  (registers maxent/... ids, so load() can gym.make a saved id)
from maxent.agents.bandit_base import _Bandit, _pos_int
from maxent.entropy import categorical_entropy
from maxent.entropy.temperature import AutoTemperature, FixedTemperature, ScheduledTemperature
from maxent.training.agent import AgentConfig
from maxent.training.saved import Controller, Tensor, Value

__all__ = [
    "UCB1",
    "Boltzmann",
    "BoltzmannConfig",
    "Thompson",
    "ThompsonConfig",
    "UCB1Config",
]


class _MeanBandit(_Bandit):
    """Keeps per-arm pull counts and reward sums; the observation is ignored (a K-armed bandit)."""

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.reward_sums = np.zeros(self.n_arms, dtype=np.float64)
        self.reward_sq_sums = np.zeros(self.n_arms, dtype=np.float64)

    def means(self) -> np.ndarray:
        """Empirical mean reward per arm (0 for arms never pulled), shape (K,)."""
        return self.reward_sums / np.maximum(self.arm_counts, 1)

    def _observe(self, obs, arm, reward, next_obs) -> None:
        self.reward_sums[arm] += reward
        self.reward_sq_sums[arm] += reward * reward

    def _best_mean_arm(self) -> int:
        if not np.any(self.arm_counts):
            return 0
        return int(np.argmax(np.where(self.arm_counts > 0, self.means(), -np.inf)))

    def _policy_action(self, obs, deterministic) -> int:
        return self._best_mean_arm() if deterministic else self._act(obs)

    def _saved(self):
        return [*super()._saved(), Tensor("reward_sums", self, "reward_sums"),
                Tensor("reward_sq_sums", self, "reward_sq_sums")]


# =========================================================================== UCB1, Thompson


@dataclass
class UCB1Config(AgentConfig):
    """Settings of :class:`UCB1`.

    Attributes:
        c: exploration coefficient; index mean_a + sqrt(c ln t / n_a); 2.0 is UCB1.
    """

    c: float = 2.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.c) and self.c >= 0):
            raise ValueError(f"UCB1Config.c must be a finite number >= 0, got {self.c!r}")


class UCB1(_MeanBandit):
    """UCB1 (Auer et al. 2002): every arm once, then argmax mean + sqrt(c ln t / n); ties go to
    the lowest index. ``predict(deterministic=True)`` plays the best empirical mean.

    Args:
        env: any env with a ``Discrete`` action space (an id or an instance).
        config: a :class:`UCB1Config`; default ``UCB1Config()``.
        seed: seeds the episode resets.
    """

    kind = "UCB1"
    config_cls = UCB1Config

    def index(self) -> np.ndarray:
        """The UCB index of each arm (+inf for arms never pulled), shape (K,)."""
        n = self.arm_counts
        t = max(int(n.sum()), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(self.config.c * math.log(t) / n)
        return np.where(n > 0, self.means() + bonus, np.inf)

    def _act(self, obs) -> int:
        return int(np.argmax(self.index()))


_LIKELIHOODS = ("auto", "bernoulli", "gaussian")


@dataclass
class ThompsonConfig(AgentConfig):
    """Settings of :class:`Thompson`.

    Attributes:
        likelihood: "bernoulli" (Beta posterior; rewards in [0, 1], non-binary rewards are
            binarised by a Bernoulli(r) draw, Agrawal & Goyal 2012), "gaussian" (normal posterior
            with known noise) or "auto" (Bernoulli when the env says its rewards are Bernoulli,
            ``env.unwrapped.reward_kind``, else Gaussian).
        prior_alpha: Beta prior successes, > 0.
        prior_beta: Beta prior failures, > 0.
        noise_std: Gaussian reward noise standard deviation, > 0.
        prior_std: standard deviation of the Gaussian prior on each mean (centred at 0), > 0.
    """

    likelihood: str = "auto"
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    noise_std: float = 1.0
    prior_std: float = 10.0

    def __post_init__(self) -> None:
        if self.likelihood not in _LIKELIHOODS:
            raise ValueError(f"ThompsonConfig.likelihood must be one of {list(_LIKELIHOODS)}, "
                             f"got {self.likelihood!r}")
        for name in ("prior_alpha", "prior_beta", "noise_std", "prior_std"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"ThompsonConfig.{name} must be a finite number > 0, got {v!r}")


class Thompson(_MeanBandit):
    """Thompson sampling: draw a mean for every arm from its posterior, pull the largest.

    Args:
        env: any env with a ``Discrete`` action space.
        config: a :class:`ThompsonConfig`; default ``ThompsonConfig()``.
        seed: seeds posterior draws and resets.
    """

    kind = "Thompson"
    config_cls = ThompsonConfig

    def __init__(self, env: str | gym.Env, config: ThompsonConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        lik = self.config.likelihood
        if lik == "auto":
            lik = "bernoulli" if getattr(self.env.unwrapped, "reward_kind", None) == "bernoulli" \
                else "gaussian"
        self.likelihood = lik
        self.successes = np.zeros(self.n_arms)  # Bernoulli posterior counts

    def posterior_samples(self) -> np.ndarray:
        """One draw of every arm's mean from its posterior, shape (K,)."""
        cfg = self.config
        if self.likelihood == "bernoulli":
            a = cfg.prior_alpha + self.successes
            b = cfg.prior_beta + self.arm_counts - self.successes
            return self.np_rng.beta(a, b)
        prec = 1.0 / cfg.prior_std**2 + self.arm_counts / cfg.noise_std**2
        mean = (self.reward_sums / cfg.noise_std**2) / prec
        return mean + self.np_rng.standard_normal(self.n_arms) / np.sqrt(prec)

    def _act(self, obs) -> int:
        return int(np.argmax(self.posterior_samples()))

    def _observe(self, obs, arm, reward, next_obs) -> None:
        super()._observe(obs, arm, reward, next_obs)
        if self.likelihood == "bernoulli":
            if not 0.0 <= reward <= 1.0:
                raise ValueError(f"Bernoulli Thompson sampling needs rewards in [0, 1], got "
                                 f"{reward}; use ThompsonConfig(likelihood='gaussian')")
            # Binary rewards count as they are; others by a Bernoulli(r) draw.
            self.successes[arm] += reward if reward in (0.0, 1.0) else \
                float(self.np_rng.random() < reward)

    def _saved(self):
        return [*super()._saved(), Tensor("successes", self, "successes")]


# =========================================================================== Boltzmann


_TEMPERATURES = ("fixed", "scheduled", "auto")


@dataclass
class BoltzmannConfig(AgentConfig):
    """Settings of :class:`Boltzmann`.

    Attributes:
        temperature: "auto" (``AutoTemperature``: alpha by dual descent towards
            ``target_entropy`` of the policy), "fixed" (``FixedTemperature(alpha)``) or
            "scheduled" (``ScheduledTemperature(alpha, alpha_end, schedule_steps)``).
        alpha: the fixed alpha, the initial alpha of "auto", the start of "scheduled"; > 0.
        target_entropy: target policy entropy in nats for "auto", in (0, ln K); None means
            0.5 ln K.
        lr: Adam learning rate of log alpha for "auto", > 0.
        alpha_end: alpha at the end of the schedule, > 0.
        schedule_steps: length of the schedule in steps, >= 1.
        schedule: "linear", "exponential" or "cosine".
    """

    temperature: str = "auto"
    alpha: float = 1.0
    target_entropy: float | None = None
    lr: float = 0.02
    alpha_end: float = 0.01
    schedule_steps: int = 1000
    schedule: str = "exponential"

    def __post_init__(self) -> None:
        if self.temperature not in _TEMPERATURES:
            raise ValueError(f"BoltzmannConfig.temperature must be one of {list(_TEMPERATURES)}, "
                             f"got {self.temperature!r}")
        for name in ("alpha", "lr", "alpha_end"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"BoltzmannConfig.{name} must be a finite number > 0, got {v!r}")
        if self.target_entropy is not None and not (np.isfinite(self.target_entropy)
                                                    and self.target_entropy > 0):
            raise ValueError(f"BoltzmannConfig.target_entropy must be > 0 nats or None, got "
                             f"{self.target_entropy!r}")
        self.schedule_steps = _pos_int("schedule_steps", "BoltzmannConfig", self.schedule_steps)


class Boltzmann(_MeanBandit):
    """Softmax player pi(a) proportional to exp(Q_a / alpha), Q the empirical means, with alpha
    from a :mod:`maxent.entropy.temperature` controller: the layer that sets SAC's temperature sets this
    one. With ``temperature="auto"`` each step calls ``AutoTemperature.update(entropy=H(pi))``, which
    raises alpha while the policy entropy H(pi) (:func:`maxent.entropy.categorical_entropy`) is
    below the target and lowers it above.

    Args:
        env: any env with a ``Discrete`` action space.
        config: a :class:`BoltzmannConfig`; default ``BoltzmannConfig()``.
        seed: seeds the action draws and resets.

    Attributes:
        entropy_history: policy entropy at every step; ``alpha_history``: alpha at every step.
    """

    kind = "Boltzmann"
    config_cls = BoltzmannConfig

    def __init__(self, env: str | gym.Env, config: BoltzmannConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        cfg = self.config
        max_h = math.log(self.n_arms)
        self.target_entropy = 0.5 * max_h if cfg.target_entropy is None else cfg.target_entropy
        if cfg.temperature == "auto":
            if self.n_arms < 2 or not self.target_entropy < max_h:
                raise ValueError(f"BoltzmannConfig.target_entropy must lie in (0, ln K = "
                                 f"{max_h:.4f}) for K={self.n_arms} arms, got {self.target_entropy}")
            self.controller: Any = AutoTemperature(self.target_entropy, initial_alpha=cfg.alpha,
                                                   lr=cfg.lr)
        elif cfg.temperature == "fixed":
            self.controller = FixedTemperature(cfg.alpha)
        else:
            self.controller = ScheduledTemperature(cfg.alpha, cfg.alpha_end, cfg.schedule_steps,
                                                   schedule=cfg.schedule)
        self.entropy_history: list[float] = []
        self.alpha_history: list[float] = []

    @property
    def alpha(self) -> float:
        """The current temperature."""
        return float(self.controller.value)

    def logits(self) -> torch.Tensor:
        """Q / alpha, shape (K,), float64."""
        return torch.from_numpy(self.means()) / self.alpha

    def policy(self) -> np.ndarray:
        """pi = softmax(Q / alpha), shape (K,)."""
        return torch.softmax(self.logits(), -1).numpy()

    def policy_entropy(self) -> float:
        """H(pi) in nats."""
        return float(categorical_entropy(self.logits()))

    def _act(self, obs) -> int:
        p = self.policy()
        return int(min(np.searchsorted(np.cumsum(p), self.np_rng.random() * p.sum(),
                                       side="right"), self.n_arms - 1))

    def _observe(self, obs, arm, reward, next_obs) -> None:
        super()._observe(obs, arm, reward, next_obs)
        h = self.policy_entropy()
        self.entropy_history.append(h)
        self.alpha_history.append(self.alpha)
        if self.config.temperature == "auto":
            self.controller.update(entropy=torch.tensor(h))
        elif self.config.temperature == "scheduled":
            self.controller.update(step=self.num_timesteps)

    def _saved(self):
        floats = lambda v: [float(x) for x in v]  # noqa: E731
        return [*super()._saved(),
                Controller("controller", self.controller, kind=False, as_floats=True),
                Value("entropy_history", self, "entropy_history", load=floats),
                Value("alpha_history", self, "alpha_history", load=floats)]


# Names that moved to planners.py and lsd.py: importing them from here warns for one release.
_MOVED = {
    **{name: "planners" for name in (
        "BlockOracle", "ExactPlan", "StateGraph", "check_planner_memory", "exact_block_plan",
        "finite_horizon_values", "karp_memory_bytes", "max_mean_cycle", "recharging_lp",
        "sample_schedule", "schedule_long_run_average", "solve_long_run")},
    **{name: "lsd" for name in (
        "CombUCB1", "CombUCBConfig", "ExactPlanner", "GreedyConfig", "GreedyOracle",
        "ISICombUCB1", "LPConfig", "LPPlanner", "OptimisticConfig", "OptimisticPlanner",
        "PlannerConfig")},
}
REMOVED_IN = "0.3"


def __getattr__(name: str):
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'maxent.agents.bandits' has no attribute {name!r}")
    warnings.warn(f"maxent.agents.bandits.{name} moved to maxent.agents.{module}; import it from "
                  f"there (the old path is removed in maxent {REMOVED_IN})",
                  DeprecationWarning, stacklevel=2)
    return getattr(import_module(f"maxent.agents.{module}"), name)
