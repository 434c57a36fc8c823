"""Declared checkpoint contents: an agent lists what it saves (modules, optimisers, controllers,
RNGs, tensors, counters, arrays) and this module writes, reads and validates them, so no agent
hand-writes the split into tensors, JSON and arrays or the checks on the way back.

Each entry names where it lives on disk: a tensor name (or prefix) in ``weights.safetensors``, a
key (or key path) in ``state.json``, an array name in ``replay.npz``. Restoring checks every
entry's names, shapes, dtypes and controller kind before reading any back, and refuses a mismatch
with one line naming the file and the field. The names are the ones the agents wrote before this
module existed, so their older checkpoints load unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from maxent.training.checkpoint import (
    REPLAY_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    decode_optimizer_state,
    load_optimizer_state,
    optimizer_state_to_tensors,
    state_dict_to_tensors,
)

__all__ = [
    "Array", "Check", "Controller", "Entry", "Generator", "Module", "NumpyRNG", "Optimizer",
    "Tensor", "Value", "restore_entries", "write_entries",
]

Key = str | tuple[str, ...]  # a key of state.json, or a path of keys into nested dicts


def _path(key: Key) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _put(state: dict, key: Key, value: Any) -> None:
    *outer, last = _path(key)
    for part in outer:
        state = state.setdefault(part, {})
    state[last] = value


def _get(state: dict, key: Key) -> Any:
    for part in _path(key):
        state = state[part]
    return state


def _has(state: dict, key: Key) -> bool:
    for part in _path(key):
        if not isinstance(state, dict) or part not in state:
            return False
        state = dict.__getitem__(state, part)
    return True


def _field(key: Key) -> str:
    return "".join(f"[{p!r}]" for p in _path(key))


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
        if self.kind and saved.get("kind") != expected:
            raise CheckpointError(f"{ckpt.path / STATE_FILE} field {_field(key)} holds a "
                                  f"{saved.get('kind')}, but this agent has a {expected}; {self.fix}")

    def read(self, ckpt):
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
        self.controller.load_state_dict(saved)


@dataclass
class Generator(Entry):
    """A torch generator's state as the uint8 tensor ``name``."""

    name: str
    generator: torch.Generator

    def write(self, tensors, state, arrays):
        tensors[self.name] = self.generator.get_state()

    def validate(self, ckpt):
        current = self.generator.get_state()
        _check_tensor(ckpt, self.name, ckpt.tensors[self.name], current.shape, current.dtype,
                      "the generator was saved on another device or by another program")

    def read(self, ckpt):
        self.generator.set_state(ckpt.tensors[self.name].clone())


@dataclass
class NumpyRNG(Entry):
    """A numpy generator's bit-generator state at ``key`` in state.json."""

    key: Key
    rng: np.random.Generator

    def write(self, tensors, state, arrays):
        _put(state, self.key, self.rng.bit_generator.state)

    def read(self, ckpt):
        self.rng.bit_generator.state = _get(ckpt.state, self.key)


@dataclass
class Tensor(Entry):
    """The tensor or numpy array ``owner.attr`` (``owner[attr]`` for an int) as the tensor
    ``name``; restored with the same type, shape and dtype, which must match."""

    name: str
    owner: Any
    attr: str | int
    fix: str = "load it with the env and config it was trained with"

    def write(self, tensors, state, arrays):
        value = _read(self.owner, self.attr)
        tensors[self.name] = torch.from_numpy(value.copy()) if isinstance(value, np.ndarray) else value

    def validate(self, ckpt):
        value = _read(self.owner, self.attr)
        dtype = torch.from_numpy(value[:0]).dtype if isinstance(value, np.ndarray) else value.dtype
        _check_tensor(ckpt, self.name, ckpt.tensors[self.name], value.shape, dtype, self.fix)

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
    the saved value back (e.g. ``int``); ``default`` is used when an older checkpoint lacks it."""

    key: Key
    owner: Any
    attr: str
    load: Callable[[Any], Any] | None = None
    save: Callable[[Any], Any] | None = None
    default: Callable[[Checkpoint], Any] | None = None

    def write(self, tensors, state, arrays):
        value = getattr(self.owner, self.attr)
        _put(state, self.key, self.save(value) if self.save else value)

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
    unless ``required``."""

    name: str
    owner: Any
    attr: str
    dtype: Any = np.float64
    required: bool = False

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
            raise CheckpointError(f"the agent in {ckpt.path} was trained with {self.what} {saved}, "
                                  f"but this one has {current}; {self.fix}")

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
