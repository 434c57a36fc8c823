"""A bandit whose arms are interventions do(S = s) in a confounded front-door world
(Jacobs, Kissinger & Zanasi 2019, "Causal Inference by String Diagram Surgery").

A hidden confounder U drives both the cause S and the effect C; S acts on C only through the
mediator T (U -> S -> T -> C, U -> C). Pulling arm ``s`` intervenes, samples (T, C) from
P(t, c | do(s)) and pays ``reward_table[s, t, c]``. Every step also hands out one free
*observational* sample (s, t, c) of the unintervened world, the data that surgery turns into
interventional estimates, and that a naive learner misreads because of U.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from maxent.channels import State, interventional_from_mechanisms, surgery_front_door_joint

__all__ = ["SMOKING_JOINT", "ConfoundedCausalBandit", "make_smoking"]

# The paper's observational joint over (smoking S, tar T, cancer C), listed 000, 001, ..., 111.
SMOKING_JOINT = np.array([0.5, 0.1, 0.01, 0.02, 0.1, 0.05, 0.02, 0.2]).reshape(2, 2, 2)

_NAMES = ("S", "T", "C")
_TOL = 1e-9


def _check_table(a: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """A float64 copy of ``a`` after checking axes, finiteness and non-negativity."""
    a = np.array(a, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a.ravel()[:8]}")
    if np.any(a < 0):
        raise ValueError(f"{name} must be non-negative, found {float(a.min())!r}")
    return a


class ConfoundedCausalBandit(gym.Env):
    """Interventions on a confounded front-door world, as a bandit.

    Build it from mechanisms (``p_u, p_s_given_u, p_t_given_s, p_c_given_t_u``), or from an
    observational ``joint`` over (S, T, C) alone; in the second case the interventional
    distribution is computed by comb disintegration and surgery, which is exact for any world
    with the front-door graph (and raises ``ValueError`` when positivity fails, i.e. the effect
    is not identified).

    ==============  =================================================================
    Action          ``Discrete(|S|)``: arm ``s`` is the intervention do(S = s)
    Observation     ``MultiDiscrete([|S|, |T|, |C|])``: one free observational sample
                    (s, t, c) of the unintervened world, fresh every step and at reset
    Reward          ``reward_table[s, t, c]`` with (t, c) ~ P(t, c | do(s));
                    default 1 when C == 0 (no cancer), else 0
    Termination     never; truncated after ``horizon`` steps
    Info            ``mediator`` t and ``effect`` c of the intervention, and ``arm_value``
    ==============  =================================================================

    Args:
        joint: observational joint over (S, T, C), shape (|S|, |T|, |C|), summing to 1.
            Exclusive with the mechanisms.
        reward_table: reward of each outcome (s, t, c), shape (|S|, |T|, |C|); default
            ``1[c == 0]``.
        horizon: steps per episode before truncation; default 1000.
        p_u: (|U|,) distribution of the hidden confounder.
        p_s_given_u: (|U|, |S|) mechanism U -> S.
        p_t_given_s: (|S|, |T|) mechanism S -> T.
        p_c_given_t_u: (|T|, |U|, |C|) mechanism (T, U) -> C.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        joint: np.ndarray | None = None,
        reward_table: np.ndarray | None = None,
        horizon: int = 1000,
        *,
        p_u: np.ndarray | None = None,
        p_s_given_u: np.ndarray | None = None,
        p_t_given_s: np.ndarray | None = None,
        p_c_given_t_u: np.ndarray | None = None,
        render_mode: str | None = None,
    ):
        mechanisms = (p_u, p_s_given_u, p_t_given_s, p_c_given_t_u)
        given = [m is not None for m in mechanisms]
        if joint is not None and any(given):
            raise ValueError("pass either joint or the mechanisms (p_u, p_s_given_u, p_t_given_s, "
                             "p_c_given_t_u), not both")
        if joint is None:
            if not all(given):
                missing = [n for n, g in zip(("p_u", "p_s_given_u", "p_t_given_s",
                                              "p_c_given_t_u"), given) if not g]
                raise ValueError(
                    f"pass an observational joint over (S, T, C), or all four mechanisms; "
                    f"missing {missing}")
            self.mechanisms: dict[str, np.ndarray] | None = {
                n: _check_table(m, n, d) for n, m, d in zip(
                    ("p_u", "p_s_given_u", "p_t_given_s", "p_c_given_t_u"), mechanisms,
                    (1, 2, 2, 3))}
            joint, interventional = interventional_from_mechanisms(**self.mechanisms)
        else:
            self.mechanisms = None
            joint = _check_table(joint, "joint", 3)
            total = float(joint.sum())
            if abs(total - 1.0) > _TOL:
                raise ValueError(f"joint must sum to 1 over (S, T, C), got {total!r}; normalise "
                                 "it (joint / joint.sum()) if it holds counts")
            channel = surgery_front_door_joint(State(joint, _NAMES), "S", "T", "C")
            interventional = channel.matrix  # (S, T, C) = P(t, c | do(s))
        self.joint = np.array(joint, dtype=np.float64)  # (S, T, C) observational
        self.interventional = np.array(interventional, dtype=np.float64)  # (S, T, C)
        n_s, n_t, n_c = self.joint.shape
        if min(self.joint.shape) < 1 or n_s < 2:
            raise ValueError(f"need at least 2 arms (|S| >= 2), got joint shape {self.joint.shape}")

        if reward_table is None:
            reward_table = np.zeros(self.joint.shape)
            reward_table[:, :, 0] = 1.0
        reward_table = np.array(reward_table, dtype=np.float64)
        if reward_table.shape != self.joint.shape:
            raise ValueError(
                f"reward_table must have the joint's shape (|S|, |T|, |C|) = {self.joint.shape}, "
                f"got {reward_table.shape}")
        if not np.all(np.isfinite(reward_table)):
            raise ValueError("reward_table must be finite")
        self.reward_table = reward_table
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        self.horizon = int(horizon)
        if render_mode is not None:
            raise ValueError(f"ConfoundedCausalBandit does not render, got render_mode={render_mode!r}")
        self.render_mode = render_mode

        self.action_space = spaces.Discrete(n_s)
        self.observation_space = spaces.MultiDiscrete([n_s, n_t, n_c])
        self.reward_range = (float(reward_table.min()), float(reward_table.max()))
        self._obs_cdf = np.cumsum(self.joint.ravel())  # (S*T*C,)
        self._do_cdf = np.cumsum(self.interventional.reshape(n_s, -1), axis=1)  # (S, T*C)
        self._steps = 0

    # ------------------------------------------------------------------ constructors

    @classmethod
    def smoking(cls, reward_table: np.ndarray | None = None, horizon: int = 1000
                ) -> ConfoundedCausalBandit:
        """The paper's smoking/tar/cancer joint; arm values (0.7465, 0.4577) for do(S=0), do(S=1)."""
        return cls(SMOKING_JOINT, reward_table=reward_table, horizon=horizon)

    @classmethod
    def random(
        cls,
        rng: np.random.Generator | int | None = None,
        n_s: int = 2,
        n_t: int = 2,
        n_c: int = 2,
        n_u: int = 2,
        misleading: bool = False,
        concentration: float = 0.5,
        floor: float = 0.05,
        margin: float = 0.05,
        max_tries: int = 10_000,
        horizon: int = 1000,
    ) -> ConfoundedCausalBandit:
        """A world with random mechanisms.

        Each conditional row is drawn from Dirichlet(``concentration``) and mixed with the uniform
        distribution by weight ``floor`` so every outcome has probability >= floor / k (positivity
        holds). With ``misleading=True`` draws are repeated until the observational ranking
        P(reward | S = s) disagrees with the true interventional one: the arm the naive
        conditional prefers is worse than the best arm by at least ``margin``.
        """
        rng = np.random.default_rng(rng)
        for name, v in (("n_s", n_s), ("n_t", n_t), ("n_c", n_c), ("n_u", n_u)):
            if v < 1 or (name == "n_s" and v < 2):
                raise ValueError(f"{name} must be >= {2 if name == 'n_s' else 1}, got {v}")
        if not 0 <= floor <= 1:
            raise ValueError(f"floor must be in [0, 1], got {floor}")

        def rows(*shape: int) -> np.ndarray:
            p = rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])
            return (1 - floor) * p + floor / shape[-1]

        for _ in range(max_tries):
            env = cls(horizon=horizon, p_u=rows(n_u), p_s_given_u=rows(n_u, n_s),
                      p_t_given_s=rows(n_s, n_t), p_c_given_t_u=rows(n_t, n_u, n_c))
            if not misleading:
                return env
            true, naive = env.arm_values(), env.observational_values()
            if true.max() - true[int(np.argmax(naive))] >= margin:
                return env
        raise RuntimeError(
            f"no misleading world found in {max_tries} draws; raise max_tries, lower margin or "
            "concentration")

    # ------------------------------------------------------------------ ground truth

    def arm_values(self) -> np.ndarray:
        """True expected reward of each arm, E[R | do(S = s)], shape (|S|,)."""
        return np.einsum("stc,stc->s", self.interventional, self.reward_table)

    def observational_values(self) -> np.ndarray:
        """What a confounded learner would believe: E[R | S = s] from the observational joint,
        shape (|S|,). Differs from :meth:`arm_values` whenever U confounds S and C."""
        p_s = self.joint.sum(axis=(1, 2))
        cond = self.joint / np.where(p_s > 0, p_s, 1.0)[:, None, None]
        return np.einsum("stc,stc->s", cond, self.reward_table)

    def observational_samples(self, n: int) -> np.ndarray:
        """``n`` free observational samples (s, t, c), shape (n, 3), int64; uses ``np_random``."""
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        u = self.np_random.random(int(n))
        flat = np.minimum(np.searchsorted(self._obs_cdf, u, side="right"), self._obs_cdf.size - 1)
        return np.stack(np.unravel_index(flat, self.joint.shape), axis=1).astype(np.int64)

    # ------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._steps = 0
        return self.observational_samples(1)[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        s = int(np.asarray(action).reshape(()))
        if not 0 <= s < self.action_space.n:
            raise ValueError(f"action must be an arm in [0, {self.action_space.n}), got {action!r}")
        cdf = self._do_cdf[s]
        flat = min(int(np.searchsorted(cdf, self.np_random.random(), side="right")), cdf.size - 1)
        t, c = divmod(flat, self.joint.shape[2])
        reward = float(self.reward_table[s, t, c])
        self._steps += 1
        obs = self.observational_samples(1)[0]
        info = {"mediator": t, "effect": c, "arm_value": float(self.arm_values()[s])}
        return obs, reward, False, self._steps >= self.horizon, info


def make_smoking(joint: np.ndarray | None = None, reward_table: np.ndarray | None = None,
                 horizon: int = 1000, *, render_mode: str | None = None,
                 **mechanisms: np.ndarray | None) -> ConfoundedCausalBandit:
    """Entry point of ``maxent/ConfoundedCausalBandit-v0``: :class:`ConfoundedCausalBandit` with
    the same arguments and defaults, except that with neither ``joint`` nor the mechanisms it
    builds the paper's smoking world (``SMOKING_JOINT``). So ``gymnasium.make(id)`` is
    :meth:`ConfoundedCausalBandit.smoking`, and ``gymnasium.make(id, joint=..., horizon=...)``
    or ``gymnasium.make(id, p_u=..., ...)`` any other front-door world."""
    # The mechanisms (p_u, p_s_given_u, p_t_given_s, p_c_given_t_u) pass through unchanged, so
    # the constructor alone names an unknown one.
    if joint is None and all(m is None for m in mechanisms.values()):
        joint = SMOKING_JOINT
    return ConfoundedCausalBandit(joint, reward_table, horizon, render_mode=render_mode,
                                  **mechanisms)
