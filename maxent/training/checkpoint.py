"""Save and load agents as plain directories that can be read without executing code.

A checkpoint is ``config.json`` (format marker, versions, the agent's config and the SHA-256 of
that config and of every other file) + ``weights.safetensors`` + ``state.json`` (+ optional
``replay.npz``); nothing is pickled, saves are atomic, and a save holds the directory's run lock
(:mod:`maxent.training.runlock`) so two processes never write one checkpoint at once.

The checksums catch corruption, truncation and accidental edits (a changed ``gamma`` in
``config.json`` no longer loads silently). They are not a signature: someone who edits a file on
purpose can recompute them, so load checkpoints only from sources you trust to *train* for you
(loading still runs no code: safetensors, JSON and pickle-free npz only).

A load sees one save whole, the old or the new, even while another process saves to the same path
(see "Loading" below); every field is checked before anything is allocated from it (here the
files, their sizes and nesting; :mod:`maxent.training.saved` the agent's fields). A save that
cannot be written (a full disk) raises :class:`CheckpointWriteError` and leaves the previous
checkpoint intact.
"""

import errno
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import shutil
import stat
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

import maxent
from maxent.training import runlock
from maxent.training.limits import check_memory, format_bytes

# 2: config.json also holds the SHA-256 of the agent's config ("config_sha256"). Format 1 is read
# only from the maxent releases that wrote it (0.1.x), see _check_format_1.
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


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (the disk is full); the previous one at the path is
    intact. An ``OSError`` by nature, a :class:`CheckpointError` so the command line prints it as
    one line."""


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
    weights = safetensors.torch.save(cpu_tensors)
    header = {
        "format": FORMAT_MARKER,
        "format_version": FORMAT_VERSION,
        "maxent_version": maxent.__version__,
        "kind": kind,
        "config": json.loads(config_text),
        "config_sha256": _config_digest(json.loads(config_text)),
        "files": {},
    }
    need = len(weights) + len(state_text.encode()) + len(json.dumps(header, indent=2)) + 400 \
        + (0 if arrays is None else _npz_size(arrays))
    previous = path.is_dir() and _is_checkpoint_dir(path)
    try:
        tmp.mkdir()
        try:
            files = header["files"]
            files[WEIGHTS_FILE] = _write_bytes(tmp / WEIGHTS_FILE, weights)
            files[STATE_FILE] = _write_bytes(tmp / STATE_FILE, state_text.encode())
            if arrays is not None:
                with open(tmp / REPLAY_FILE, "wb") as f:
                    np.savez(f, **arrays)
                    f.flush()
                    os.fsync(f.fileno())
                files[REPLAY_FILE] = _sha256(tmp / REPLAY_FILE)
            # config.json goes last: a directory with a valid one has every file it lists.
            _write_bytes(tmp / CONFIG_FILE, (json.dumps(header, indent=2) + "\n").encode())
            _fsync_dir(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        kept = ("the previous checkpoint there is intact" if previous
                else "nothing was written there")
        error = CheckpointWriteError(
            f"could not write the checkpoint {path}: no space left on its disk (the save needs "
            f"about {format_bytes(need)}); {kept}. Free space or save elsewhere")
        error.errno = err.errno
        raise error from None
    try:
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


def _npz_size(arrays: dict[str, np.ndarray]) -> int:
    """About the bytes ``np.savez`` writes: each array's data, its .npy header and zip entries."""
    return sum(a.nbytes + 128 + 2 * (len(name) + 4) + 100 for name, a in arrays.items()) + 22


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
#
# A save swaps directories with renames and then deletes the old one, so a reader that checked a
# file by path and read it again by path later could mix two saves. A reader therefore opens the
# checkpoint directory once and every file relative to that descriptor: a renamed directory keeps
# its inode and an open file survives deletion, so all it reads belongs to one save. Each file's
# checksum is computed over the very descriptor it is parsed from, and no maxent writer changes a
# file in place (saves write new files into a fresh directory). If the directory was deleted
# before every file was opened, the read starts again from the top.

# The most nested JSON any maxent writer produces is a handful of levels (optimizer state); a
# deeper file is refused before parsing, as the parser would recurse once per level.
MAX_JSON_DEPTH = 64
_LOAD_ATTEMPTS = 50
_OLD_AFTER = 10  # attempts that wait for a save between its renames before reading a .old sibling
_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


class _Vanished(Exception):
    """The directory being read was swapped away and removed by a concurrent save: read again."""


def _version_tuple(version: str) -> tuple[int, ...] | None:
    parts = []
    for part in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


# Format 2 arrived during 0.2.0; every release from 0.2.0 on writes it. A file claiming format 1
# must come from an older maxent, or it is a format-2 file downgraded to skip the config checksum.
_LAST_FORMAT_1_WRITER = (0, 1, 999)
_FORMAT_1_KEYS = {"format", "format_version", "maxent_version", "kind", "config", "files"}


class _DirReader:
    """A checkpoint directory opened once; files are opened relative to it."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.fd = None
        if _DIR_FD:
            try:
                self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                raise _Vanished from None
            except NotADirectoryError:
                raise CheckpointError(f"{directory} is a file, not a checkpoint directory; pass the "
                                      "directory") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _removed(self) -> bool:
        """Whether this directory is no longer the one at its path (renamed away or deleted)."""
        if self.fd is None:
            return not self.directory.is_dir()
        mine = os.fstat(self.fd)
        try:
            there = os.stat(self.directory)
        except FileNotFoundError:
            return True
        return mine.st_nlink == 0 or (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino)

    def open(self, name: str, missing: str):
        """``name`` opened for binary reading; a file absent from a directory that is still in
        place raises a CheckpointError with ``missing``; absent because a save removed the
        directory raises :class:`_Vanished`."""
        try:
            if self.fd is not None:
                return os.fdopen(os.open(name, os.O_RDONLY, dir_fd=self.fd), "rb")
            return open(self.directory / name, "rb")
        except (FileNotFoundError, NotADirectoryError):
            if self._removed():
                raise _Vanished from None
            raise CheckpointError(missing) from None
        except IsADirectoryError:
            raise CheckpointError(missing) from None

    @staticmethod
    def inode_path(file: Any) -> str | None:
        """A path that opens ``file``'s own inode (even once deleted), where the platform has one."""
        proc = f"/proc/self/fd/{file.fileno()}"
        return proc if os.path.exists(proc) else None


def _json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, counted without parsing it."""
    # Strings may hold brackets: blank them out first (escaped quotes stay inside a string).
    text = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', data)
    opens = np.frombuffer(text, dtype=np.uint8)
    steps = np.isin(opens, (ord("["), ord("{"))).astype(np.int64) \
        - np.isin(opens, (ord("]"), ord("}"))).astype(np.int64)
    return int(np.cumsum(steps).max()) if steps.size else 0


def _parse_json(data: bytes, file: Path) -> Any:
    depth = _json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointError(f"{file} is invalid: JSON nested {depth} levels deep (maxent writes "
                              f"at most {MAX_JSON_DEPTH}); the checkpoint cannot be used — resume "
                              "from an earlier one")
    return json.loads(data.decode("utf-8"))


def _resolve(path: Path, last_try: bool = True) -> Path:
    """Return the directory to read: ``path``, or the ``.old`` sibling of an interrupted save.
    Without ``last_try`` a missing ``path`` raises :class:`_Vanished`: a concurrent save is
    between its two renames, and the new directory appears an instant later."""
    try:
        if stat.S_ISDIR(path.stat().st_mode):  # one stat: a save may create it between two
            return path
        raise CheckpointError(f"{path} is a file, not a checkpoint directory; pass the directory")
    except FileNotFoundError:
        pass
    if not last_try and any(path.parent.glob(f".{path.name}.old-*")):
        raise _Vanished
    olds = []
    for p in path.parent.glob(f".{path.name}.old-*"):
        try:
            if p.is_dir() and _is_checkpoint_dir(p):
                olds.append((p.stat().st_mtime, p))
        except OSError:  # removed while listed
            continue
    if olds:
        old = max(olds)[1]
        warnings.warn(
            f"no checkpoint at {path}, but {old.name} survives from an interrupted save; "
            f"loading it (save again to {path} to make it the main checkpoint)",
            stacklevel=4,
        )
        return old
    raise CheckpointError(f"no checkpoint at {path}: the directory does not exist. Check the path.")


def _read_header(reader: _DirReader) -> dict:
    directory = reader.directory
    config_path = directory / CONFIG_FILE
    not_ours = f"{directory} is not a maxent checkpoint"
    missing = (f"{not_ours}: {CONFIG_FILE} missing. Pass a directory written by save_checkpoint "
               "(or agent.save).")
    with reader.open(CONFIG_FILE, missing) as f:
        data = f.read()
    try:
        header = _parse_json(data, config_path)
    except (UnicodeDecodeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(
            f"{not_ours}: {CONFIG_FILE} invalid ({e}); the checkpoint cannot be used — "
            "resume from an earlier one"
        ) from e
    return _check_header(header, directory)


def _check_header(header: Any, directory: Path) -> dict:
    config_path = directory / CONFIG_FILE
    not_ours = f"{directory} is not a maxent checkpoint"
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
        if name not in _KNOWN_FILES or not isinstance(digest, str) \
                or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise CheckpointError(
                f"{config_path} is invalid: unexpected file entry {name!r}: {str(digest)[:80]!r}; "
                "the checkpoint cannot be used — resume from an earlier one"
            )
    if version == 1:
        _check_format_1(header, config_path)
    elif header.get("config_sha256") != _config_digest(header["config"]):
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


def _check_format_1(header: dict, config_path: Path) -> None:
    """A format-1 header is believed only if it is one: written by a maxent that predates format
    2 (0.1.x), holding only the fields format-1 writers wrote. Anything else claiming format 1 is
    a newer file downgraded, which would skip the config checksum."""
    written_by = _version_tuple(header["maxent_version"])
    extra = sorted(set(header) - _FORMAT_1_KEYS)
    if written_by is None or written_by > _LAST_FORMAT_1_WRITER or extra:
        why = (f"it holds {extra[0]!r}, which only format-2 writers write" if extra else
               f"maxent {header['maxent_version']} writes format 2 with a config checksum")
        raise CheckpointError(
            f"{config_path} claims format_version 1, but {why}: the file was edited. Restore the "
            "original config.json (format 2, with its config_sha256), or resume from an earlier "
            "checkpoint")


def read_checkpoint_header(path: str | os.PathLike) -> dict:
    """Return the parsed, validated ``config.json`` of a checkpoint without loading tensors.

    Args:
        path: the checkpoint directory.

    Returns:
        The header dict: ``format``, ``format_version``, ``maxent_version``, ``kind``,
        ``config`` and ``files`` (file name -> sha256 hex).
    """
    return _read_consistently(Path(path), lambda reader: _read_header(reader))


def read_checkpoint_state(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(header, state)``: the validated ``config.json`` and the verified ``state.json`` of one
    save, without reading tensors or arrays (e.g. the env id to load an agent on)."""
    def read(reader: _DirReader) -> tuple[dict, dict]:
        header = _read_header(reader)
        file = reader.directory / STATE_FILE
        with reader.open(STATE_FILE, f"{file} is missing although {CONFIG_FILE} lists it; the "
                                     "checkpoint is incomplete — resume from an earlier one") as f:
            data = _verify(f, file, header["files"][STATE_FILE], keep=True)
        return header, _load_state(data, file)
    return _read_consistently(Path(path), read)


def _read_consistently(path: Path, read: Any) -> Any:
    """``read(reader)`` over one save at ``path`` whole, retried while concurrent saves swap the
    directory away under it."""
    for attempt in range(_LOAD_ATTEMPTS):
        try:
            reader = _DirReader(_resolve(path, last_try=attempt >= _OLD_AFTER))
        except _Vanished:
            time.sleep(0.001 * (attempt + 1))
            continue
        try:
            return read(reader)
        except _Vanished:
            time.sleep(0.001 * attempt)
        finally:
            reader.close()
    raise CheckpointError(f"{path} was replaced by new saves {_LOAD_ATTEMPTS} times while it was "
                          "being read; load it again when the run saves less often")


def _verify(f: Any, file: Path, digest: str, keep: bool) -> bytes | None:
    """Check the open file ``f`` against ``digest``; return its bytes when ``keep`` (a JSON file,
    read once), else leave it at offset 0 to be parsed from the same descriptor."""
    h = hashlib.sha256()
    data = None
    if keep:
        data = f.read()
        h.update(data)
    else:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        f.seek(0)
    if h.hexdigest() != digest:
        raise CheckpointError(f"{file} is corrupt or truncated (checksum mismatch); the checkpoint "
                              "cannot be used — resume from an earlier one")
    return data


def load_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    load_arrays: bool = True,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read and verify a checkpoint directory written by :func:`save_checkpoint`.

    Every file is checked against the sha256 in ``config.json``; nothing is unpickled. All files
    come from one save even while another process saves to ``path`` (see the comment above).

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
    device = str(map_location) if isinstance(map_location, torch.device) else map_location
    return _read_consistently(Path(path), lambda reader: _load(reader, kind, load_arrays, device))


def _load(reader: _DirReader, kind: str | None, load_arrays: bool, device: str) -> Checkpoint:
    directory = reader.directory
    header = _read_header(reader)
    if kind is not None and header["kind"] != kind:
        raise CheckpointError(
            f"{directory} holds a {header['kind']} checkpoint, not {kind} ({CONFIG_FILE} field "
            f"'kind'); load it with the "
            f"{header['kind']} agent or pick a {kind} checkpoint"
        )
    files = {name: digest for name, digest in header["files"].items()
             if name != REPLAY_FILE or load_arrays}
    opened = {}
    try:
        # Open every file before reading any: once all are open a concurrent save cannot take them
        # away, and a _Vanished before that costs only the opening.
        for name in files:
            opened[name] = reader.open(name, f"{directory / name} is missing although {CONFIG_FILE} "
                                             "lists it; the checkpoint is incomplete and cannot be "
                                             "used — resume from an earlier one")
        state_bytes = None
        for name, digest in files.items():
            data = _verify(opened[name], directory / name, digest, keep=name == STATE_FILE)
            state_bytes = data if name == STATE_FILE else state_bytes
        tensors = _load_tensors(reader, opened[WEIGHTS_FILE], device)
        state = _load_state(state_bytes, directory / STATE_FILE)
        arrays = _load_arrays(opened[REPLAY_FILE], directory / REPLAY_FILE) \
            if REPLAY_FILE in opened else None
    finally:
        for f in opened.values():
            f.close()
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


def _load_tensors(reader: _DirReader, f: Any, device: str) -> dict[str, torch.Tensor]:
    file = reader.directory / WEIGHTS_FILE
    try:
        proc = reader.inode_path(f)
        if proc is not None:  # the open inode itself, memory-mapped by safetensors
            return safetensors.torch.load_file(proc, device=device)
        tensors = safetensors.torch.load(f.read())
        return {name: t.to(device) for name, t in tensors.items()}
    except Exception as e:  # safetensors raises its own error types; wrap them all
        raise CheckpointError(f"{file} could not be read ({e}); the checkpoint cannot be used — "
                              "resume from an earlier one") from e


def _load_state(data: bytes, file: Path) -> dict:
    try:
        state = _parse_json(data, file)
    except CheckpointError:
        raise
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{file} is invalid ({e}); the checkpoint cannot be used — resume "
                              "from an earlier one") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} is invalid (not a JSON object); the checkpoint cannot be "
                              "used — resume from an earlier one")
    return state


def _load_arrays(f: Any, file: Path) -> dict[str, np.ndarray]:
    """The arrays of an npz read from the open file ``f``, each member's header checked against
    the bytes it holds before the array is allocated; never unpickled."""
    fix = ("the checkpoint cannot be used — resume from an earlier one, or load with "
           "load_arrays=False to skip the replay buffer")
    try:
        with zipfile.ZipFile(f) as zf:
            out = {}
            total = sum(info.file_size for info in zf.infolist())
            check_memory(total, f"reading {file}", f"load with load_arrays=False to skip the "
                         "replay buffer, or on a machine with more memory")
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = reader(member)
                    if dtype.hasobject:
                        raise CheckpointError(f"{file} field {name!r} holds Python objects "
                                              f"({dtype}), which cannot be read without pickle; {fix}")
                    need = math.prod(shape) * dtype.itemsize
                    if need > info.file_size:
                        raise CheckpointError(f"{file} field {name!r} claims shape {shape} of "
                                              f"{dtype} ({need} bytes) but holds {info.file_size} "
                                              f"bytes; {fix}")
                with zf.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
            return out
    except CheckpointError:
        raise
    except Exception as e:  # zipfile, format and "object arrays need pickle" errors
        raise CheckpointError(f"{file} could not be read without pickle ({e}); {fix}") from e
