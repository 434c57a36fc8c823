"""The homeostatic learner: an MLP classifier whose own learning rate is excited or inhibited by
the classes it perceives, and which decides, from a simulated update on recent samples, whether to
"take" the effect of what it sees (Man, Damasio & Neven 2022, "Need is All You Need: Homeostatic
Neural Networks Adapt to Concept Shift"; facts checked against the authors' code,
kingsonman/homeostatic-neural-networks, ``lrh.py`` and ``lrr.py``).

Learning-rate regulation (``HomeostaticConfig.regulation``):

* ``"homeostatic"``: every ``decision_every``-th sample, once ``memory`` samples are remembered,
  simulate one SGD step with the gradient accumulated so far in the current mini-batch, twice:
  with η unchanged ("leave it") and with η shifted by the effect of the *predicted* label
  ("take it": classes ≥ ``excite_from`` excite, η + η₀/10; the others inhibit, η − η₀/10). Score
  both on the last ``memory`` samples (the authors count correct predictions, strictly better
  wins; ``criterion="loss"`` compares cross-entropy instead). If "take it" wins, the *true*
  label's effect is applied, so a misperceived digit moves η the wrong way.
* ``"random"``: every ``decision_every``-th sample, on a fair coin flip, apply the true label's
  effect (the authors' random-regulation baseline).
* ``"constant"``: η = η₀ throughout.

η never falls below ``min_lr`` (1e-8). Network and SGD follow the authors: ELU hidden layers
(784-80-60-10 for MNIST; 64-80-60-10 for sklearn digits), softmax cross-entropy, weights
N(0, 2/fan_in), biases N(0, 1), plain SGD on mini-batches of 10 with step η·mean gradient.

The learner plays :class:`maxent.envs.concept_shift.ConceptShiftClassification`: the observation
is an image, its action the predicted label, and after acting it trains supervised on the true
label the env returns in ``info["label"]`` (the reward alone, correct or not, would not say which
label was right).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import maxent.envs  # noqa: F401  (registers maxent/... ids, so load() can gym.make a saved id)
from maxent.training.agent import Agent, AgentConfig
from maxent.training.config import check_choice, check_range
from maxent.training.saved import Array, Check, NumpyRNG, Tensor, Value

__all__ = ["REGULATIONS", "HomeostaticConfig", "HomeostaticLearner"]

REGULATIONS = ("homeostatic", "random", "constant")
ONLINE_ACCURACY = "rollout/accuracy"
LEARNING_RATE = "train/learning_rate"
CRITERIA = ("accuracy", "loss")


@dataclass
class HomeostaticConfig(AgentConfig):
    """Settings of :class:`HomeostaticLearner` (defaults are the authors').

    Attributes:
        hidden: hidden layer widths; default (80, 60).
        lr: η₀, the initial (and, for ``"constant"``, fixed) learning rate; default 1e-3.
        batch_size: samples per SGD step; default 10.
        regulation: ``"homeostatic"``, ``"random"`` or ``"constant"``; default ``"homeostatic"``.
        lr_step: how much one excitatory/inhibitory effect moves η; default None = lr / 10.
        min_lr: the floor of η; default 1e-8.
        excite_from: classes >= this excite (raise η), the others inhibit; default 5.
        decision_every: samples between regulation opportunities; default 10.
        memory: recent samples the homeostatic decision is scored on; default 20.
        criterion: ``"accuracy"`` (count of correct predictions on the memory; "take it" must be
            strictly better, as in the authors' code) or ``"loss"`` (mean cross-entropy);
            default ``"accuracy"``.
        coin: probability that the random regulator applies an effect; default 0.5.
        elu_alpha: the ELU parameter; default 1.0.
    """

    hidden: tuple[int, ...] = (80, 60)
    lr: float = 1e-3
    batch_size: int = 10
    regulation: str = "homeostatic"
    lr_step: float | None = None
    min_lr: float = 1e-8
    excite_from: int = 5
    decision_every: int = 10
    memory: int = 20
    criterion: str = "accuracy"
    coin: float = 0.5
    elu_alpha: float = 1.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.hidden = tuple(self.hidden)
        if any(isinstance(h, bool) or int(h) != h or h < 1 for h in self.hidden):
            raise ValueError(f"{name}.hidden must be positive integers, got {self.hidden!r}")
        self.hidden = tuple(int(h) for h in self.hidden)
        self.require_counts(("batch_size", "decision_every", "memory"))
        if not self.min_lr > 0:
            raise ValueError(f"{name}.min_lr must be > 0, got {self.min_lr!r}")
        if not self.lr >= self.min_lr:
            raise ValueError(f"{name}.lr must be >= min_lr = {self.min_lr}, got {self.lr!r}")
        if self.lr_step is not None and not self.lr_step >= 0:
            raise ValueError(f"{name}.lr_step must be >= 0 or None (= lr / 10), got "
                             f"{self.lr_step!r}")
        check_choice(name, "regulation", self.regulation, REGULATIONS)
        check_choice(name, "criterion", self.criterion, CRITERIA)
        check_range(name, "coin", self.coin, 0, 1, kind="a probability")
        if not self.elu_alpha > 0:
            raise ValueError(f"{name}.elu_alpha must be > 0, got {self.elu_alpha!r}")
        if isinstance(self.excite_from, bool) or int(self.excite_from) != self.excite_from:
            raise ValueError(f"{name}.excite_from must be an integer class, got "
                             f"{self.excite_from!r}")
        self.excite_from = int(self.excite_from)

    @property
    def step(self) -> float:
        """The size of one excitatory/inhibitory effect on η."""
        return self.lr / 10 if self.lr_step is None else float(self.lr_step)


# --------------------------------------------------------------------------- the network


def _elu(z: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))


def _elu_grad(z: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))


def forward(params: list[np.ndarray], x: np.ndarray, alpha: float = 1.0
            ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Softmax MLP with ELU hidden layers on a batch ``x`` (B, D).

    ``params`` is [W1 (H1, D), b1 (H1,), ..., WL (C, H), bL (C,)]. Returns the class
    probabilities (B, C), the pre-activations z of each hidden layer and the inputs a of each layer
    (for backpropagation).
    """
    a, zs, acts = x, [], []
    n_layers = len(params) // 2
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        acts.append(a)
        z = a @ w.T + b
        if i < n_layers - 1:
            zs.append(z)
            a = _elu(z, alpha)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True), zs, acts


def gradients(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, alpha: float = 1.0
              ) -> list[np.ndarray]:
    """Cross-entropy gradients *summed* over the batch (the authors sum per-sample gradients and
    step by η / batch_size), in ``params`` order. ``x`` (B, D), ``y`` (B,) int labels."""
    p, zs, acts = forward(params, x, alpha)
    err = p
    err[np.arange(len(y)), y] -= 1.0  # (B, C): dL/dz of the output layer
    n_layers = len(params) // 2
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for i in reversed(range(n_layers)):
        grads[2 * i] = err.T @ acts[i]
        grads[2 * i + 1] = err.sum(axis=0)
        if i > 0:
            err = (err @ params[2 * i]) * _elu_grad(zs[i - 1], alpha)
    return grads


def init_params(sizes: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """The authors' initialisation: W ~ N(0, 2 / fan_in), b ~ N(0, 1)."""
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        params.append(rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in))
        params.append(rng.standard_normal(fan_out))
    return params


# --------------------------------------------------------------------------- the agent


class HomeostaticLearner(Agent):
    """An MLP classifier that regulates its own learning rate (Man, Damasio & Neven 2022).

    Args:
        env: a :class:`~maxent.envs.concept_shift.ConceptShiftClassification` or any env with a
            flat ``Box`` observation, a ``Discrete`` action (the label) and ``info["label"]``;
            or a registered id; default ``"maxent/ConceptShiftDigits-v0"``.
        config: a :class:`HomeostaticConfig`; default ``HomeostaticConfig()``.
        seed: seeds the weights, the random regulator and the episode resets.

    Attributes:
        eta: the current learning rate η.
        correct: 1.0/0.0 per step, whether the action (prediction) was right (online accuracy).
        lr_history: η after each SGD step.
        decisions, taken: regulation opportunities so far, and those where an effect was applied.
    """

    config_cls = HomeostaticConfig

    def __init__(self, env: str | gym.Env = "maxent/ConceptShiftDigits-v0",
                 config: HomeostaticConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        if not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise TypeError(f"HomeostaticLearner needs a Discrete action space of labels, got "
                            f"{self.env.action_space}")
        space = self.env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"HomeostaticLearner needs flat Box observations (D,), got {space}; "
                             "flatten images with gymnasium.wrappers.FlattenObservation")
        self.n_classes = int(self.env.action_space.n)
        self.obs_dim = int(space.shape[0])
        self.sizes = (self.obs_dim, *self.config.hidden, self.n_classes)
        self.params = init_params(self.sizes, np.random.default_rng([self.seed, 1]))
        self.eta = float(self.config.lr)
        self.correct: list[float] = []
        self.lr_history: list[float] = []
        self.decisions = 0
        self.taken = 0
        # the current mini-batch and the memory of recent samples, as seen (label at that time)
        self._batch_x = np.zeros((self.config.batch_size, self.obs_dim))
        self._batch_y = np.zeros(self.config.batch_size, dtype=np.int64)
        self._batch_n = 0
        self._mem_x = np.zeros((self.config.memory, self.obs_dim))
        self._mem_y = np.zeros(self.config.memory, dtype=np.int64)
        self._mem_n = 0  # samples remembered so far (saturates at memory)
        self._mem_pos = 0  # ring-buffer write position
        self._obs: np.ndarray | None = None

    # -- classification
    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for images ``x`` (B, D) or (D,), shape (B, C) or (C,)."""
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        if x.shape[-1] != self.obs_dim:
            raise ValueError(f"expected images with {self.obs_dim} features, got shape {x.shape}")
        p = forward(self.params, x.reshape(-1, self.obs_dim), self.config.elu_alpha)[0]
        return p[0] if single else p

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of ``images`` (M, D) classified as ``labels`` (M,)."""
        return float(np.mean(np.argmax(self.probabilities(images), axis=1) == np.asarray(labels)))

    def predict(self, observation: Any, deterministic: bool = True) -> int | np.ndarray:
        """The predicted label (argmax), or a label sampled from the softmax when not
        ``deterministic``; an array of labels for a batch (B, D)."""
        p = self.probabilities(observation)
        if deterministic:
            return np.argmax(p, axis=-1) if p.ndim == 2 else int(np.argmax(p))
        if p.ndim == 1:
            return int(self.np_rng.choice(self.n_classes, p=p))
        u = self.np_rng.random((p.shape[0], 1))
        return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), self.n_classes - 1)

    # -- regulation
    def _effect(self, label: int) -> float:
        """η after the effect of perceiving class ``label``: excitation or inhibition."""
        step = self.config.step
        eta = self.eta + step if label >= self.config.excite_from else self.eta - step
        return max(eta, self.config.min_lr)

    def _score(self, params: list[np.ndarray]) -> float:
        """Higher is better: correct count, or minus the mean cross-entropy, on the memory."""
        p = forward(params, self._mem_x, self.config.elu_alpha)[0]
        if self.config.criterion == "accuracy":
            return float(np.sum(np.argmax(p, axis=1) == self._mem_y))
        return float(np.mean(np.log(np.maximum(p[np.arange(len(self._mem_y)), self._mem_y],
                                                1e-300))))

    def _regulate(self, guess: int, label: int) -> None:
        cfg = self.config
        if cfg.regulation == "constant":
            return
        if cfg.regulation == "random":
            if self.num_timesteps == 0:
                return
            self.decisions += 1
            if self.np_rng.random() < cfg.coin:
                self.eta = self._effect(label)
                self.taken += 1
            return
        if self._mem_n < cfg.memory:
            return
        self.decisions += 1
        n = self._batch_n
        grads = gradients(self.params, self._batch_x[:n], self._batch_y[:n], cfg.elu_alpha)
        leave_eta = self.eta
        take_eta = self._effect(guess)  # what the learner believes the digit will do to it
        leave = self._score([w - leave_eta / cfg.batch_size * g
                             for w, g in zip(self.params, grads)])
        take = self._score([w - take_eta / cfg.batch_size * g
                            for w, g in zip(self.params, grads)])
        if take > leave:
            self.eta = self._effect(label)  # ... but the true digit acts on it
            self.taken += 1

    def _sgd_step(self) -> None:
        cfg = self.config
        grads = gradients(self.params, self._batch_x, self._batch_y, cfg.elu_alpha)
        scale = self.eta / cfg.batch_size
        for w, g in zip(self.params, grads):
            w -= scale * g
        self._batch_n = 0
        self.lr_history.append(self.eta)

    def observe(self, x: np.ndarray, guess: int, label: int) -> None:
        """Learn from one classified sample: add it to the mini-batch, regulate η on every
        ``decision_every``-th sample, step SGD when the batch is full, then remember it."""
        cfg = self.config
        if not 0 <= label < self.n_classes:
            raise ValueError(f"label must be in [0, {self.n_classes}), got {label}")
        self._batch_x[self._batch_n] = x
        self._batch_y[self._batch_n] = label
        self._batch_n += 1
        if self.num_timesteps % cfg.decision_every == 0:
            self._regulate(guess, label)
        if self._batch_n == cfg.batch_size:
            self._sgd_step()
        self._mem_x[self._mem_pos] = x
        self._mem_y[self._mem_pos] = label
        self._mem_pos = (self._mem_pos + 1) % cfg.memory
        self._mem_n = min(self._mem_n + 1, cfg.memory)

    # -- the loop
    def _learn_step(self) -> None:
        """Classify one image (one env step) and learn from ``info["label"]``."""
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=int(self.np_rng.integers(2**31 - 1)))
        x = np.asarray(self._obs, dtype=np.float64)
        guess = int(np.argmax(forward(self.params, x[None], self.config.elu_alpha)[0]))
        obs, reward, terminated, truncated, info = self.env.step(guess)
        if "label" not in info:
            raise KeyError("HomeostaticLearner trains supervised on info['label'], the "
                           "true label of the classified image; this env gives none")
        self.observe(x, guess, int(info["label"]))
        self.correct.append(float(reward))
        self.num_timesteps += 1
        self._obs = None if (terminated or truncated) else obs

    def _log_metrics(self) -> None:
        if self.correct:
            self.logger.record(ONLINE_ACCURACY, float(np.mean(self.correct[-self._log_interval:])))
        self.logger.record(LEARNING_RATE, self.eta)

    def _headline(self) -> dict[str, str]:
        recent = self.correct[-self._log_interval:]
        return {"accuracy": f"{np.mean(recent):.3f}", "lr": f"{self.eta:.2e}"} if recent else {}

    # -- checkpoints
    def _saved(self):
        """Weights, η, the memory's and mini-batch's counters, histories and RNG state."""
        return [
            Check("sizes", list(self.sizes), "layer sizes",
                  fix="load it with the env and hidden sizes it was trained with"),
            *(Tensor(f"param.{i}", self.params, i) for i in range(len(self.params))),
            Value("eta", self, "eta", load=float),
            Value("decisions", self, "decisions", load=int),
            Value("taken", self, "taken", load=int),
            NumpyRNG("rng_numpy", self.np_rng),
            Array("correct", self, "correct"),
            Array("lr_history", self, "lr_history"),
        ]

    def _checkpoint(self):
        """The declared contents, and the partial mini-batch and the memory. The env's episode in
        flight is not saved: ``learn`` after ``load`` starts a fresh one."""
        tensors, state, arrays = super()._checkpoint()
        tensors.update({
            "batch_x": torch.from_numpy(self._batch_x.copy()),
            "batch_y": torch.from_numpy(self._batch_y.copy()),
            "mem_x": torch.from_numpy(self._mem_x.copy()),
            "mem_y": torch.from_numpy(self._mem_y.copy()),
        })
        state.update({"batch_n": self._batch_n, "mem_n": self._mem_n, "mem_pos": self._mem_pos})
        return tensors, state, arrays

    def _restore(self, ckpt: Any, path: Path) -> None:
        # The mini-batch and the memory come back only where the config keeps their sizes.
        super()._restore(ckpt, path)
        state, tensors, config = ckpt.state, ckpt.tensors, self.config
        if config.batch_size == tensors["batch_x"].shape[0]:
            self._batch_x = tensors["batch_x"].numpy().copy()
            self._batch_y = tensors["batch_y"].numpy().astype(np.int64).copy()
            self._batch_n = int(state["batch_n"])
        if config.memory == tensors["mem_x"].shape[0]:
            self._mem_x = tensors["mem_x"].numpy().copy()
            self._mem_y = tensors["mem_y"].numpy().astype(np.int64).copy()
            self._mem_n, self._mem_pos = int(state["mem_n"]), int(state["mem_pos"])
