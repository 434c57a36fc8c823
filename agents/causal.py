"""Bandit agents for confounded worlds: surgery on free observational data versus a naive
conditional and UCB1 (Jacobs, Kissinger & Zanasi 2019, "Causal Inference by String Diagram
Surgery"; Auer, Cesa-Bianchi & Fischer 2002 for UCB1).

``SurgeryAgent`` counts the free observational samples of
:class:`maxent.envs.causal.ConfoundedCausalBandit`, estimates the joint over (S, T, C), and turns
it into P(t, c | do(s)) by comb disintegration and surgery; it then plays the arm of highest
estimated expected reward. ``NaiveAgent`` reads the same counts as P(t, c | S = s), which the
hidden confounder biases. ``UCBAgent`` ignores the free data and learns from its own
interventions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import maxent.envs  # noqa: F401  (registers maxent/... ids, so load() can gym.make a saved id)
from maxent.training.agent import AgentConfig, ArmsAgent
from maxent.training.saved import Array, Tensor, Value
from maxent.channels import State, surgery_front_door_joint

REGRET = "rollout/regret"

__all__ = ["NaiveAgent", "NaiveConfig", "SurgeryAgent", "SurgeryConfig", "UCBAgent", "UCBConfig"]


# --------------------------------------------------------------------------- configs


@dataclass
class SurgeryConfig(AgentConfig):
    """Settings of :class:`SurgeryAgent`.

    Attributes:
        prior: pseudo-count added to every cell (s, t, c) of the observational count table before
            normalising (a symmetric Dirichlet(prior) posterior mean; 0.5 is the
            Krichevsky–Trofimov / Jeffreys choice). It keeps every P(s, t) > 0 so the front-door
            effect stays identified from the very first step; its bias is O(1/N), below the
            O(1/sqrt(N)) sampling error.
        warmup_samples: free observational samples drawn with ``env.observational_samples`` at
            the start of the first ``learn`` call, before any arm is pulled.
        use_observations: also count the free sample each step's observation carries.
        update_every: steps between re-estimates of the arm values (1 = every step).
    """

    prior: float = 0.5
    warmup_samples: int = 0
    use_observations: bool = True
    update_every: int = 1

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not self.prior > 0:
            raise ValueError(f"{name}.prior must be > 0 so that positivity holds, got {self.prior!r}")
        if int(self.warmup_samples) != self.warmup_samples or self.warmup_samples < 0:
            raise ValueError(f"{name}.warmup_samples must be an integer >= 0, got {self.warmup_samples!r}")
        if int(self.update_every) != self.update_every or self.update_every < 1:
            raise ValueError(f"{name}.update_every must be an integer >= 1, got {self.update_every!r}")
        self.warmup_samples = int(self.warmup_samples)
        self.update_every = int(self.update_every)


@dataclass
class NaiveConfig(SurgeryConfig):
    """Settings of :class:`NaiveAgent`; the same fields as :class:`SurgeryConfig`."""


@dataclass
class UCBConfig(AgentConfig):
    """Settings of :class:`UCBAgent`.

    Attributes:
        c: exploration coefficient; the index of arm a is mean_a + sqrt(c ln t / n_a), so the
            default 2.0 is UCB1.
    """

    c: float = 2.0

    def __post_init__(self) -> None:
        if not self.c >= 0:
            raise ValueError(f"UCBConfig.c must be >= 0, got {self.c!r}")


# --------------------------------------------------------------------------- shared loop


class _BanditAgent(ArmsAgent):
    """Bookkeeping and checkpointing the three agents share (the loop is
    :class:`maxent.training.agent.Agent`'s); subclasses supply ``_choose`` (the arm to pull), ``_update``
    (after a step) and their tensors. One ``learn`` step is one intervention."""

    config_cls: type = AgentConfig

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)  # arm_counts: interventions per arm
        arm_values = getattr(self.env.unwrapped, "arm_values", None)
        # True arm values, for regret only; the agents never read them to act.
        self._true_values = None if arm_values is None else np.asarray(arm_values(), np.float64)
        self.regret = 0.0  # cumulative expected (pseudo-)regret: Σ_t max_a μ_a − μ_{a_t}
        self.regret_curve: list[float] = []  # regret after each step
        self._episode_length = 0

    # -- to override
    def _choose(self) -> int:
        raise NotImplementedError

    def _update(self, arm: int, reward: float, obs: np.ndarray) -> None:
        raise NotImplementedError

    def _on_learn_start(self, end: int) -> None:
        pass

    # -- the Agent surface
    def _learn_step(self) -> None:
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=int(self.np_rng.integers(2**31 - 1)))
            self._update_obs(self._obs)
        arm = self._choose()
        obs, reward, terminated, truncated, _ = self.env.step(arm)
        self.num_timesteps += 1
        self.arm_counts[arm] += 1
        if self._true_values is not None:
            self.regret += float(self._true_values.max() - self._true_values[arm])
            self.regret_curve.append(self.regret)
        self._episode_return += float(reward)
        self._episode_length += 1
        self._update(arm, float(reward), np.asarray(obs))
        if terminated or truncated:
            self.episode_returns.append(self._episode_return)
            self.episode_lengths.append(self._episode_length)
            self._episode_return, self._episode_length = 0.0, 0
            self._obs = None
        else:
            self._obs = obs
            self._update_obs(obs)

    def _log_metrics(self) -> None:
        if self._true_values is not None:
            self.logger.record(REGRET, self.regret)

    def _update_obs(self, obs: np.ndarray) -> None:
        """Hook for the free observation of a reset (and of each step, after ``_update``)."""

    def predict(self, observation: Any = None, deterministic: bool = True) -> int | np.ndarray:
        """The arm the agent would pull now; an array of it for a batch of observations (rank 2).
        The observation is not needed to act (every step is the same bandit), so it is ignored."""
        arm = self._best_arm(deterministic)
        obs = np.asarray(observation) if observation is not None else None
        if obs is not None and obs.ndim == 2:
            return np.full(obs.shape[0], arm, dtype=np.int64)
        return arm

    def _best_arm(self, deterministic: bool) -> int:
        raise NotImplementedError

    def _saved(self):
        """Config, counts (each subclass adds its own), bookkeeping and RNG state. The env's own
        episode in flight is not saved: ``learn`` after ``load`` starts a fresh one."""
        return [*super()._saved(),
                Value("regret", self, "regret", load=float),
                Value("episode_lengths", self, "episode_lengths", save=list,
                      load=lambda v: [int(n) for n in v]),
                Array("regret_curve", self, "regret_curve")]


class _ObservationalAgent(_BanditAgent):
    """Counts free observational samples (s, t, c) and acts greedily on a model of P(t, c | do(s))
    built from them; subclasses differ only in :meth:`interventional_estimate`."""

    config_cls = SurgeryConfig

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        space = self.env.observation_space
        if not isinstance(space, gym.spaces.MultiDiscrete) or space.nvec.shape != (3,):
            raise ValueError(f"{type(self).__name__} needs observations (s, t, c) in a "
                             f"MultiDiscrete([|S|, |T|, |C|]) space, got {space}")
        self.dims = tuple(int(n) for n in space.nvec)  # (|S|, |T|, |C|)
        if self.dims[0] != self.n_arms:
            raise ValueError(f"arms ({self.n_arms}) must be the values of S ({self.dims[0]})")
        reward_table = getattr(self.env.unwrapped, "reward_table", None)
        if reward_table is None:
            raise ValueError(f"{type(self).__name__} needs the env's reward_table (the known "
                             "utility of each outcome (s, t, c))")
        self.reward_table = np.asarray(reward_table, dtype=np.float64)  # (S, T, C)
        self.counts = np.zeros(self.dims, dtype=np.float64)  # (S, T, C) observational counts
        self.warmed_up = False
        self._values: np.ndarray | None = None
        self._stale = 0

    def observe(self, samples: np.ndarray) -> None:
        """Add observational samples, shape (n, 3) or (3,), to the counts."""
        samples = np.asarray(samples, dtype=np.int64).reshape(-1, 3)
        if samples.size and (samples.min() < 0 or np.any(samples.max(0) >= np.array(self.dims))):
            raise ValueError(f"observational samples must lie in {self.dims}, got rows up to "
                             f"{samples.max(0).tolist()}")
        np.add.at(self.counts, tuple(samples.T), 1.0)
        self._stale += len(samples)
        if self._values is None or self._stale >= self.config.update_every:
            self._values = None

    def estimated_joint(self) -> np.ndarray:
        """Posterior-mean observational joint (counts + prior) / total, shape (S, T, C)."""
        smoothed = self.counts + self.config.prior
        return smoothed / smoothed.sum()

    def interventional_estimate(self) -> np.ndarray:
        """The agent's model of P(t, c | do(s)), shape (S, T, C)."""
        raise NotImplementedError

    def estimated_values(self) -> np.ndarray:
        """Estimated expected reward of each arm, shape (|S|,)."""
        if self._values is None:
            self._values = np.einsum("stc,stc->s", self.interventional_estimate(), self.reward_table)
            self._stale = 0
        return self._values

    def _on_learn_start(self, end: int) -> None:
        if not self.warmed_up:
            if self.config.warmup_samples:
                sampler = getattr(self.env.unwrapped, "observational_samples", None)
                if sampler is None:
                    raise ValueError("warmup_samples needs an env with observational_samples(n)")
                self.observe(sampler(self.config.warmup_samples))
            self.warmed_up = True

    def _update_obs(self, obs: np.ndarray) -> None:
        if self.config.use_observations:
            self.observe(obs)

    def _update(self, arm: int, reward: float, obs: np.ndarray) -> None:
        pass  # the free observation is counted by _update_obs; interventions teach nothing here

    def _choose(self) -> int:
        return self._best_arm(True)

    def _best_arm(self, deterministic: bool) -> int:
        return int(np.argmax(self.estimated_values()))  # first maximum: ties -> lowest index

    def _saved(self):
        return [*super()._saved(), Tensor("counts", self, "counts"),
                Value("warmed_up", self, "warmed_up", load=bool)]


class SurgeryAgent(_ObservationalAgent):
    """Greedy on P(t, c | do(s)) = P(t|s) Σ_s' P(c|s', t) P(s'), computed by comb
    disintegration and surgery of the smoothed observational joint.

    Args:
        env: a :class:`~maxent.envs.causal.ConfoundedCausalBandit` (or its registered id).
        config: a :class:`SurgeryConfig`; default ``SurgeryConfig()``.
        seed: seeds the episode resets.
    """

    kind = "SurgeryAgent"

    def interventional_estimate(self) -> np.ndarray:
        joint = State(self.estimated_joint(), ("S", "T", "C"))
        return surgery_front_door_joint(joint, "S", "T", "C").matrix  # (S, T, C)


class NaiveAgent(_ObservationalAgent):
    """Greedy on the observational conditional P(t, c | S = s), biased by the hidden confounder.
    Same arguments as :class:`SurgeryAgent`, with a :class:`NaiveConfig`."""

    kind = "NaiveAgent"
    config_cls = NaiveConfig

    def interventional_estimate(self) -> np.ndarray:
        joint = self.estimated_joint()
        return joint / joint.sum(axis=(1, 2), keepdims=True)  # (S, T, C) = P(t, c | s)


# --------------------------------------------------------------------------- UCB1


class UCBAgent(_BanditAgent):
    """UCB1 on the rewards of its own interventions; the free observations are ignored.
    Plays every arm once, then the arm maximising mean + sqrt(c ln t / n) (ties: lowest index).

    Args:
        env: any env with a ``Discrete`` action space (e.g. a ConfoundedCausalBandit).
        config: a :class:`UCBConfig`; default ``UCBConfig()``.
        seed: seeds the episode resets.
    """

    kind = "UCBAgent"
    config_cls = UCBConfig

    def __init__(self, env: str | gym.Env, config: UCBConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.reward_sums = np.zeros(self.n_arms, dtype=np.float64)

    def means(self) -> np.ndarray:
        """Empirical mean reward per arm (0 for arms never pulled), shape (n_arms,)."""
        return self.reward_sums / np.maximum(self.arm_counts, 1)

    def _index(self) -> np.ndarray:
        n = self.arm_counts
        if np.any(n == 0):
            return np.where(n == 0, np.inf, -np.inf)
        t = n.sum()
        return self.means() + np.sqrt(self.config.c * np.log(t) / n)

    def _choose(self) -> int:
        return int(np.argmax(self._index()))

    def _update(self, arm: int, reward: float, obs: np.ndarray) -> None:
        self.reward_sums[arm] += reward

    def _best_arm(self, deterministic: bool) -> int:
        """Deterministic: the best empirical mean among pulled arms; otherwise the UCB arm."""
        if not deterministic or not np.any(self.arm_counts):
            return self._choose()
        return int(np.argmax(np.where(self.arm_counts > 0, self.means(), -np.inf)))

    def _saved(self):
        return [*super()._saved(), Tensor("reward_sums", self, "reward_sums")]
