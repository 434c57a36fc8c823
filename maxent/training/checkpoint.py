"""Save and load agents as plain directories that can be read without executing code.

A checkpoint is ``config.json`` (format marker, versions, the agent's config and the SHA-256 of
that config and of every other file) + ``weights.safetensors`` + ``state.json`` (+ optional
``replay.npz``); nothing is pickled, saves are atomic, and a save holds the directory's run lock
(:mod:`maxent.training.runlock`) so two processes never write one checkpoint at once.

The checksums catch corruption, truncation and accidental edits (a changed ``gamma`` in
``config.json`` no longer loads silently). They are not a signature: someone who edits a file on
purpose can recompute them, so load checkpoints only from sources you trust to *train* for you
(loading still runs no code: safetensors, JSON and pickle-free npz only).
"""

import hashlib
import json
import os
import secrets
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

import maxent
from maxent.training import runlock
# 2: config.json also holds the SHA-256 of the agent's config ("config_sha256"). Format 1 reads.
FORMAT_VERSION = 2
FORMAT_MARKER = "maxent-checkpoint"

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "state.json"
REPLAY_FILE = "replay.npz"
_REQUIRED_FILES = (WEIGHTS_FILE, STATE_FILE)
_KNOWN_FILES = (WEIGHTS_FILE, STATE_FILE, REPLAY_FILE)


class CheckpointError(ValueError):
    """A checkpoint directory is missing, foreign, from a newer maxent, or damaged."""


class Entries(dict):
    """A dict read from a checkpoint file: a missing key raises a :class:`CheckpointError` naming
    the file and the key (not a bare ``KeyError`` deep inside an agent's restore code). Nested
    dicts are wrapped on access, so ``state["optimizer"]["state"]`` is named precisely too."""

    def __init__(self, data: dict, where: str):
        super().__init__(data)
        self.where = where

    def __getitem__(self, key: Any) -> Any:
        try:
            value = super().__getitem__(key)
        except KeyError:
            raise CheckpointError(
                f"{self.where} has no entry {key!r}: the checkpoint is incomplete or was written "
                "by another program; resume from an earlier checkpoint") from None
        if isinstance(value, dict) and not isinstance(value, Entries):
            value = Entries(value, f"{self.where}[{key!r}]")
            super().__setitem__(key, value)  # later reads (and mutations) see the same object
        return value


@dataclass
class Checkpoint:
    """Everything read back from a checkpoint directory.

    Args:
        path: the directory actually read (a ``.old`` sibling when recovering an interrupted save).
        kind: the agent kind given to :func:`save_checkpoint`, e.g. ``"SAC"``.
        config: the agent's configuration dict.
        tensors: name -> tensor, from ``weights.safetensors``.
        state: the JSON dict from ``state.json`` (counters, RNG states, optimizer metadata).
        arrays: name -> array from ``replay.npz``; None when absent or not requested.
        format_version: the checkpoint format version the files were written with.
        maxent_version: the maxent version that wrote them.
    """

    path: Path
    kind: str
    config: dict
    tensors: dict[str, torch.Tensor]
    state: dict
    arrays: dict[str, np.ndarray] | None
    format_version: int
    maxent_version: str


# ---------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str,
    config: dict,
    tensors: dict[str, torch.Tensor],
    state: dict | None = None,
    arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    Everything is written into a fresh sibling temp directory and fsynced; only then is an
    existing checkpoint at ``path`` swapped out, so a process killed at any moment leaves either
    the old complete checkpoint or the new one.

    Args:
        path: the checkpoint directory to create or replace. Parent directories are created.
            An existing non-empty directory that is not a maxent checkpoint is never replaced.
        kind: the agent kind, e.g. ``"SAC"``; :func:`load_checkpoint` can insist on it.
        config: JSON-able agent configuration.
        tensors: name -> tensor; moved to CPU and made contiguous (the caller's are untouched).
        state: JSON-able dict (Python ints of any size are fine, e.g. RNG states); default empty.
        arrays: name -> numeric numpy array, saved uncompressed to ``replay.npz``; default none.

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    path = Path(path)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string such as 'SAC', got {kind!r}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    state = {} if state is None else state
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict or None, got {type(state).__name__}")
    cpu_tensors = _prepare_tensors(tensors)
    if arrays is not None:
        arrays = _prepare_arrays(arrays)
    # Serialize JSON up front so a bad value fails before anything touches the disk.
    config_text = _to_json(config, "config")
    state_text = _to_json(state, "state")

    _refuse_foreign(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with runlock.hold(path, purpose="saving a checkpoint"):
        _write_checkpoint(path, kind, config_text, state_text, cpu_tensors, arrays)
    _remove_stale_siblings(path)
    return path


def _config_digest(config: dict) -> str:
    """SHA-256 of a config in a canonical JSON form (sorted keys), as stored in ``config.json``."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _write_checkpoint(path: Path, kind: str, config_text: str, state_text: str,
                      cpu_tensors: dict[str, torch.Tensor], arrays: dict[str, np.ndarray] | None) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        files = {}
        files[WEIGHTS_FILE] = _write_bytes(tmp / WEIGHTS_FILE, safetensors.torch.save(cpu_tensors))
        files[STATE_FILE] = _write_bytes(tmp / STATE_FILE, state_text.encode())
        if arrays is not None:
            with open(tmp / REPLAY_FILE, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            files[REPLAY_FILE] = _sha256(tmp / REPLAY_FILE)
        header = {
            "format": FORMAT_MARKER,
            "format_version": FORMAT_VERSION,
            "maxent_version": maxent.__version__,
            "kind": kind,
            "config": json.loads(config_text),
            "config_sha256": _config_digest(json.loads(config_text)),
            "files": files,
        }
        # config.json goes last: a directory with a valid one has every file it lists.
        _write_bytes(tmp / CONFIG_FILE, (json.dumps(header, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        try:
            _swap_into_place(tmp, path)
        except OSError as err:
            raise CheckpointError(
                f"could not move the new checkpoint into place at {path} ({err}); another program "
                "may be changing that directory. The previous checkpoint, if any, is intact (or "
                "recoverable from its .old sibling); save again or choose another path") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _prepare_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of name -> torch.Tensor, got {type(tensors)}")
    out: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{name!r}] must be a torch.Tensor, got {type(t).__name__}")
        t = t.detach().to("cpu")
        if t.layout != torch.strided:
            raise ValueError(f"tensors[{name!r}] is {t.layout}; convert it with .to_dense() first")
        # safetensors refuses tensors that share storage (tied weights, views): give each its own.
        # Views into a larger storage are copied too, so only the tensor's own bytes are kept.
        storage = t.untyped_storage()
        if (
            not t.is_contiguous()
            or storage.data_ptr() in seen_storages
            or storage.nbytes() != t.numel() * t.element_size()
        ):
            t = t.contiguous().clone()
        if t.numel() > 0:
            seen_storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _prepare_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of name -> numpy array, got {type(arrays)}")
    out = {}
    for name, a in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"array names must be non-empty strings, got {name!r}")
        if name in ("file", "allow_pickle"):  # would collide with np.savez's own arguments
            raise ValueError(f"array name {name!r} is reserved by np.savez; rename it")
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise ValueError(
                f"arrays[{name!r}] has dtype {a.dtype}; only numeric arrays can be saved "
                "(object arrays would need pickle). Convert it to a numeric dtype."
            )
        out[name] = a
    return out


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{what} must be JSON-serializable (dicts, lists, str, numbers, bool, None): {e}. "
            "Convert tensors and arrays to lists or pass them as tensors/arrays instead."
        ) from e


def _write_bytes(file: Path, data: bytes) -> str:
    with open(file, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    # Makes renames durable on POSIX; directories cannot be opened this way on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_checkpoint_dir(path: Path) -> bool:
    try:
        header = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT_MARKER


def _refuse_foreign(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise CheckpointError(
            f"cannot save a checkpoint to {path}: it exists and is not a directory. "
            "Choose another path or remove the file."
        )
    if any(path.iterdir()) and not _is_checkpoint_dir(path):
        raise CheckpointError(
            f"refusing to overwrite {path}: it is a non-empty directory that is not a maxent "
            f"checkpoint (no {CONFIG_FILE} with format {FORMAT_MARKER!r}). "
            "Choose another path or move its contents away."
        )


def _swap_into_place(tmp: Path, path: Path) -> None:
    old = None
    if path.exists():
        _refuse_foreign(path)  # again, in case it changed while we were writing
        if any(path.iterdir()):
            old = path.parent / f".{path.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(path, old)
        else:
            path.rmdir()
    # Between these two renames only the .old sibling exists; the loader falls back to it.
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but not ours, or the platform cannot tell: leave it alone
    return True


def _remove_stale_siblings(path: Path) -> None:
    # Leftovers from saves that were killed: .old ones are superseded now that `path` is
    # complete; .tmp ones are removed only when the process that made them is gone.
    for sibling in path.parent.glob(f".{path.name}.*-*"):
        rest = sibling.name[len(path.name) + 2 :]
        if rest.startswith("old-"):
            shutil.rmtree(sibling, ignore_errors=True)
        elif rest.startswith("tmp-"):
            pid = rest[4:].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(sibling, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Loading


def _resolve(path: Path) -> Path:
    """Return the directory to read: ``path``, or the ``.old`` sibling of an interrupted save."""
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file, not a checkpoint directory; pass the directory")
    olds = [
        p for p in path.parent.glob(f".{path.name}.old-*") if p.is_dir() and _is_checkpoint_dir(p)
    ]
    if olds:
        old = max(olds, key=lambda p: p.stat().st_mtime)
        warnings.warn(
            f"no checkpoint at {path}, but {old.name} survives from an interrupted save; "
            f"loading it (save again to {path} to make it the main checkpoint)",
            stacklevel=3,
        )
        return old
    raise CheckpointError(f"no checkpoint at {path}: the directory does not exist. Check the path.")


def _read_header(directory: Path) -> dict:
    config_path = directory / CONFIG_FILE
    not_ours = f"{directory} is not a maxent checkpoint"
    if not config_path.is_file():
        raise CheckpointError(
            f"{not_ours}: {CONFIG_FILE} missing. Pass a directory written by "
            "save_checkpoint (or agent.save)."
        )
    try:
        header = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(
            f"{not_ours}: {CONFIG_FILE} invalid ({e}); the checkpoint cannot be used — "
            "resume from an earlier one"
        ) from e
    if not isinstance(header, dict) or header.get("format") != FORMAT_MARKER:
        raise CheckpointError(
            f'{not_ours}: {CONFIG_FILE} invalid (no "format": {FORMAT_MARKER!r} marker). '
            "Pass a directory written by save_checkpoint (or agent.save)."
        )
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"{config_path} has an invalid format_version {version!r}; the checkpoint cannot be "
            "used — resume from an earlier one"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} was written by a newer maxent ({header.get('maxent_version')}, format "
            f"{version}; this maxent {maxent.__version__} reads format {FORMAT_VERSION}); "
            "upgrade maxent"
        )
    for key, typ in (("kind", str), ("config", dict), ("files", dict), ("maxent_version", str)):
        if not isinstance(header.get(key), typ):
            raise CheckpointError(
                f"{config_path} is invalid: {key!r} is missing or not a {typ.__name__}; "
                "the checkpoint cannot be used — resume from an earlier one"
            )
    for name, digest in header["files"].items():
        if name not in _KNOWN_FILES or not isinstance(digest, str):
            raise CheckpointError(
                f"{config_path} is invalid: unexpected file entry {name!r}: {digest!r}; "
                "the checkpoint cannot be used — resume from an earlier one"
            )
    digest = header.get("config_sha256")
    if version >= 2 and digest != _config_digest(header["config"]):
        raise CheckpointError(
            f"{config_path} was changed after it was saved: its agent config does not match the "
            "checksum stored beside it (config_sha256). Restore the original file, or save the agent "
            "again with the config you want (load it, change the field with load(..., field=value), "
            "save)")
    for name in _REQUIRED_FILES:
        if name not in header["files"]:
            raise CheckpointError(
                f"{config_path} is invalid: it does not list {name}; the checkpoint cannot be "
                "used — resume from an earlier one"
            )
    return header


def read_checkpoint_header(path: str | os.PathLike) -> dict:
    """Return the parsed, validated ``config.json`` of a checkpoint without loading tensors.

    Args:
        path: the checkpoint directory.

    Returns:
        The header dict: ``format``, ``format_version``, ``maxent_version``, ``kind``,
        ``config`` and ``files`` (file name -> sha256 hex).
    """
    return _read_header(_resolve(Path(path)))


def _verify(directory: Path, name: str, digest: str) -> None:
    file = directory / name
    if not file.is_file():
        raise CheckpointError(
            f"{file} is missing although {CONFIG_FILE} lists it; the checkpoint is incomplete "
            "and cannot be used — resume from an earlier one"
        )
    if _sha256(file) != digest:
        raise CheckpointError(
            f"{file} is corrupt or truncated (checksum mismatch); the checkpoint "
            "cannot be used — resume from an earlier one"
        )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    load_arrays: bool = True,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read and verify a checkpoint directory written by :func:`save_checkpoint`.

    Every file is checked against the sha256 in ``config.json``; nothing is unpickled.

    Args:
        path: the checkpoint directory. If it is missing but an interrupted save left a
            ``.old`` sibling, that one is loaded (with a warning).
        kind: if given, the agent kind the checkpoint must hold, e.g. ``"SAC"``.
        load_arrays: read ``replay.npz`` when present; False skips it (and its checksum).
        map_location: device to put the tensors on; default ``"cpu"``.

    Returns:
        A :class:`Checkpoint`.

    Raises:
        CheckpointError: naming the file and what to do, for any missing, foreign, newer,
            mismatched or damaged checkpoint.
    """
    directory = _resolve(Path(path))
    header = _read_header(directory)
    if kind is not None and header["kind"] != kind:
        raise CheckpointError(
            f"{directory} holds a {header['kind']} checkpoint, not {kind}; load it with the "
            f"{header['kind']} agent or pick a {kind} checkpoint"
        )
    files = header["files"]
    for name, digest in files.items():
        if name == REPLAY_FILE and not load_arrays:
            continue
        _verify(directory, name, digest)

    device = str(map_location) if isinstance(map_location, torch.device) else map_location
    try:
        tensors = safetensors.torch.load_file(directory / WEIGHTS_FILE, device=device)
    except Exception as e:  # safetensors raises its own error types; wrap them all
        raise CheckpointError(
            f"{directory / WEIGHTS_FILE} could not be read ({e}); the checkpoint cannot be "
            "used — resume from an earlier one"
        ) from e

    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(
            f"{directory / STATE_FILE} is invalid ({e}); the checkpoint cannot be used — "
            "resume from an earlier one"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{directory / STATE_FILE} is invalid (not a JSON object); the checkpoint cannot "
            "be used — resume from an earlier one"
        )

    arrays = None
    if load_arrays and REPLAY_FILE in files:
        arrays = _load_arrays(directory / REPLAY_FILE)

    return Checkpoint(
        path=directory,
        kind=header["kind"],
        config=header["config"],
        tensors=Entries(tensors, str(directory / WEIGHTS_FILE)),
        state=Entries(state, str(directory / STATE_FILE)),
        arrays=None if arrays is None else Entries(arrays, str(directory / REPLAY_FILE)),
        format_version=header["format_version"],
        maxent_version=header["maxent_version"],
    )


def _load_arrays(file: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as e:  # zipfile, format and "object arrays need pickle" errors
        raise CheckpointError(
            f"{file} could not be read without pickle ({e}); the checkpoint "
            "cannot be used — resume from an earlier one, or load with load_arrays=False to "
            "skip the replay buffer"
        ) from e


# ---------------------------------------------------------------------------------------------
# Optimizer and RNG state


def optimizer_state_to_tensors(
    optimizer: torch.optim.Optimizer, prefix: str
) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors and a JSON-able dict.

    Tensors are named ``f"{prefix}.state.{param_idx}.{name}"`` (nested values get further
    ``.{key}`` parts; tensors inside param_groups, e.g. a tensor lr, go under
    ``f"{prefix}.param_groups.{i}.{name}"``); the JSON dict refers to them by name.

    Args:
        optimizer: any torch optimizer.
        prefix: namespace for the tensor names, e.g. ``"optim.actor"``; keep it unique
            among everything saved in the same checkpoint.

    Returns:
        ``(tensors, meta)``; pass both back to :func:`load_optimizer_state`. The tensors share
        memory with the optimizer's live state, so save them before its next step.
    """
    return state_dict_to_tensors(optimizer.state_dict(), prefix)


def state_dict_to_tensors(sd: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`optimizer_state_to_tensors` of an optimizer state dict in torch's format (e.g. one
    gathered from the shards of a distributed optimizer)."""
    tensors: dict[str, torch.Tensor] = {}
    state = [
        [idx, _encode(entry, f"{prefix}.state.{idx}", tensors)]
        for idx, entry in sd["state"].items()
    ]
    groups = [
        _encode(g, f"{prefix}.param_groups.{i}", tensors) for i, g in enumerate(sd["param_groups"])
    ]
    return tensors, {"state": state, "param_groups": groups}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, prefix: str
) -> None:
    """Restore optimizer state saved by :func:`optimizer_state_to_tensors`.

    Args:
        optimizer: an optimizer built over the same parameters, in the same order.
        tensors: the tensors (e.g. ``Checkpoint.tensors``); may hold other entries too.
        meta: the JSON-able dict returned alongside them.
        prefix: the prefix used when saving.
    """
    optimizer.load_state_dict(decode_optimizer_state(optimizer, tensors, meta, prefix))


def decode_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           meta: dict, prefix: str) -> dict:
    """The optimizer state dict (torch's format) that :func:`load_optimizer_state` would load."""
    if not isinstance(meta, dict) or "state" not in meta or "param_groups" not in meta:
        raise CheckpointError(
            f"optimizer metadata for {prefix!r} is invalid (expected keys 'state' and "
            "'param_groups'); pass the dict returned by optimizer_state_to_tensors"
        )
    state = {}
    for idx, entry in meta["state"]:
        state[idx] = _decode(entry, tensors, prefix)
    groups = [_decode(g, tensors, prefix) for g in meta["param_groups"]]
    # JSON turns tuples (Adam's betas) into lists; restore the optimizer's own types.
    for group, current in zip(groups, optimizer.param_groups):
        for key, value in current.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
    return {"state": state, "param_groups": groups}


_TENSOR_REF = "__tensor__"


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach()
        return {_TENSOR_REF: key}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"optimizer state at {key!r} has non-string keys; cannot save it")
        return {k: _encode(v, f"{key}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    # Non-finite floats are fine too: Python's json writes and reads NaN/Infinity.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"optimizer state value at {key!r} has type {type(value).__name__}, which cannot be "
        "saved without pickle; use an optimizer whose state holds tensors and plain numbers"
    )


def _decode(value: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR_REF}:
            key = value[_TENSOR_REF]
            if key not in tensors:
                raise CheckpointError(
                    f"optimizer tensor {key!r} (prefix {prefix!r}) is missing from the saved "
                    "tensors; save and load with the same prefix and checkpoint"
                )
            # Clone: the optimizer updates its state in place and must not alias the caller's.
            return tensors[key].clone()
        return {k: _decode(v, tensors, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors, prefix) for v in value]
    return value


def generator_state_to_tensor(g: torch.Generator) -> torch.Tensor:
    """Return a torch generator's state as a uint8 tensor (restore with ``g.set_state``).

    Args:
        g: the generator, e.g. ``torch.default_generator``.
    """
    return g.get_state()
