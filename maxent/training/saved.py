"""Declared checkpoint contents: an agent lists what it saves (modules, optimisers, controllers,
RNGs, tensors, counters, arrays) and this module writes, reads and validates them, so no agent
hand-writes the split into tensors, JSON and arrays or the checks on the way back.

Each entry names where it lives on disk: a tensor name (or prefix) in ``weights.safetensors``, a
key (or key path) in ``state.json``, an array name in ``replay.npz``. Restoring checks every
entry (names, shapes, dtypes, ranges, finiteness, RNG states, optimiser state against its
parameters, controller kind; values as :mod:`maxent.training.saved_values` says) before reading
any back, and refuses a mismatch with one line naming the file and the field. The names are the ones the agents wrote before this
module existed, so their older checkpoints load unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from maxent.training.checkpoint import REPLAY_FILE, STATE_FILE, WEIGHTS_FILE, Checkpoint, CheckpointError
from maxent.training.optim_state import (
    _TENSOR_REF,
    decode_optimizer_state,
    load_optimizer_state,
    optimizer_state_to_tensors,
    state_dict_to_tensors,
)
from maxent.training.saved_values import (
    Key,
    _check_like,
    _field,
    _get,
    _has,
    _kind,
    _numbers,
    _put,
    check_common_state,
    check_in_flight,
    check_replay,
    episodes_check,
    like,
)

__all__ = [
    "Array", "Check", "Controller", "Entry", "Generator", "Module", "NumpyRNG", "Optimizer",
    "Tensor", "Value", "check_common_state", "check_in_flight", "check_replay", "episodes_check",
    "like", "restore_entries", "write_entries",
]

def _read(owner: Any, attr: str | int) -> Any:
    return owner[attr] if isinstance(attr, int) else getattr(owner, attr)


def _write(owner: Any, attr: str | int, value: Any) -> None:
    if isinstance(attr, int):
        owner[attr] = value
    else:
        setattr(owner, attr, value)


def _check_tensor(ckpt: Checkpoint, name: str, saved: torch.Tensor, shape: Sequence[int],
                  dtype: torch.dtype, fix: str) -> None:
    where = f"{ckpt.path / WEIGHTS_FILE} field {name!r}"
    if tuple(saved.shape) != tuple(shape):
        raise CheckpointError(f"{where} has shape {tuple(saved.shape)}, this agent expects "
                              f"{tuple(shape)}; {fix}")
    if saved.dtype != dtype:
        raise CheckpointError(f"{where} has dtype {saved.dtype}, this agent expects {dtype}; {fix}")


def _check_values(ckpt: Checkpoint, name: str, saved: torch.Tensor, nonnegative: bool = False) -> None:
    """Floating tensors must be finite; counts (``nonnegative``) must not be negative."""
    where = f"{ckpt.path / WEIGHTS_FILE} field {name!r}"
    if saved.is_floating_point() and not bool(torch.isfinite(saved).all()):
        raise CheckpointError(f"{where} holds NaN/inf; the run had diverged or the file was edited — "
                              "resume from an earlier checkpoint")
    if nonnegative and not saved.is_floating_point() and saved.dtype != torch.bool \
            and saved.numel() and int(saved.min()) < 0:
        raise CheckpointError(f"{where} holds a negative count ({int(saved.min())}); the file was "
                              "edited — resume from an earlier checkpoint")


# --------------------------------------------------------------------------- the entries


class Entry:
    """One declared part of a checkpoint."""

    def validate(self, ckpt: Checkpoint) -> None:
        """Raise a :class:`CheckpointError` if the saved part does not fit; change nothing."""

    def write(self, tensors: dict, state: dict, arrays: dict) -> None:
        raise NotImplementedError

    def read(self, ckpt: Checkpoint) -> None:
        raise NotImplementedError


@dataclass
class Module(Entry):
    """A module's ``state_dict`` as tensors ``{name}.{key}``; ``changed`` names the config fields
    whose change would make the saved weights not fit."""

    name: str
    module: torch.nn.Module
    changed: str = "layer sizes"

    def write(self, tensors, state, arrays):
        for key, value in self.module.state_dict().items():
            tensors[f"{self.name}.{key}"] = value

    def validate(self, ckpt):
        prefix = self.name + "."
        saved = {k[len(prefix):]: v for k, v in ckpt.tensors.items() if k.startswith(prefix)}
        if not saved:
            raise CheckpointError(f"{ckpt.path / WEIGHTS_FILE} holds no weights for {self.name!r}: "
                                  "the checkpoint is incomplete or from another agent; resume from "
                                  "an earlier one")
        current = self.module.state_dict()
        fix = f"were {self.changed} changed? Load with the config it was saved with"
        for key, value in current.items():
            if key not in saved:
                raise CheckpointError(f"{ckpt.path / WEIGHTS_FILE} has no field {prefix + key!r} "
                                      f"for the {self.name!r} weights; {fix}")
            _check_tensor(ckpt, prefix + key, saved[key], value.shape, value.dtype, fix)
            _check_values(ckpt, prefix + key, saved[key])
        extra = sorted(set(saved) - set(current))
        if extra:
            raise CheckpointError(f"{ckpt.path / WEIGHTS_FILE} field {prefix + extra[0]!r} is not a "
                                  f"weight of this agent's {self.name!r}; {fix}")

    def read(self, ckpt):
        prefix = self.name + "."
        self.module.load_state_dict({k[len(prefix):]: v for k, v in ckpt.tensors.items()
                                     if k.startswith(prefix)})


@dataclass
class Optimizer(Entry):
    """An optimiser's state: tensors under ``{name}.``, the rest at ``key`` in state.json
    (default: ``name``).

    A distributed (sharded) optimiser passes ``full_state``, its state gathered in torch's format
    with parameters by position, to be written instead of ``optimizer.state_dict()``, and
    ``loader``, which puts such a full state back into the shards."""

    name: str
    optimizer: torch.optim.Optimizer
    key: Key | None = None
    full_state: dict | None = None
    loader: Callable[[dict], None] | None = None

    def write(self, tensors, state, arrays):
        if self.full_state is not None:
            flat, meta = state_dict_to_tensors(self.full_state, self.name)
        else:
            flat, meta = optimizer_state_to_tensors(self.optimizer, self.name)
        tensors.update(flat)
        _put(state, self.key or self.name, meta)

    def validate(self, ckpt):
        key = self.key or self.name
        meta = _get(ckpt.state, key)
        where = f"{ckpt.path / STATE_FILE} field {_field(key)}"
        fix = "the file was edited or written by another program — resume from an earlier checkpoint"
        if not isinstance(meta, dict) or set(meta) != {"state", "param_groups"} \
                or not isinstance(meta["state"], list) or not isinstance(meta["param_groups"], list):
            raise CheckpointError(f"{where} is not an optimizer state (an object of the lists 'state' "
                                  f"and 'param_groups'); {fix}")
        groups = self.optimizer.param_groups
        params = [p for g in groups for p in g["params"]]
        # A sharded optimiser holds pieces of each parameter; its full state has the full shapes.
        shapes = self.full_state is None and self.loader is None
        if len(meta["param_groups"]) != len(groups):
            raise CheckpointError(f"{where}['param_groups'] has {len(meta['param_groups'])} groups, "
                                  f"this optimizer {len(groups)}; {fix}")
        first = 0
        for i, (saved, current) in enumerate(zip(meta["param_groups"], groups)):
            template = {k: (list(range(first, first + len(v))) if k == "params" else v)
                        for k, v in current.items()}
            unset = {k for k, v in current.items() if v is None}  # flags such as foreach
            first += len(current["params"])
            field = f"{where}['param_groups'][{i}]"
            why = like(saved, {k: v for k, v in template.items() if k != "params"} | {"params": []}) \
                if isinstance(saved, dict) else f"is {_kind(saved)}, expected an object"
            if why is None and saved["params"] != template["params"]:
                why = f"['params'] is {saved['params']!r:.60}, expected {template['params']}"
            if why is None:
                bad = [k for k, v in saved.items() if _numbers(v) and not isinstance(v, bool)
                       and any(x < 0 for x in (v if isinstance(v, list) else [v]))]
                why = f"[{bad[0]!r}] is negative" if bad else None
            if why is None:
                bad = [k for k in sorted(unset) if not (saved[k] is None or isinstance(saved[k], bool))]
                why = f"[{bad[0]!r}] is {_kind(saved[bad[0]])}, expected null or a boolean" if bad else None
            if why:
                raise CheckpointError(f"{field} {why}; {fix}")
        if shapes and meta["state"] and len(meta["state"]) != len(params):
            raise CheckpointError(f"{where}['state'] holds the state of {len(meta['state'])} of the "
                                  f"{len(params)} parameters; it steps all of them; {fix}")
        seen, keys = set(), None
        for n, item in enumerate(meta["state"]):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                    and not isinstance(item[0], bool) and 0 <= item[0] < len(params)
                    and item[0] not in seen and isinstance(item[1], dict)):
                raise CheckpointError(f"{where}['state'][{n}] is not a pair [parameter index < "
                                      f"{len(params)}, state object] for a new parameter; {fix}")
            idx, entry = item
            seen.add(idx)
            param = params[idx]
            # One optimiser keeps the same entries, of the same kinds, for every parameter (Adam: the
            # tensors step, exp_avg, exp_avg_sq).
            signature = {k: _kind(v) for k, v in entry.items()}
            if keys is not None and signature != keys:
                odd = sorted(k for k in set(signature) | set(keys)
                             if signature.get(k) != keys.get(k))[0]
                raise CheckpointError(f"{where}['state'][{n}][{odd!r}] is {signature.get(odd, 'missing')}"
                                      f", but {keys.get(odd, 'absent')} in the other parameters' "
                                      f"states; {fix}")
            keys = signature
            for name, value in entry.items():
                field = f"{where}['state'][{n}][{name!r}]"
                if isinstance(value, dict):
                    if set(value) != {_TENSOR_REF}:
                        raise CheckpointError(f"{field} is an object, expected a tensor reference; {fix}")
                    ref = f"{self.name}.state.{idx}.{name}"
                    if value[_TENSOR_REF] != ref or ref not in ckpt.tensors:
                        raise CheckpointError(f"{field} refers to {value[_TENSOR_REF]!r:.60}, expected "
                                              f"the tensor {ref!r} in {WEIGHTS_FILE}; {fix}")
                    t = ckpt.tensors[ref]
                    tensor_where = f"{ckpt.path / WEIGHTS_FILE} field {ref!r}"
                    if not t.is_floating_point():
                        raise CheckpointError(f"{tensor_where} has dtype {t.dtype}, expected a floating "
                                              f"point optimizer state; {fix}")
                    if t.dim() == 0 and name == "step":
                        steps = float(t)
                        if not (math.isfinite(steps) and steps >= 0 and steps == int(steps)):
                            raise CheckpointError(f"{tensor_where} is {float(t)}, expected a "
                                                  f"whole number of steps >= 0; {fix}")
                    elif shapes and (tuple(t.shape) != tuple(param.shape) or t.dtype != param.dtype):
                        raise CheckpointError(f"{tensor_where} has shape {tuple(t.shape)} and dtype "
                                              f"{t.dtype}, expected {tuple(param.shape)} and "
                                              f"{param.dtype} like its parameter; {fix}")
                    _check_values(ckpt, ref, t)
                elif not _numbers(value) and not isinstance(value, bool) and value is not None:
                    raise CheckpointError(f"{field} is {_kind(value)}, expected a tensor reference "
                                          f"or a finite number; {fix}")

    def read(self, ckpt):
        key = self.key or self.name
        try:
            meta = _get(ckpt.state, key)
            if self.loader is not None:
                self.loader(decode_optimizer_state(self.optimizer, ckpt.tensors, meta, self.name))
            else:
                load_optimizer_state(self.optimizer, ckpt.tensors, meta, self.name)
        except CheckpointError:
            raise
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(key)} holds an optimizer "
                                  f"state that does not fit this config: {err}") from None


@dataclass
class Controller(Entry):
    """A temperature or curriculum controller (anything with ``state_dict``/``load_state_dict``):
    its tensors as ``{name}.{key}``, its other values and its class name (``kind``) at ``key`` in
    state.json. ``kind=False`` stores no class name; ``as_floats=True`` stores every value,
    tensors as floats, in state.json; ``one_dim=True`` stores 0-dim tensors with shape (1,)."""

    name: str
    controller: Any
    key: Key | None = None
    kind: bool = True
    as_floats: bool = False
    one_dim: bool = False
    fix: str = "load it with the config it was saved with"

    def write(self, tensors, state, arrays):
        scalars: dict[str, Any] = {"kind": type(self.controller).__name__} if self.kind else {}
        for key, value in self.controller.state_dict().items():
            if self.as_floats:
                scalars[key] = float(value) if torch.is_tensor(value) else value
            elif isinstance(value, torch.Tensor):
                tensors[f"{self.name}.{key}"] = value.reshape(1) if self.one_dim and value.dim() == 0 else value
            else:
                scalars[key] = value
        _put(state, self.key or self.name, scalars)

    def validate(self, ckpt):
        key = self.key or self.name
        saved = _get(ckpt.state, key)
        expected = type(self.controller).__name__
        if not isinstance(saved, dict):
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(key)} is {_kind(saved)}, "
                                  f"expected the {self.name!r} controller's state; {self.fix}")
        if self.kind and saved.get("kind") != expected:
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(key)} holds a "
                                  f"{str(saved.get('kind'))[:60]}, but this agent has a {expected}; {self.fix}")
        scalars = {k: v for k, v in saved.items() if k != "kind"}
        template = {}
        prefix = self.name + "."
        for k, v in self.controller.state_dict().items():
            if self.as_floats:
                template[k] = float(v) if torch.is_tensor(v) else v
            elif torch.is_tensor(v):
                name = prefix + k
                if name not in ckpt.tensors:
                    raise CheckpointError(f"{ckpt.path / WEIGHTS_FILE} has no field {name!r} for the "
                                          f"{self.name!r} controller; {self.fix}")
                shape = (1,) if self.one_dim and v.dim() == 0 else tuple(v.shape)
                saved = ckpt.tensors[name]
                # A dimension empty in a fresh controller is a history that grows as it learns.
                if len(saved.shape) == len(shape):
                    shape = tuple(n if want == 0 else want for n, want in zip(saved.shape, shape))
                _check_tensor(ckpt, name, saved, shape, v.dtype, self.fix)
                _check_values(ckpt, name, ckpt.tensors[name])
            else:
                template[k] = v
        why = like(scalars, template)
        if why:
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(key)} {why}; {self.fix}")
        # The controller's own checks (a bound above another, say) run on a copy, so that a
        # refusal leaves the live one as it was.
        try:
            copy.deepcopy(self.controller).load_state_dict(self._state(ckpt))
        except (ValueError, TypeError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(key)} does not fit the "
                                  f"{self.name!r} controller: {str(err).splitlines()[0]}; "
                                  f"{self.fix}") from None

    def read(self, ckpt):
        self.controller.load_state_dict(self._state(ckpt))

    def _state(self, ckpt: Checkpoint) -> dict:
        saved = {k: v for k, v in _get(ckpt.state, self.key or self.name).items() if k != "kind"}
        current = self.controller.state_dict()
        prefix = self.name + "."
        for k, v in ckpt.tensors.items():
            if k.startswith(prefix) and not self.as_floats:
                live = current.get(k[len(prefix):])
                if torch.is_tensor(live):
                    v = v.to(live.device)
                    if self.one_dim and live.dim() == 0:
                        v = v.reshape(())
                saved[k[len(prefix):]] = v
        return saved


@dataclass
class Generator(Entry):
    """A torch generator's state as the uint8 tensor ``name``."""

    name: str
    generator: torch.Generator

    def write(self, tensors, state, arrays):
        tensors[self.name] = self.generator.get_state()

    def validate(self, ckpt):
        current = self.generator.get_state()
        saved = ckpt.tensors[self.name]
        _check_tensor(ckpt, self.name, saved, current.shape, current.dtype,
                      "the generator was saved on another device or by another program")
        scratch = torch.Generator(device=self.generator.device)
        try:
            scratch.set_state(saved.clone())
            exact = torch.equal(scratch.get_state(), saved)
        except (RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{ckpt.path / WEIGHTS_FILE} field {self.name!r} is not a valid "
                                  f"generator state ({str(err).splitlines()[0]}); the file was edited — "
                                  "resume from an earlier checkpoint") from None
        if not exact:
            raise CheckpointError(f"{ckpt.path / WEIGHTS_FILE} field {self.name!r} is not a generator "
                                  "state torch keeps as given; the file was edited — resume from an "
                                  "earlier checkpoint")

    def read(self, ckpt):
        self.generator.set_state(ckpt.tensors[self.name].clone())


@dataclass
class NumpyRNG(Entry):
    """A numpy generator's bit-generator state at ``key`` in state.json."""

    key: Key
    rng: np.random.Generator

    def write(self, tensors, state, arrays):
        _put(state, self.key, self.rng.bit_generator.state)

    def validate(self, ckpt):
        saved = _get(ckpt.state, self.key)
        where = f"{ckpt.path / STATE_FILE} field {_field(self.key)}"
        scratch = type(self.rng.bit_generator)()
        why = None if _no_bools(saved) else "holds a boolean where numpy keeps integers"
        if why is None and isinstance(saved, dict):
            # numpy keeps these as given, unchecked: a buffered half-word flag and 32-bit word.
            if saved.get("has_uint32", 0) not in (0, 1) or isinstance(saved.get("has_uint32"), bool):
                why = f"['has_uint32'] is {saved.get('has_uint32')!r:.40}, expected 0 or 1"
            word = saved.get("uinteger", 0)
            if not isinstance(word, int) or isinstance(word, bool) or not 0 <= word < 2**32:
                why = f"['uinteger'] is {word!r:.40}, expected an integer in [0, 2**32)"
        if why is None:
            try:
                scratch.state = saved
                why = None if _plain(scratch.state) == saved else "is not a state numpy keeps as given"
            except (ValueError, TypeError, KeyError, OverflowError, IndexError) as err:
                why = f"is not a valid {type(scratch).__name__} state ({str(err)[:80]})"
        if why:
            raise CheckpointError(f"{where} {why}; the file was edited — resume from an earlier "
                                  "checkpoint")

    def read(self, ckpt):
        self.rng.bit_generator.state = _get(ckpt.state, self.key)


def _no_bools(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_no_bools(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_bools(v) for v in value)
    return not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars as the lists and numbers JSON reads back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


@dataclass
class Tensor(Entry):
    """The tensor or numpy array ``owner.attr`` (``owner[attr]`` for an int) as the tensor
    ``name``; restored with the same type, shape and dtype, which must match, and finite.
    Integer tensors are counts, never negative, unless ``nonnegative=False``."""

    name: str
    owner: Any
    attr: str | int
    fix: str = "load it with the env and config it was trained with"
    nonnegative: bool = True

    def write(self, tensors, state, arrays):
        value = _read(self.owner, self.attr)
        tensors[self.name] = torch.from_numpy(value.copy()) if isinstance(value, np.ndarray) else value

    def validate(self, ckpt):
        value = _read(self.owner, self.attr)
        dtype = torch.from_numpy(value[:0]).dtype if isinstance(value, np.ndarray) else value.dtype
        _check_tensor(ckpt, self.name, ckpt.tensors[self.name], value.shape, dtype, self.fix)
        _check_values(ckpt, self.name, ckpt.tensors[self.name], nonnegative=self.nonnegative)

    def read(self, ckpt):
        saved = ckpt.tensors[self.name]
        current = _read(self.owner, self.attr)
        if isinstance(current, np.ndarray):
            _write(self.owner, self.attr, saved.numpy().copy())
        else:
            _write(self.owner, self.attr, saved.to(current.device).clone())


@dataclass
class Value(Entry):
    """A JSON value (a counter, a list) ``owner.attr`` at ``key`` in state.json; ``load`` converts
    the saved value back (e.g. ``int``); ``default`` is used when an older checkpoint lacks it.
    The saved value must be :func:`like` what this agent writes (integers are counters, numbers
    finite), or one of ``choices`` where given; ``check(saved, ckpt)`` returns why a saved value
    that is like it still cannot be (a length the config or another field fixes), or None; with
    ``like_current=False`` it is the only check and must bound the value itself."""

    key: Key
    owner: Any
    attr: str
    load: Callable[[Any], Any] | None = None
    save: Callable[[Any], Any] | None = None
    default: Callable[[Checkpoint], Any] | None = None
    choices: Sequence[Any] | None = None
    check: Callable[[Any, Checkpoint], str | None] | None = None
    like_current: bool = True  # False: ``check`` alone judges it (rows a fresh agent has none of)

    def write(self, tensors, state, arrays):
        value = getattr(self.owner, self.attr)
        _put(state, self.key, self.save(value) if self.save else value)

    def validate(self, ckpt):
        if self.default is not None and not _has(ckpt.state, self.key):
            return
        saved = _get(ckpt.state, self.key)
        if self.choices is not None:
            if not any(type(saved) is type(c) and saved == c for c in self.choices):
                raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(self.key)} is "
                                      f"{saved!r:.60}, expected one of {list(self.choices)}; the file "
                                      "was edited — resume from an earlier checkpoint")
            return
        if self.like_current:
            value = getattr(self.owner, self.attr)
            _check_like(ckpt, self.key, saved, self.save(value) if self.save else value)
        why = self.check(saved, ckpt) if self.check is not None else None
        if why:
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(self.key)} {why}; the file "
                                  "was edited — resume from an earlier checkpoint")

    def read(self, ckpt):
        if self.default is not None and not _has(ckpt.state, self.key):
            value = self.default(ckpt)
        else:
            value = _get(ckpt.state, self.key)
        setattr(self.owner, self.attr, self.load(value) if self.load else value)


@dataclass
class Array(Entry):
    """``owner.attr`` (a list or an array) as the array ``name`` of replay.npz with ``dtype``.
    Restored as a list unless the attribute is an array; skipped when replay.npz was not read,
    unless ``required``. Floating values must be finite (``finite``; by default, unless the fresh
    agent's own array holds NaN, its marker for "not measured yet"); ``length``: the key of the
    (already checked) counter in state.json its length must equal (``or_empty``: or be empty)."""

    name: str
    owner: Any
    attr: str
    dtype: Any = np.float64
    required: bool = False
    finite: bool | None = None
    length: Key | None = None
    or_empty: bool = False

    def write(self, tensors, state, arrays):
        arrays[self.name] = np.asarray(getattr(self.owner, self.attr), dtype=self.dtype)

    def validate(self, ckpt):
        if ckpt.arrays is None:
            if self.required:
                raise CheckpointError(f"{ckpt.path} has no {REPLAY_FILE} with the field "
                                      f"{self.name!r}; resume from a complete checkpoint")
            return
        saved = ckpt.arrays[self.name]
        if saved.dtype != np.dtype(self.dtype):
            raise CheckpointError(f"{ckpt.path / REPLAY_FILE} field {self.name!r} has dtype "
                                  f"{saved.dtype}, this agent expects {np.dtype(self.dtype)}; "
                                  "the checkpoint was written by another program")
        current = getattr(self.owner, self.attr)
        if isinstance(current, np.ndarray) and saved.shape != current.shape:
            raise CheckpointError(f"{ckpt.path / REPLAY_FILE} field {self.name!r} has shape "
                                  f"{saved.shape}, this agent expects {current.shape}; load it "
                                  "with the env and config it was trained with")
        if not isinstance(current, np.ndarray) and saved.ndim != 1:
            raise CheckpointError(f"{ckpt.path / REPLAY_FILE} field {self.name!r} has shape "
                                  f"{saved.shape}, this agent expects a list (1-D); the checkpoint "
                                  "was written by another program")
        if self.length is not None:
            n = _get(ckpt.state, self.length)
            if len(saved) != n and not (self.or_empty and len(saved) == 0):
                raise CheckpointError(f"{ckpt.path / REPLAY_FILE} field {self.name!r} holds {len(saved)} "
                                      f"values, expected one per {_field(self.length)} of {STATE_FILE} "
                                      f"({n}){' or none' if self.or_empty else ''}; the file was "
                                      "edited — resume from an earlier checkpoint")
        finite = self.finite
        if finite is None:  # NaN in a fresh agent's own array marks "not measured yet"
            finite = not (isinstance(current, np.ndarray) and current.dtype.kind == "f"
                          and np.isnan(current).any())
        bad = ~np.isfinite(saved) if saved.dtype.kind in "fc" else None
        if bad is not None and (bad.any() if finite else np.isinf(saved).any()):
            raise CheckpointError(f"{ckpt.path / REPLAY_FILE} field {self.name!r} holds "
                                  f"{'NaN/inf' if finite else 'inf'}; the file was edited or the run "
                                  "diverged — resume from an earlier checkpoint")

    def read(self, ckpt):
        if ckpt.arrays is None:
            return
        saved = ckpt.arrays[self.name]
        current = getattr(self.owner, self.attr)
        setattr(self.owner, self.attr, saved.copy() if isinstance(current, np.ndarray) else saved.tolist())


@dataclass
class Check(Entry):
    """A fact about the agent (shapes, arm count) saved at ``key`` and required to be equal on
    restore: ``what`` names it in the error, ``fix`` says what to do. A list of keys checks
    several facts as one (``current`` then lists their values)."""

    key: Key | list[Key]
    current: Any
    what: str
    fix: str = "load it with the env it was trained on"

    def _pairs(self) -> list[tuple[Key, Any]]:
        if isinstance(self.key, list):
            return list(zip(self.key, self.current))
        return [(self.key, self.current)]

    def write(self, tensors, state, arrays):
        for key, value in self._pairs():
            _put(state, key, list(value) if isinstance(value, tuple) else value)

    def validate(self, ckpt):
        pairs = self._pairs()
        saved = [_get(ckpt.state, key) for key, _ in pairs]
        current = [value for _, value in pairs]
        saved = [list(v) if isinstance(v, (list, tuple)) else v for v in saved]
        current = [list(v) if isinstance(v, (list, tuple)) else v for v in current]
        if saved != current:
            if not isinstance(self.key, list):
                saved, current = saved[0], current[0]
            fields = ", ".join(_field(k) for k, _ in pairs)
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {fields}: the agent was trained "
                                  f"with {self.what} {saved}, but this one has {current}; {self.fix}")

    def read(self, ckpt):
        pass


# --------------------------------------------------------------------------- writing and reading


def write_entries(entries: Sequence[Entry]) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                                      dict[str, np.ndarray]]:
    """``(tensors, state, arrays)`` holding every entry."""
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for entry in entries:
        entry.write(tensors, state, arrays)
    return tensors, state, arrays


def restore_entries(entries: Sequence[Entry], ckpt: Checkpoint) -> None:
    """Validate every entry against ``ckpt``, then read them all back, in order."""
    for entry in entries:
        entry.validate(ckpt)
    for entry in entries:
        entry.read(ckpt)
