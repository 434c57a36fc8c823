"""Building the vectorized environments agents train on, with the checks users need first.

Agents accept an env id or a ``gymnasium.Env``; this module turns either into a
``gymnasium.vector.VectorEnv`` whose resets the agent controls (autoreset disabled), so that every
episode starts from a seed the agent drew and a run can be replayed exactly on resume. Every copy
is wrapped in :class:`CheckedEnv`, which names the env and the step when a step returns a reward
that is not a real number or an observation of another shape.
"""

from __future__ import annotations

import difflib
import numbers
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

VECTORIZATIONS = ("sync", "async")


def check_env_id(env_id: str) -> None:
    """Raise a ``ValueError`` listing close matches when ``env_id`` is not registered.

    The ``maxent/...`` ids are registered by importing ``maxent.envs``, which ``maxent.agents``
    does; the layer itself knows no environment."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown environment id {env_id!r}.{hint} "
        "Pass a registered id (see gymnasium.registry) or a gymnasium.Env instance."
    )


# Gymnasium's MuJoCo models set the compiler attribute `settotalmass`, which MuJoCo 4 reports as
# deprecated at every model compile (a screen of identical lines in a benchmark). Only that
# message is dropped; every other MuJoCo warning is printed as MuJoCo prints it.
_MUJOCO_DEPRECATION = "compiler attribute 'settotalmass' is deprecated"
_mujoco_filter_installed = False


def quiet_mujoco_deprecation() -> None:
    """Install (once) MuJoCo's warning callback that drops the ``settotalmass`` deprecation."""
    global _mujoco_filter_installed
    if _mujoco_filter_installed:
        return
    try:
        import mujoco
    except ImportError:
        return
    previous = mujoco.get_mju_user_warning()

    def warn(message: str) -> None:
        if _MUJOCO_DEPRECATION in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(warn)
    _mujoco_filter_installed = True


def make_env(env_id: str, **make_kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id)`` after checking the id (close matches listed when unknown), with
    MuJoCo's ``settotalmass`` deprecation notice silenced for MuJoCo tasks."""
    check_env_id(env_id)
    if "mujoco" in str(gym.spec(env_id).entry_point):
        quiet_mujoco_deprecation()
    return gym.make(env_id, **make_kwargs)


def env_factory(env: str | gym.Env | Callable[[], gym.Env], **make_kwargs: Any) -> Callable[[], gym.Env]:
    """Return a zero-argument constructor for ``env`` (an id, a constructor, or an instance).

    An instance can serve only one copy; asking for more raises in :func:`make_vector_env`.
    """
    if isinstance(env, str):
        check_env_id(env)
        return lambda: make_env(env, **make_kwargs)
    if isinstance(env, gym.Env):
        return lambda: env
    if callable(env):
        return env
    raise TypeError(f"env must be an env id, a gymnasium.Env or a callable returning one, got {type(env).__name__}")


def make_vector_env(
    env: str | gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv,
    n_envs: int = 1,
    vectorization: str = "sync",
    **make_kwargs: Any,
) -> gym.vector.VectorEnv:
    """Build a vector env of ``n_envs`` copies with autoreset disabled (the agent resets episodes).

    ``vectorization`` is ``"sync"`` (one process; best for cheap envs) or ``"async"`` (one
    subprocess per copy; pays off when a step costs more than ~0.1 ms).
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    if vectorization not in VECTORIZATIONS:
        raise ValueError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.DISABLED:
            raise ValueError(
                f"a VectorEnv passed to an agent must use autoreset_mode=AutoresetMode.DISABLED "
                f"(the agent resets episodes itself), got {mode}; or pass an env id instead"
            )
        return env
    if isinstance(env, gym.Env) and n_envs > 1:
        raise ValueError(
            f"an env instance can back only one copy, but n_envs={n_envs}: pass an env id or a "
            "callable that builds a new env"
        )
    factory = env_factory(env, **make_kwargs)
    cls = SyncVectorEnv if vectorization == "sync" or isinstance(env, gym.Env) else AsyncVectorEnv
    return cls([lambda: _checked(factory())] * n_envs, autoreset_mode=AutoresetMode.DISABLED)


def _checked(env: Any) -> gym.Env:
    if not isinstance(env, gym.Env):
        raise TypeError(f"the env callable returned {env!r:.40} ({type(env).__name__}), not a "
                        "gymnasium.Env; make it return the env it builds")
    return CheckedEnv(env)


class InputError(ValueError, TypeError):
    """An env or a caller handed the agent something it cannot use (a reward that is no number, an
    observation of another shape, complex numbers); both a ``ValueError`` and a ``TypeError``."""


# Reward types accepted without further inspection: the check on every step is one set lookup.
_REAL_TYPES = frozenset({float, int, bool, np.float64, np.float32, np.float16, np.int64, np.int32,
                         np.int16, np.int8, np.uint64, np.uint32, np.uint16, np.uint8, np.bool_})


def _is_real(value: Any) -> bool:
    if isinstance(value, np.ndarray):  # a 0-d array, as some envs return
        return value.ndim == 0 and value.dtype.kind in "biuf"
    return isinstance(value, (numbers.Real, np.bool_))


def _env_name(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def check_real(values: Any, what: str) -> None:
    """Refuse an array or tensor of complex numbers (``what`` names it): converting it to float
    would drop the imaginary parts without a word."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and (getattr(dtype, "kind", None) == "c"
                              or getattr(dtype, "is_complex", False)):
        raise InputError(f"{what} holds complex numbers (dtype {dtype}); agents take real "
                         "observations: pass the part the policy should see (x.real, abs(x)) or "
                         "both stacked as real features")


class CheckedEnv(gym.Wrapper):
    """Checks what an env's ``step`` returns before the vector env copies it into its batch, where
    a string reward or a resized observation would fail with numpy's message (or be silently
    converted): the reward must be a real number and, for a ``Box`` observation space, the
    observation must keep the space's shape and be real.

    The cost per step is a type lookup and a shape and dtype-kind comparison.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self._shape = space.shape if isinstance(space, gym.spaces.Box) else None
        self._step = 0

    def _check_observation(self, obs: Any, when: str) -> None:
        if self._shape is None:
            return
        try:
            shape = obs.shape if hasattr(obs, "shape") else np.shape(obs)
        except ValueError:  # a ragged sequence
            shape = "ragged"
        if shape != self._shape:
            raise InputError(
                f"env {_env_name(self.env)} returned an observation of shape {shape} {when}, but "
                f"its observation space has shape {self._shape}; an env must keep one observation "
                "shape: pad or crop it in the env (or a wrapper), or declare the space it returns")
        check_real(obs, f"the observation env {_env_name(self.env)} returned {when}")

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self._step = 0
        self._check_observation(obs, "at reset")
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        if type(reward) not in _REAL_TYPES and not _is_real(reward):
            raise InputError(
                f"env {_env_name(self.env)} returned a reward of type {type(reward).__name__} "
                f"({reward!r:.60}) at step {self._step} of its episode; rewards must be real numbers: "
                "return a float from the env's step (or wrap it in "
                "gymnasium.wrappers.TransformReward(env, float))")
        if self._shape is not None and (getattr(obs, "shape", None) != self._shape
                                        or getattr(getattr(obs, "dtype", None), "kind", "") == "c"):
            self._check_observation(obs, f"at step {self._step} of its episode")
        return obs, reward, terminated, truncated, info


def require_box(space: gym.Space, what: str, agent: str) -> gym.spaces.Box:
    """Check ``space`` is a finite-shape ``Box`` and return it, or explain what the agent supports."""
    if isinstance(space, gym.spaces.Box):
        return space
    fix = {
        "action": "use a continuous (Box) action space, or a discrete-action agent",
        "observation": "flatten it with gymnasium.wrappers.FlattenObservation",
    }[what]
    raise ValueError(f"{agent} supports Box {what} spaces only, got {type(space).__name__} ({space}); {fix}")


_BLAME = {
    "environment": "The environment produced NaN/inf; fix or wrap it (e.g. clip observations or "
                   "rewards).",
    "policy": "The policy diverged (its weights went non-finite: a too-large learning_rate, "
              "unscaled rewards, or a config value such as log_std_min set to NaN); lower the "
              "learning rate or check the config.",
}


def check_finite(array: np.ndarray, what: str, step: int, source: str = "environment") -> None:
    """Raise ``FloatingPointError`` when ``array`` holds NaN or inf, naming ``what`` went bad, at
    which (1-based) env ``step``, and who produced it (``source``: ``"environment"`` for
    observations and rewards, ``"policy"`` for actions) with the fix."""
    if not np.isfinite(array).all():
        raise FloatingPointError(
            f"non-finite {what} at env step {step}: {np.array2string(np.asarray(array), threshold=8)}. "
            f"{_BLAME[source]} Checkpoints written before this step are untouched."
        )
