"""What a saved value may be, for :mod:`maxent.training.saved`: the kinds and ranges that the
value a freshly built agent writes implies (:func:`like`), and the checks of what no declared entry
covers (the common state every agent saves, replay buffers, per-episode lists), each refusing with
one line that names the file and the field."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from maxent.training.checkpoint import REPLAY_FILE, STATE_FILE, Checkpoint, CheckpointError
from maxent.training.vector import check_env_id

__all__ = ["MAX_COUNT", "Key", "check_common_state", "check_in_flight", "check_replay", "episodes_check",
           "like", "log_rows_check"]

Key = str | tuple[str, ...]  # a key of state.json, or a path of keys into nested dicts


def _path(key: Key) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _put(state: dict, key: Key, value: Any) -> None:
    *outer, last = _path(key)
    for part in outer:
        state = state.setdefault(part, {})
    state[last] = value


def _get(state: dict, key: Key) -> Any:
    where = getattr(state, "where", STATE_FILE)
    done: list[str] = []
    for part in _path(key):
        if not isinstance(state, dict):
            raise CheckpointError(f"{where} field {_field(tuple(done))} is a {type(state).__name__}, "
                                  f"expected an object holding {part!r}; the checkpoint was written "
                                  "by another program — resume from an earlier one")
        state = state[part]
        done.append(part)
    return state


def _has(state: dict, key: Key) -> bool:
    for part in _path(key):
        if not isinstance(state, dict) or part not in state:
            return False
        state = dict.__getitem__(state, part)
    return True


def _field(key: Key) -> str:
    return "".join(f"[{p!r}]" for p in _path(key))


MAX_COUNT = 2**62  # counters (steps, updates, episodes) beyond this are damage, not progress


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def _numbers(value: Any) -> bool:
    """Whether ``value`` is a finite number or a (nested) list of them."""
    if isinstance(value, (list, tuple)):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def like(value: Any, template: Any) -> str | None:
    """Why the JSON ``value`` cannot stand where this agent has ``template`` (the value a freshly
    built agent writes), or None if it can. Integers are counters in ``[0, MAX_COUNT]``; numbers
    are finite (unless the template is not); lists hold what the template's first element is
    (tuples: as many elements as it has); an empty list template is a history, numbers or rows of
    numbers of one length; objects have the template's keys; a None template accepts any finite
    scalar."""
    if template is None:
        if value is None or isinstance(value, (bool, str)) or (_numbers(value)
                                                               and not isinstance(value, list)):
            return None
        return f"is {_kind(value)}, expected null or a finite number"
    if isinstance(template, bool):
        return None if isinstance(value, bool) else f"is {_kind(value)}, expected a boolean"
    if isinstance(template, int):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"is {_kind(value)}, expected an integer"
        return None if 0 <= value <= MAX_COUNT else f"is {value}, expected a count in [0, 2**62]"
    if isinstance(template, float):
        if not math.isfinite(template):  # a bound that is infinite by design: any number but NaN
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return None if number and not math.isnan(value) else f"is {value!r:.40}, expected a number"
        return None if _numbers(value) and not isinstance(value, list) \
            else f"is {value!r:.40}, expected a finite number"
    if isinstance(template, str):
        return None if isinstance(value, str) else f"is {_kind(value)}, expected a string"
    if isinstance(template, (list, tuple, deque)):
        if not isinstance(value, list):
            return f"is {_kind(value)}, expected a list"
        if isinstance(template, tuple) and len(value) != len(template):
            return f"has {len(value)} elements, expected {len(template)}"
        if not template:  # a history: numbers, or rows of numbers of one length
            if not _numbers(value):
                return "holds a value that is not a finite number"
            rows = {len(v) if isinstance(v, list) else -1 for v in value}
            if len(rows) > 1 or 0 in rows or any(isinstance(x, list) for v in value
                                                 if isinstance(v, list) for x in v):
                return "mixes numbers and rows of numbers of different lengths"
            return None
        first = next(iter(template))
        for i, v in enumerate(value):
            why = like(v, template[i] if isinstance(template, tuple) else first)
            if why:
                return f"[{i}] {why}"
        return None
    if isinstance(template, dict):
        if not isinstance(value, dict):
            return f"is {_kind(value)}, expected an object"
        if set(value) != set(template):
            odd = sorted(set(value) ^ set(template), key=str)[0]
            return (f"has no entry {odd!r}" if odd in template else f"has an unexpected entry {odd!r}")
        for k, v in value.items():
            why = like(v, template[k])
            if why:
                return f"[{k!r}] {why}"
        return None
    return None


def _check_like(ckpt: Checkpoint, key: Key, value: Any, template: Any, file: str = STATE_FILE) -> None:
    why = like(value, template)
    if why:
        raise CheckpointError(f"{ckpt.path / file} field {_field(key)} {why}; the file was edited or "
                              "written by another program — resume from an earlier checkpoint")


def check_replay(ckpt: Checkpoint, buffer: Any, prefix: str = "") -> None:
    """Refuse a replay buffer in ``ckpt.arrays`` (arrays ``{prefix}data``, ``pos``, ``capacity``,
    as :meth:`maxent.training.replay.ReplayBuffer.to_arrays` writes them) that ``buffer`` cannot
    take exactly: float32 rows of its width, no more than it holds, finite; a capacity and ring
    position that the rows make possible."""
    if ckpt.arrays is None:
        return
    where = ckpt.path / REPLAY_FILE
    names = {f"{prefix}{k}" for k in ("data", "pos", "capacity")}
    present = {k for k in ckpt.arrays if k.startswith(prefix)} if prefix else set(ckpt.arrays)
    if present != names:
        odd = sorted(present ^ names)[0]
        raise CheckpointError(f"{where} {'has no field' if odd in names else 'has an unexpected field'} "
                              f"{odd!r}; it does not hold this agent's replay buffer — resume from an "
                              "earlier checkpoint")
    data, pos, capacity = (ckpt.arrays[f"{prefix}{k}"] for k in ("data", "pos", "capacity"))
    fix = "the file was edited or written by another program — resume from an earlier checkpoint"
    for name, value in ((f"{prefix}pos", pos), (f"{prefix}capacity", capacity)):
        if value.shape != () or value.dtype != np.int64:
            raise CheckpointError(f"{where} field {name!r} has shape {value.shape} and dtype "
                                  f"{value.dtype}, expected one int64; {fix}")
    if data.dtype != np.float32 or data.ndim != 2 or data.shape[1] != buffer.width:
        raise CheckpointError(f"{where} field {prefix + 'data'!r} has shape {data.shape} and dtype "
                              f"{data.dtype}, this agent's buffer holds float32 rows of width "
                              f"{buffer.width}; load it with the env it was trained on")
    rows, cap, at = data.shape[0], int(capacity), int(pos)
    if not rows <= cap <= MAX_COUNT or cap < 1:
        raise CheckpointError(f"{where} field {prefix + 'capacity'!r} is {cap}, expected at least the "
                              f"{rows} rows saved (and at least 1); {fix}")
    if rows > buffer.capacity or (rows == cap and cap != buffer.capacity):
        raise CheckpointError(f"{where} field {prefix + 'data'!r} holds {rows} rows of a buffer of "
                              f"capacity {cap}, this agent's holds {buffer.capacity}; keep buffer_size "
                              "equal when resuming")
    if not (0 <= at < cap if rows == cap else at == rows):
        expected = f"in [0, {cap})" if rows == cap else f"{rows} (the rows of a ring not yet full)"
        raise CheckpointError(f"{where} field {prefix + 'pos'!r} is {at}, expected {expected}; {fix}")
    if not np.isfinite(data).all():
        raise CheckpointError(f"{where} field {prefix + 'data'!r} holds NaN/inf; {fix}")


def episodes_check(other: Key, window: int | None = None,
                   counts: bool = False) -> Callable[[Any, Checkpoint], str | None]:
    """A ``Value.check`` for a list of per-episode figures: as long as the list at ``other`` (the
    returns and lengths of the same episodes), no longer than the ``window`` kept, and of counts
    (lengths) where ``counts``."""
    def check(saved: Any, ckpt: Checkpoint) -> str | None:
        if counts:
            why = like(saved, [0])
            if why:
                return why
        paired = _get(ckpt.state, other)
        if not isinstance(paired, list) or len(paired) != len(saved):
            return f"has {len(saved)} episodes, but {_field(other)} has " \
                   f"{len(paired) if isinstance(paired, list) else _kind(paired)}"
        if window is not None and len(saved) > window:
            return f"has {len(saved)} episodes, more than the {window} kept"
        return None
    return check


def log_rows_check(counter: Key, per_step: int, max_keys: int = 512,
                   max_name: int = 200) -> Callable[[Any, Checkpoint], str | None]:
    """A ``Value.check`` for a log history (transformers' ``TrainerState.log_history``): a list of
    at most one row per step counted at ``counter``; each row an object of at most ``max_keys``
    metric names (non-empty strings of at most ``max_name`` characters) to numbers, with an integer
    ``"step"`` in ``[1, counter * per_step]`` that grows from row to row."""
    def check(saved: Any, ckpt: Checkpoint) -> str | None:
        if not isinstance(saved, list):
            return f"is {_kind(saved)}, expected a list of log rows"
        steps = _get(ckpt.state, counter)
        steps = steps if isinstance(steps, int) and not isinstance(steps, bool) else 0
        if len(saved) > steps:
            return f"has {len(saved)} rows, more than the {steps} steps of {_field(counter)}"
        last = 0
        for i, row in enumerate(saved):
            if not isinstance(row, dict):
                return f"[{i}] is {_kind(row)}, expected an object of metrics"
            if len(row) > max_keys:
                return f"[{i}] has {len(row)} entries, more than {max_keys}"
            for name, value in row.items():
                if not name or len(name) > max_name:
                    return f"[{i}] has a metric name of {len(name)} characters, expected 1 to {max_name}"
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    return f"[{i}][{name!r:.60}] is {_kind(value)}, expected a number"
            step = row.get("step")
            if not isinstance(step, int) or isinstance(step, bool) or not last < step <= steps * per_step:
                return (f"[{i}]['step'] is {step!r:.40}, expected an integer above the previous row's "
                        f"{last} and at most {steps * per_step}")
            last = step
        return None
    return check


def check_common_state(ckpt: Checkpoint, rebuild_env: bool = False) -> None:
    """Refuse a checkpoint whose common state (what :meth:`Agent.save` writes for every agent:
    ``env_id``, ``seed``, ``num_timesteps``) is out of range, before the agent is built from it;
    ``rebuild_env``: the env will be built from the saved id, which must then be registered."""
    env_id = ckpt.state["env_id"]
    if env_id is not None and (not isinstance(env_id, str) or not env_id):
        raise CheckpointError(f"{ckpt.path / STATE_FILE} field ['env_id'] is {env_id!r:.60}, expected "
                              "an env id or null; the file was edited — resume from an earlier checkpoint")
    if rebuild_env and env_id is not None:
        try:
            check_env_id(env_id)
        except ValueError as err:
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field ['env_id']: {err} Or pass env=... "
                                  "to load") from None
    seed = ckpt.state["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise CheckpointError(f"{ckpt.path / STATE_FILE} field ['seed'] is {seed!r:.60}, expected an "
                              "integer in [0, 2**63); the file was edited — resume from an earlier "
                              "checkpoint")
    _check_like(ckpt, "num_timesteps", ckpt.state["num_timesteps"], 0)


def check_in_flight(ckpt: Checkpoint, action_dim: int) -> None:
    """Refuse episodes in flight as SAC saves them (state.json: ``in_flight``, ``episode_seeds``,
    ``episode_replayable``, ``episode_return``, ``episode_length``; the actions so far as tensors
    ``episode.actions.{i}``) that no save could have written, before any is replayed."""
    state, fix = ckpt.state, "the file was edited — resume from an earlier checkpoint"
    fields = {"in_flight": False, "episode_seeds": [0], "episode_replayable": [True],
              "episode_return": [0.0], "episode_length": [0]}
    for key, template in fields.items():
        why = like(state[key], template)
        if why is None and key != "in_flight" and len(state[key]) != len(state["episode_seeds"]):
            why = (f"has {len(state[key])} elements, but ['episode_seeds'] has "
                   f"{len(state['episode_seeds'])}: one per env copy in both")
        if why:
            raise CheckpointError(f"{ckpt.path / 'state.json'} field [{key!r}] {why}; {fix}")
    n = len(state["episode_seeds"])
    for name, t in ckpt.tensors.items():
        if not name.startswith("episode.actions."):
            continue
        i = name[len("episode.actions."):]
        i = int(i) if i.isdigit() else -1
        if not 0 <= i < n or not state["episode_replayable"][i] or \
                tuple(t.shape) != (state["episode_length"][i], action_dim) or t.dtype != torch.float32:
            expected = (f"float32 of shape ({state['episode_length'][i]}, {action_dim}): one action per "
                        "step of a replayable episode as state.json field ['episode_length'] and "
                        "['episode_replayable'] say" if 0 <= i < n else f"an env copy below {n}")
            raise CheckpointError(f"{ckpt.path / 'weights.safetensors'} field {name!r} has shape "
                                  f"{tuple(t.shape)} and dtype {t.dtype}, expected {expected}; {fix}")
    for i in range(n):
        if state["in_flight"] and state["episode_replayable"][i] and state["episode_length"][i] \
                and f"episode.actions.{i}" not in ckpt.tensors:
            raise CheckpointError(f"{ckpt.path / 'weights.safetensors'} has no field "
                                  f"'episode.actions.{i}' for the episode in flight; {fix}")
