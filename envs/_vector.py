"""Shared base of the numpy vector envs that step ``num_envs`` copies of one discrete-action env:
the spaces, the per-copy generators and the Gymnasium seeding contract, written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

__all__ = ["CopiesVectorEnv"]


class CopiesVectorEnv(VectorEnv):
    """``num_envs`` copies of a single env with a ``Discrete(n_actions)`` action space, each drawing
    from its own generator so that copy i replays the single env seeded ``s + i``. Autoreset is
    Gymnasium's NEXT_STEP mode; subclasses track which copies wait in ``_needs_reset``."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [],
                                          "autoreset_mode": AutoresetMode.NEXT_STEP}

    @staticmethod
    def _check_num_envs(num_envs: Any) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")

    def _adopt(self, single: gym.Env, num_envs: int, n_actions: int) -> None:
        """Take the spaces of ``single`` batched over ``num_envs`` copies, fresh unseeded
        generators, and no copy waiting for a reset."""
        self.num_envs = int(num_envs)
        self.single_action_space = single.action_space
        self.single_observation_space = single.observation_space
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, n_actions))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              self.num_envs)
        self.render_mode = None
        self._rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def _seed_copies(self, seed: int | Sequence[int | None] | None) -> None:
        """``reset``'s seeding: an int seeds copy i with ``seed + i``, a sequence gives one seed (or
        None, keep its generator) per copy, None keeps every generator."""
        if seed is None:
            return
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
        self._rngs = [seeding.np_random(s)[0] if s is not None else r
                      for s, r in zip(seeds, self._rngs)]
