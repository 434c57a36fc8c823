"""What env an agent trains on, written down so that a checkpoint can tell whether the env it is
loaded with is the same one (then the episodes in flight are replayed and the resume is exact) and
can rebuild it when none is given.

An env is described by its Gymnasium spec, whichever way it was given (an id, an id with
``gymnasium.make`` keywords, a callable or ``functools.partial``, a wrapped instance, a vector
env): the registered id, the entry point, the keywords, the time limit and every wrapper with its
recorded arguments. The spec is the only record Gymnasium keeps of how an env was built; an env
without one (a class instantiated directly) or a wrapper that does not record its arguments
cannot be compared, and the comparison says so rather than guessing.
"""

from __future__ import annotations

import functools
import numbers
import sys
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from maxent.training.vector import make_env

__all__ = ["InexactResumeWarning", "describe_env", "difference", "hint", "not_replayed", "rebuild_factory"]

# The agent's own per-copy check wrapper (maxent.training.vector.CheckedEnv) takes no arguments and
# changes no step, so an env with it and the same env without it (a user's vector env) are one env.
_TRANSPARENT_WRAPPERS = frozenset({"maxent.training.vector:CheckedEnv"})
# Wrappers whose statistics run across episodes: replaying the episodes in flight does not bring
# them back, so an env with one cannot be resumed exactly however it is described.
_ACROSS_EPISODES = frozenset({"gymnasium.wrappers.stateful_observation:NormalizeObservation",
                              "gymnasium.wrappers.stateful_reward:NormalizeReward"})
_SPEC_FIELDS = ("id", "entry_point", "kwargs", "max_episode_steps", "order_enforce",
                "disable_env_checker", "wrappers")


class InexactResumeWarning(RuntimeWarning):
    """A loaded agent cannot continue exactly as the saved run would have (the episodes in flight
    are not replayed). Turn it into an error where an exact resume is required:
    ``warnings.simplefilter("error", InexactResumeWarning)``."""


class _Unknown(Exception):
    """A part of an env's construction that its spec does not record."""


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON values (dicts with str keys, lists, numbers, str, bool, None), or
    :class:`_Unknown` naming ``where`` when it is something else (an object, a function)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.tolist()
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise _Unknown(f"{where} is a {type(value).__name__} ({value!r:.40}), which a checkpoint cannot "
                   "record")


def _entry_point(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    return f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', repr(entry))}"


def _describe_spec(spec: gym.envs.registration.EnvSpec) -> dict[str, Any]:
    wrappers = []
    for wrapper in spec.additional_wrappers:
        if wrapper.entry_point in _TRANSPARENT_WRAPPERS:
            continue
        if _entry_point(wrapper.entry_point) in _ACROSS_EPISODES:
            raise _Unknown(f"its wrapper {wrapper.name} keeps running statistics across episodes, "
                           "which a checkpoint does not hold")
        if wrapper.kwargs is None:
            raise _Unknown(f"its wrapper {wrapper.name} does not record its arguments (derive it "
                           "from gymnasium.utils.RecordConstructorArgs)")
        wrappers.append({"name": wrapper.name, "entry_point": _entry_point(wrapper.entry_point),
                         "kwargs": {k: _plain(v, f"argument {k} of wrapper {wrapper.name}")
                                    for k, v in wrapper.kwargs.items()}})
    return {"id": spec.id, "entry_point": _entry_point(spec.entry_point),
            "kwargs": {k: _plain(v, f"gymnasium.make's keyword {k}") for k, v in spec.kwargs.items()},
            "max_episode_steps": spec.max_episode_steps, "order_enforce": spec.order_enforce,
            "disable_env_checker": spec.disable_env_checker, "wrappers": wrappers}


def _describe_copy(env: Any, spec: Any) -> dict[str, Any]:
    if spec is None:
        name = type(getattr(env, "unwrapped", env)).__name__ if env is not None else "env"
        return {"unknown": f"it is a {name} with no spec (not built by gymnasium.make)"}
    try:
        return _describe_spec(spec)
    except _Unknown as err:
        return {"unknown": str(err)}


def describe_env(env: Any) -> dict[str, Any] | None:
    """``{"copies": [...]}``: one description per copy of ``env`` (a ``gymnasium.Env`` or a vector
    env), each the spec's fields or ``{"unknown": why}``. ``None`` for anything else (an agent
    without an env, a task stream)."""
    if isinstance(env, gym.vector.VectorWrapper):
        why = (f"it is wrapped in the vector wrapper {type(env).__name__}, which records neither "
               "its arguments nor its state")
        return {"copies": [{"unknown": why}] * env.num_envs}
    if isinstance(env, gym.vector.SyncVectorEnv):
        copies = [_describe_copy(e, e.spec) for e in env.envs]
    elif isinstance(env, gym.vector.VectorEnv):
        try:
            specs = env.get_attr("spec")  # the copies live in other processes
        except Exception as err:  # a vector env that cannot answer: say so, do not guess
            return {"copies": [{"unknown": f"its copies' specs could not be read ({err})"}]
                    * env.num_envs}
        copies = [_describe_copy(None, s) for s in specs]
    elif isinstance(env, gym.Env):
        copies = [_describe_copy(env, env.spec)]
    else:
        return None
    return {"copies": copies}


def _show(value: Any) -> str:
    return "none" if value is None else repr(value)


def _spec_difference(saved: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    for field in _SPEC_FIELDS:
        was, now = saved.get(field), given.get(field)
        if was == now:
            continue
        if field == "kwargs":
            key = next(k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k))
            return (f"gymnasium.make's keyword {key} is {_show(was.get(key))} there, "
                    f"{_show(now.get(key))} here")
        if field == "wrappers":
            names_was, names_now = [w["name"] for w in was], [w["name"] for w in now]
            if names_was != names_now:
                return f"the wrappers are {names_was or 'none'} there, {names_now or 'none'} here"
            w, v = next((w, v) for w, v in zip(was, now) if w != v)
            return f"wrapper {w['name']}'s arguments are {w['kwargs']} there, {v['kwargs']} here"
        return f"{field} is {_show(was)} there, {_show(now)} here"
    return None


def well_formed(description: Any) -> bool:
    """Whether ``description`` has the shape :func:`describe_env` gives (a checkpoint's state.json
    is read back, so it is checked before it is trusted)."""
    copies = description.get("copies") if isinstance(description, Mapping) else None
    if not isinstance(copies, list) or not copies:
        return False
    for copy in copies:
        if not isinstance(copy, Mapping):
            return False
        if "unknown" in copy:
            continue
        if set(copy) != set(_SPEC_FIELDS) or not isinstance(copy["id"], str) \
                or not isinstance(copy["entry_point"], str) or not isinstance(copy["kwargs"], Mapping) \
                or not isinstance(copy["max_episode_steps"], (int, type(None))) \
                or not isinstance(copy["order_enforce"], bool) \
                or not isinstance(copy["disable_env_checker"], bool) \
                or not isinstance(copy["wrappers"], list) or not all(
                    isinstance(w, Mapping) and isinstance(w.get("name"), str)
                    and isinstance(w.get("entry_point"), str) and isinstance(w.get("kwargs"), Mapping)
                    for w in copy["wrappers"]):
            return False
    return True


def _loaded_wrapper(entry_point: str) -> type | None:
    """The wrapper class ``entry_point`` names if its module is already imported and it is a
    ``gymnasium.Wrapper``; else ``None``. A checkpoint's files are data: loading one imports no
    module and calls nothing but a wrapper class this process already has."""
    module, _, name = entry_point.partition(":")
    target = sys.modules.get(module)
    for part in name.split(".") if target is not None else ():
        target = getattr(target, part, None)
    return target if isinstance(target, type) and issubclass(target, gym.Wrapper) else None


def difference(saved: Mapping[str, Any] | None, given: Mapping[str, Any] | None) -> str | None:
    """Why the env described by ``given`` may not be the one described by ``saved`` (both from
    :func:`describe_env`), or ``None`` when they are the same env."""
    if saved is None:
        return "the checkpoint does not describe its env (saved by an older maxent)"
    if not well_formed(saved):
        return "the checkpoint's description of its env is malformed"
    if given is None:
        return "the env given has no description"
    was, now = list(saved["copies"]), list(given["copies"])
    if len(was) != len(now):
        return f"n_envs (env copies) is {len(was)} there, {len(now)} here"
    for i, (a, b) in enumerate(zip(was, now)):
        copy = f" (copy {i})" if len(was) > 1 else ""
        if "unknown" in a:
            return f"the checkpoint's env cannot be compared{copy}: {a['unknown']}"
        if "unknown" in b:
            return f"the env given cannot be compared{copy}: {b['unknown']}"
        why = _spec_difference(a, b)
        if why is not None:
            return f"{why}{copy}"
    return None


def rebuild_factory(saved: Mapping[str, Any] | None) -> Callable[[], gym.Env] | None:
    """A constructor of the env ``saved`` describes (``gymnasium.make`` of its id with its
    keywords, time limit and wrappers), or ``None`` when the description is incomplete, its copies
    differ, its id is not registered in this process or a wrapper is not a loaded wrapper class."""
    if not well_formed(saved):
        return None
    first = saved["copies"][0]
    if "unknown" in first or any(c != first for c in saved["copies"]) or first["id"] not in gym.registry:
        return None
    spec = gym.spec(first["id"])
    if _entry_point(spec.entry_point) != first["entry_point"]:
        return None  # the id names another env in this process
    wrappers = [(_loaded_wrapper(w["entry_point"]), dict(w["kwargs"])) for w in first["wrappers"]]
    if any(cls is None for cls, _ in wrappers):
        return None
    limit = first["max_episode_steps"]
    return functools.partial(_build, first["id"], -1 if limit is None else limit,  # -1: no limit
                             first["disable_env_checker"], dict(first["kwargs"]), wrappers)


def _build(env_id: str, max_episode_steps: int, disable_env_checker: bool, kwargs: dict[str, Any],
           wrappers: list[tuple[type, dict[str, Any]]]) -> gym.Env:
    env = make_env(env_id, max_episode_steps=max_episode_steps, disable_env_checker=disable_env_checker,
                   **kwargs)
    for cls, arguments in wrappers:
        env = cls(env, **arguments)
    return env


def hint(saved: Mapping[str, Any] | None) -> str:
    """What to pass to ``load`` to continue on the env ``saved`` describes."""
    if rebuild_factory(saved) is not None:
        return ("load it with env=None (the env is rebuilt from the checkpoint's description) or "
                "an env built the same way, and the n_envs it was saved with")
    return ("train and load it on an env that can be compared: built by gymnasium.make (register "
            "a custom class with gymnasium.register) and wrapped only in wrappers that record "
            "their arguments (gymnasium.utils.RecordConstructorArgs) and keep no statistics "
            "across episodes")


def not_replayed(path: Any, why: str, saved: Mapping[str, Any] | None) -> str:
    """The one-line message of an :class:`InexactResumeWarning` for episodes left unreplayed."""
    return (f"{path}: the episodes in flight when it was saved are not replayed because {why}; "
            "training continues from fresh episodes and will not repeat the uninterrupted run "
            "(weights, optimiser, replay buffer and counters are restored exactly). For an exact "
            f"resume, {hint(saved)}")

