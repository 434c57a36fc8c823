"""A homeostatic bandit: arms deliver outcome vectors to an internal state that decays, and the
reward is the reduction of a drive, the distance of that state from its set-point (Keramati &
Gutkin 2014, "Homeostatic reinforcement learning for integrating reward collection and
physiological stability", eLife), with optional concept shift of what each arm delivers (Man,
Damasio & Neven 2022, "Need is All You Need: Homeostatic Neural Networks Adapt to Concept Shift").

Drive D(h) = (Σ_i |h*_i − h_i|^n)^(1/m) (defaults m = 3, n = 4); reward r_t = D(h_t) − D(h_{t+1});
state h_{t+1} = h_t + absorption · outcome − degradation · (h_t − floor). The single env and the
vector env share :func:`drive` and :func:`homeostatic_update`, and draw random numbers in the same
order from one generator per copy, so copy ``i`` of the vector env seeded ``s`` replays the single
env seeded ``s + i`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from maxent.envs._vector import CopiesVectorEnv

__all__ = ["HomeostaticBandit", "HomeostaticBanditVector", "RateSchedule", "drive",
           "homeostatic_update"]

# Three arms over two nutrients: food A, food B, and abstaining. Eating A and B in alternation
# gives a mean intake of 0.5 per nutrient, whose steady state floor + 0.5 / 0.1 is the set-point.
DEFAULT_OUTCOMES = ((1.0, 0.0), (0.0, 1.0), (0.0, 0.0))
DEFAULT_SET_POINT = (5.0, 5.0)


def drive(h: np.ndarray, set_point: np.ndarray, m: float = 3.0, n: float = 4.0) -> np.ndarray:
    """Keramati & Gutkin's drive D(h) = (Σ_i |h*_i − h_i|^n)^(1/m) over the last axis.

    Args:
        h: internal state, shape (..., d).
        set_point: h*, shape (d,) (broadcast against ``h``).
        m: outer root; default 3.
        n: inner power; default 4.

    Returns:
        D(h), shape (...).
    """
    dev = np.abs(np.asarray(set_point, dtype=np.float64) - np.asarray(h, dtype=np.float64))
    return np.sum(dev ** n, axis=-1) ** (1.0 / m)


def homeostatic_update(h: np.ndarray, outcome: np.ndarray, absorption: np.ndarray | float,
                       degradation: np.ndarray | float, floor: np.ndarray | float) -> np.ndarray:
    """One step of the internal state: h + absorption · outcome − degradation · (h − floor).

    All arguments broadcast over the last axis (d); returns a new array of ``h``'s shape.
    """
    return h + absorption * outcome - degradation * (h - floor)


def _vector(value: Any, d: int, name: str) -> np.ndarray:
    """``value`` as a finite float64 (d,) array: a scalar is broadcast, a vector must have d entries."""
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(d, float(a))
    if a.shape != (d,):
        raise ValueError(f"{name} must be a scalar or have shape ({d},) to match the outcome "
                         f"vectors' dimension, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a.tolist()}")
    return a


class RateSchedule:
    """A concept-shift rate as a function of the step t within an episode, with values in [0, 1].

    Args:
        rate: a float (constant rate); a callable ``t -> float``; or a sequence of
            ``(start_step, rate)`` pairs, sorted by start step and starting at 0, giving a
            piecewise-constant rate (e.g. ``[(0, 0.0), (500, 0.05)]``: stationary, then shifting).
    """

    def __init__(self, rate: float | Callable[[int], float] | Sequence[tuple[int, float]]):
        self._fn: Callable[[int], float] | None = None
        self._starts: np.ndarray | None = None
        self._rates: np.ndarray | None = None
        self.constant: float | None = None
        if callable(rate):
            self._fn = rate
        elif np.ndim(rate) == 0:
            self.constant = self._check(float(rate), "shift_rate")
        else:
            pairs = [tuple(p) for p in rate]
            if not pairs or any(len(p) != 2 for p in pairs):
                raise ValueError(f"a piecewise shift_rate must be a non-empty sequence of "
                                 f"(start_step, rate) pairs, got {rate!r}")
            starts = np.array([p[0] for p in pairs], dtype=np.int64)
            if starts[0] != 0 or np.any(np.diff(starts) <= 0):
                raise ValueError(f"piecewise shift_rate start steps must begin at 0 and increase, "
                                 f"got {starts.tolist()}")
            self._starts = starts
            self._rates = np.array([self._check(float(p[1]), f"shift_rate from step {p[0]}")
                                    for p in pairs])

    @staticmethod
    def _check(value: float, what: str) -> float:
        if not 0.0 <= value <= 1.0:  # also rejects NaN
            raise ValueError(f"{what} must be a probability per step in [0, 1], got {value!r}")
        return value

    def __call__(self, t: int) -> float:
        """The shift probability at step ``t``."""
        if self.constant is not None:
            return self.constant
        if self._fn is not None:
            return self._check(float(self._fn(t)), f"shift_rate({t})")
        idx = int(np.searchsorted(self._starts, t, side="right")) - 1
        return float(self._rates[idx])


class _HomeostaticParams:
    """Validated parameters shared by the single and the vector env."""

    def __init__(self, outcomes, set_point, absorption, degradation, floor, m, n, initial_state,
                 outcome_noise, shift_rate, shift_mode, horizon):
        o = np.asarray(outcomes, dtype=np.float64)
        if o.ndim == 1:
            o = o[:, None]
        if o.ndim != 2:
            raise ValueError(f"outcomes must have shape (K arms, d dimensions), got shape {o.shape}")
        if o.shape[0] < 1:
            raise ValueError(f"the number of arms K must be >= 1, got K = {o.shape[0]} "
                             f"(outcomes of shape {o.shape})")
        if o.shape[1] < 1:
            raise ValueError(f"outcome vectors need d >= 1 dimensions, got shape {o.shape}")
        if not np.all(np.isfinite(o)):
            raise ValueError("outcomes must be finite")
        self.outcomes = o  # (K, d)
        self.n_arms, self.dim = o.shape
        sp = np.asarray(set_point, dtype=np.float64)
        if sp.ndim != 0 and sp.shape != (self.dim,):
            raise ValueError(f"set_point has shape {sp.shape} but the outcome vectors have "
                             f"d = {self.dim} dimensions (outcomes {o.shape}); give one set-point "
                             "per dimension")
        self.set_point = _vector(sp, self.dim, "set_point")
        self.absorption = _vector(absorption, self.dim, "absorption")
        if np.any(self.absorption < 0):
            raise ValueError(f"absorption must be >= 0, got {self.absorption.tolist()}")
        self.degradation = _vector(degradation, self.dim, "degradation")
        if np.any(self.degradation < 0) or np.any(self.degradation > 1):
            raise ValueError(f"degradation must be in [0, 1] (a fraction of h − floor lost per "
                             f"step), got {self.degradation.tolist()}")
        self.floor = _vector(floor, self.dim, "floor")
        if not (m > 0 and n > 0):
            raise ValueError(f"the drive exponents must be positive, got m = {m!r}, n = {n!r}")
        self.m, self.n = float(m), float(n)
        if initial_state is None:
            self.initial_state = None
        else:
            self.initial_state = _vector(initial_state, self.dim, "initial_state")
        if not outcome_noise >= 0:
            raise ValueError(f"outcome_noise must be a standard deviation >= 0, got {outcome_noise!r}")
        self.outcome_noise = float(outcome_noise)
        self.shift_rate = RateSchedule(shift_rate)
        if shift_mode not in ("swap", "permute"):
            raise ValueError(f"shift_mode must be 'swap' or 'permute', got {shift_mode!r}")
        self.shift_mode = shift_mode
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        self.horizon = int(horizon)

    def spaces(self) -> tuple[spaces.Discrete, spaces.Box]:
        obs = spaces.Box(-np.inf, np.inf, shape=(self.dim,), dtype=np.float32)
        return spaces.Discrete(self.n_arms), obs

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        """h_0: ``initial_state`` or, by default, uniform between the floor and the set-point."""
        if self.initial_state is not None:
            return self.initial_state.copy()
        return rng.uniform(np.minimum(self.floor, self.set_point),
                           np.maximum(self.floor, self.set_point))

    def shift(self, arm_map: np.ndarray, t: int, rng: np.random.Generator) -> bool:
        """With probability rate(t) reassign the arms' outcome vectors in place; True if it did.
        A uniform is drawn only when the rate is positive (the vector env follows the same rule)."""
        rate = self.shift_rate(t)
        if rate <= 0.0 or rng.random() >= rate:
            return False
        if self.shift_mode == "swap":
            if self.n_arms >= 2:
                i, j = rng.choice(self.n_arms, 2, replace=False)
                arm_map[i], arm_map[j] = arm_map[j], arm_map[i]
        else:
            arm_map[:] = arm_map[rng.permutation(self.n_arms)]
        return True


def _as_arm(action: Any, n_arms: int) -> int:
    """Validate one action: an integer (Python, numpy, or a one-element integer array) in range."""
    a = np.asarray(action)
    if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"action must be an integer arm index in [0, {n_arms}), got {action!r}")
    arm = int(a.reshape(()))
    if not 0 <= arm < n_arms:
        raise ValueError(f"action must be an arm in [0, {n_arms}), got {arm}")
    return arm


class HomeostaticBandit(gym.Env):
    """A K-armed bandit over an internal state with a set-point (Keramati & Gutkin 2014).

    ==============  =================================================================
    Action          ``Discrete(K)``: the arm to pull
    Observation     ``Box(-inf, inf, (d,), float32)``: the internal state h_t. The
                    set-point, drive exponents and decay parameters are public
                    attributes (a player knows its own needs); which outcome each arm
                    delivers is not observed and may shift
    Reward          drive reduction D(h_t) − D(h_{t+1}) with
                    D(h) = (Σ_i |h*_i − h_i|^n)^(1/m)
    Termination     never; truncated after ``horizon`` steps
    Info            ``outcome`` (d,) actually delivered (a player sees what it
                    consumed), ``drive`` D(h_{t+1}), ``shifted`` (the arms were
                    reassigned after this step), and ``arm_map`` (K,) (arm a delivers
                    ``outcomes[arm_map[a]]``; ground truth for analysis, not for acting)
    ==============  =================================================================

    Args:
        outcomes: (K, d) outcome vector of each arm; default three arms over two nutrients,
            ``((1, 0), (0, 1), (0, 0))``.
        set_point: h*, shape (d,); default ``(5, 5)``.
        absorption: scalar or (d,) fraction of an outcome absorbed into h; default 1.0.
        degradation: scalar or (d,) in [0, 1], fraction of h − floor lost per step; default 0.1.
        floor: scalar or (d,) level h decays towards; default 0.0.
        m: outer root of the drive; default 3.
        n: inner power of the drive; default 4.
        initial_state: (d,) h_0; default None draws h_0 uniformly between floor and set-point.
        outcome_noise: standard deviation of Gaussian noise added to each delivered outcome;
            default 0.0.
        shift_rate: concept shift, the probability per step that the arms' outcome vectors are
            reassigned: a float, a callable ``t -> float`` of the step within the episode, or
            piecewise-constant ``[(start_step, rate), ...]``; default 0.0 (no shift).
        shift_mode: ``"swap"`` (two random arms exchange outcomes) or ``"permute"`` (a fresh
            uniformly random assignment); default ``"swap"``.
        horizon: steps per episode; default 1000.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, outcomes: Any = DEFAULT_OUTCOMES, set_point: Any = DEFAULT_SET_POINT,
                 absorption: Any = 1.0, degradation: Any = 0.1, floor: Any = 0.0,
                 m: float = 3.0, n: float = 4.0, initial_state: Any = None,
                 outcome_noise: float = 0.0, shift_rate: Any = 0.0, shift_mode: str = "swap",
                 horizon: int = 1000, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"HomeostaticBandit does not render, got render_mode={render_mode!r}")
        self.render_mode = render_mode
        self.params = _HomeostaticParams(outcomes, set_point, absorption, degradation, floor, m,
                                         n, initial_state, outcome_noise, shift_rate, shift_mode,
                                         horizon)
        self.action_space, self.observation_space = self.params.spaces()
        self.h = np.zeros(self.params.dim)
        self.arm_map = np.arange(self.params.n_arms)
        self._t = 0

    @property
    def set_point(self) -> np.ndarray:
        return self.params.set_point

    def drive(self, h: np.ndarray | None = None) -> float:
        """D(h) of the current state (or of ``h``)."""
        p = self.params
        return float(drive(self.h if h is None else h, p.set_point, p.m, p.n))

    def arm_outcomes(self) -> np.ndarray:
        """What each arm delivers now (before noise), shape (K, d); ground truth."""
        return self.params.outcomes[self.arm_map]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.h = self.params.initial(self.np_random)
        self.arm_map = np.arange(self.params.n_arms)
        self._t = 0
        return self.h.astype(np.float32), {"drive": self.drive()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        p = self.params
        arm = _as_arm(action, p.n_arms)
        outcome = p.outcomes[self.arm_map[arm]].copy()
        if p.outcome_noise > 0:
            outcome += p.outcome_noise * self.np_random.standard_normal(p.dim)
        before = self.drive()
        self.h = homeostatic_update(self.h, outcome, p.absorption, p.degradation, p.floor)
        after = self.drive()
        shifted = p.shift(self.arm_map, self._t, self.np_random)
        self._t += 1
        info = {"outcome": outcome, "drive": after, "shifted": shifted,
                "arm_map": self.arm_map.copy()}
        return self.h.astype(np.float32), before - after, False, self._t >= p.horizon, info


class HomeostaticBanditVector(CopiesVectorEnv):
    """``num_envs`` homeostatic bandits stepped at once in numpy; same arguments as
    :class:`HomeostaticBandit` plus ``num_envs``.

    Autoreset follows Gymnasium's default NEXT_STEP mode: the step after a copy truncates resets
    it (its action is ignored, reward 0). ``reset(seed=s)`` seeds copy i with ``s + i``; each copy
    draws from its own generator in the single env's order, so it replays
    ``HomeostaticBandit().reset(seed=s + i)`` under the same actions. Infos hold arrays with a
    leading ``num_envs`` axis (``outcome``, ``drive``, ``shifted``, ``arm_map``).
    """

    def __init__(self, num_envs: int = 1, **kwargs: Any):
        self._check_num_envs(num_envs)
        render_mode = kwargs.pop("render_mode", None)
        if render_mode is not None:
            raise ValueError(f"HomeostaticBanditVector does not render, got "
                             f"render_mode={render_mode!r}")
        single = HomeostaticBandit(**kwargs)  # validates the arguments once
        self.params = single.params
        self._adopt(single, num_envs, self.params.n_arms)
        p = self.params
        self.h = np.zeros((self.num_envs, p.dim))  # (n, d)
        self.arm_map = np.tile(np.arange(p.n_arms), (self.num_envs, 1))  # (n, K)
        self.t = np.zeros(self.num_envs, dtype=np.int64)

    def _reset_copies(self, idx: np.ndarray) -> None:
        for i in idx:
            self.h[i] = self.params.initial(self._rngs[i])
        self.arm_map[idx] = np.arange(self.params.n_arms)
        self.t[idx] = 0

    def _drive(self, h: np.ndarray) -> np.ndarray:
        return drive(h, self.params.set_point, self.params.m, self.params.n)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        self._seed_copies(seed)
        self._reset_copies(np.arange(self.num_envs))
        self._needs_reset[:] = False
        return self.h.astype(np.float32), {"drive": self._drive(self.h),
                                           "_drive": np.ones(self.num_envs, dtype=bool)}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        p = self.params
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integer arm indices, got {actions!r}")
        if np.any((a < 0) | (a >= p.n_arms)):
            raise ValueError(f"actions must be arms in [0, {p.n_arms}), got {a.tolist()}")
        resetting = self._needs_reset.copy()
        live = ~resetting
        outcome = p.outcomes[self.arm_map[np.arange(self.num_envs), a]]  # (n, d)
        if p.outcome_noise > 0:
            for i in np.flatnonzero(live):
                outcome[i] += p.outcome_noise * self._rngs[i].standard_normal(p.dim)
        before = self._drive(self.h)
        new_h = homeostatic_update(self.h, outcome, p.absorption, p.degradation, p.floor)
        self.h = np.where(live[:, None], new_h, self.h)
        after = self._drive(self.h)
        rewards = np.where(live, before - after, 0.0)
        shifted = np.zeros(self.num_envs, dtype=bool)
        constant = p.shift_rate.constant
        if constant is None or constant > 0:
            for i in np.flatnonzero(live):
                shifted[i] = p.shift(self.arm_map[i], int(self.t[i]), self._rngs[i])
        self.t[live] += 1
        truncated = live & (self.t >= p.horizon)
        if resetting.any():
            self._reset_copies(np.flatnonzero(resetting))
            after = self._drive(self.h)
            outcome[resetting] = 0.0
        self._needs_reset = truncated.copy()
        ones = np.ones(self.num_envs, dtype=bool)
        infos = {"outcome": outcome, "_outcome": live, "drive": after, "_drive": ones,
                 "shifted": shifted, "_shifted": live, "arm_map": self.arm_map.copy(),
                 "_arm_map": ones}
        return (self.h.astype(np.float32), rewards, np.zeros(self.num_envs, dtype=bool),
                truncated, infos)
