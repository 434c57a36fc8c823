"""Bookkeeping and checkpointing shared by every pull-by-pull bandit agent (the K-armed ones in
:mod:`maxent.agents.bandits` and the LSD ones in :mod:`maxent.agents.lsd`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from maxent.training import logging as mlog
from maxent.training.agent import AgentConfig, ArmsAgent
from maxent.training.saved import Array
from maxent.training.vector import check_finite


def _pos_int(name: str, owner: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or int(v) != v or v < minimum:
        raise ValueError(f"{owner}.{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


class _Bandit(ArmsAgent):
    """Bookkeeping and checkpointing shared by every bandit agent (the loop itself is
    :class:`maxent.training.agent.Agent`'s); subclasses supply ``_act(obs)`` (the arm to pull),
    ``_observe(...)`` (after a step), their tensors and state. One ``learn`` step is one pull."""

    config_cls: type = AgentConfig

    def __init__(self, env: str | gym.Env, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        self.rewards: list[float] = []  # realised reward of every pull
        self.expected_rewards: list[float] = []  # info["expected_reward"] when the env gives it

    # -- to override
    def _act(self, obs: np.ndarray) -> int:
        raise NotImplementedError

    def _observe(self, obs: np.ndarray, arm: int, reward: float, next_obs: np.ndarray) -> None:
        pass

    def _on_episode_start(self, obs: np.ndarray) -> None:
        pass

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def _policy_action(self, obs: np.ndarray, deterministic: bool) -> int:
        raise NotImplementedError

    # -- the Agent surface
    def _learn_step(self) -> None:
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=int(self.np_rng.integers(2**31 - 1)))
            self._on_episode_start(np.asarray(self._obs))
        obs = np.asarray(self._obs)
        arm = self._act(obs)
        next_obs, reward, terminated, truncated, info = self.env.step(arm)
        reward = float(reward)
        check_finite(np.asarray(reward), "reward", self.num_timesteps + 1)
        self.num_timesteps += 1
        self.arm_counts[arm] += 1
        self.rewards.append(reward)
        if "expected_reward" in info:
            self.expected_rewards.append(float(info["expected_reward"]))
        self._episode_return += reward
        self._observe(obs, arm, reward, np.asarray(next_obs))
        if terminated or truncated:
            self.episode_returns.append(self._episode_return)
            self._episode_return = 0.0
            self._obs = None
        else:
            self._obs = next_obs

    def _log_metrics(self) -> None:
        if self.rewards:
            self.logger.record(mlog.REWARD, float(np.mean(self.rewards[-self._log_interval:])))

    def predict(self, observation: Any = None, deterministic: bool = True) -> int | np.ndarray:
        """The arm to pull at ``observation``; an array of arms for a batch (leading dim)."""
        space = self.env.observation_space
        obs = None if observation is None else np.asarray(observation)
        if obs is not None and space.shape is not None and obs.ndim == len(space.shape) + 1:
            return np.array([self._policy_action(o, deterministic) for o in obs], dtype=np.int64)
        return self._policy_action(obs, deterministic)

    def _saved(self):
        """Config, statistics (each subclass adds its own), bookkeeping and RNG state."""
        return [*super()._saved(), Array("rewards", self, "rewards", length="num_timesteps"),
                Array("expected_rewards", self, "expected_rewards", length="num_timesteps",
                      or_empty=True)]

    def _checkpoint(self):
        """The declared contents and the subclass's own state. The episode in flight is not
        saved: ``learn`` after ``load`` starts a new one."""
        tensors, state, arrays = super()._checkpoint()
        state.update(self._extra_state())
        return tensors, state, arrays

    def _restore(self, ckpt: Any, path: Path) -> None:
        super()._restore(ckpt, path)
        self._load_extra_state(ckpt.state)
