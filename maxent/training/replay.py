"""Uniform replay buffer for off-policy agents (SAC, QARL), kept once here instead of in every agent.

All fields of a transition live side by side in one preallocated ``(capacity, width)`` tensor, so a
minibatch is one gather instead of one per field: the sampling cost matters at one update per step.
"""

from __future__ import annotations

import numpy as np
import torch

from maxent.training.limits import check_memory


class ReplayBuffer:
    """Ring buffer of ``(obs, action, reward, next_obs, terminated)`` transitions.

    Args:
        capacity: number of transitions kept; the oldest are overwritten first.
        obs_dim: flat observation size.
        action_dim: flat action size.
        device: where the storage lives (sampling returns tensors there).
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: str | torch.device = "cpu"):
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        # Column layout: obs | action | reward | next_obs | terminated.
        o, a = obs_dim, action_dim
        self._columns = {
            "obs": (0, o),
            "action": (o, o + a),
            "reward": (o + a, o + a + 1),
            "next_obs": (o + a + 1, 2 * o + a + 1),
            "terminated": (2 * o + a + 1, 2 * o + a + 2),
        }
        self.width = 2 * o + a + 2
        self.device = torch.device(device)
        check_memory(4 * self.capacity * self.width,  # pages are touched as it fills: eager=False
                     f"a replay buffer of {self.capacity:,} transitions x {self.width} float32 values",
                     "lower the config's buffer_size", device=self.device, eager=False)
        self._data = torch.empty((self.capacity, self.width), dtype=torch.float32, device=self.device)
        self._staging = np.empty((0, self.width), dtype=np.float32)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Append one transition per environment copy (leading dim = number of copies)."""
        n = obs.shape[0]
        if self._staging.shape[0] != n:
            self._staging = np.empty((n, self.width), dtype=np.float32)
        rows = self._staging
        c = self._columns
        rows[:, slice(*c["obs"])] = obs.reshape(n, -1)
        rows[:, slice(*c["action"])] = action.reshape(n, -1)
        rows[:, c["reward"][0]] = reward
        rows[:, slice(*c["next_obs"])] = next_obs.reshape(n, -1)
        rows[:, c["terminated"][0]] = terminated
        block = torch.from_numpy(rows)
        end = self.pos + n
        if end <= self.capacity:
            self._data[self.pos:end].copy_(block)
        else:  # wrap around the ring
            first = self.capacity - self.pos
            self._data[self.pos:].copy_(block[:first])
            self._data[: n - first].copy_(block[first:])
        self.pos = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_rows(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniformly sample ``batch_size`` stored transitions as one ``(batch, width)`` tensor."""
        index = torch.randint(self.size, (batch_size,), generator=generator, device=self.device)
        return self._data.index_select(0, index)

    def split(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Views of ``rows``: ``(obs, action, reward, next_obs, terminated)``; reward and
        terminated are ``(batch,)``."""
        c = self._columns
        return (
            rows[:, slice(*c["obs"])],
            rows[:, slice(*c["action"])],
            rows[:, c["reward"][0]],
            rows[:, slice(*c["next_obs"])],
            rows[:, c["terminated"][0]],
        )

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Sample a minibatch and split it into its fields (see :meth:`split`)."""
        return self.split(self.sample_rows(batch_size, generator))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The stored transitions and ring position, for ``replay.npz`` in a checkpoint."""
        return {
            "data": self._data[: self.size].cpu().numpy(),
            "pos": np.array(self.pos, dtype=np.int64),
            "capacity": np.array(self.capacity, dtype=np.int64),
        }

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`to_arrays` saved; the buffer's shape must match."""
        data = arrays["data"]
        if data.ndim != 2 or data.shape[1] != self.width or data.shape[0] > self.capacity:
            raise ValueError(
                f"saved replay data has shape {data.shape}, but this buffer holds at most "
                f"{self.capacity} rows of width {self.width}: the checkpoint was written for another "
                "environment or buffer size"
            )
        if int(arrays["capacity"]) != self.capacity and data.shape[0] == int(arrays["capacity"]):
            # A full ring saved with another capacity cannot keep its order; refuse rather than guess.
            raise ValueError(
                f"saved replay buffer was full at capacity {int(arrays['capacity'])}, this one has "
                f"capacity {self.capacity}; keep buffer_size equal when resuming"
            )
        self.size = data.shape[0]
        self._data[: self.size].copy_(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)))
        self.pos = int(arrays["pos"]) % self.capacity
