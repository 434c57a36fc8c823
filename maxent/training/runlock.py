"""One process at a time per run directory: an exclusive lock held while a run trains or saves.

Two trainers in one run directory would overwrite each other's checkpoints and logs (or resume
from a checkpoint that is still being written). The lock is ``fcntl.flock`` on a small file beside
the directory (``runs/.x.lock`` for ``runs/x``; beside rather than inside, because a checkpoint
directory is replaced by rename on every save). The file holds the holder's pid, host and start
time, so a refusal can say who holds it. The kernel drops a flock when its process dies, so a lock
left by a killed run is free: the next run takes it over and says so.

Locks are re-entrant within a process: the CLI holds its run directory's lock for the whole
command, and the agent's ``learn`` and ``save`` inside it take the same lock again at no cost.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not protected there (said in README)
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLockedError", "hold", "lock_path"]


class RunLockedError(RuntimeError):
    """Another live process holds the lock of a run directory."""


# Held locks of this process: resolved lock-file path -> [open file, depth].
_held: dict[Path, list] = {}
_guard = threading.Lock()


def lock_path(directory: str | os.PathLike) -> Path:
    """The lock file of ``directory``: ``.<name>.lock`` in its parent."""
    directory = Path(os.path.abspath(directory))
    return directory.parent / f".{directory.name}.lock"


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "an unknown time"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {when})"


def _read_holder(file) -> dict:
    try:
        file.seek(0)
        text = file.read()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def hold(directory: str | os.PathLike, purpose: str = "training") -> Iterator[Path]:
    """Hold the exclusive lock of ``directory`` for the ``with`` block; yield the lock file's path.

    Raises:
        RunLockedError: another live process holds it; the message names its pid and host.
    """
    path = lock_path(directory)
    with _guard:
        entry = _held.get(path)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield path
        finally:
            with _guard:
                entry[1] -= 1
        return
    if fcntl is None:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (kept open while held)
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(file)
        file.close()
        raise RunLockedError(
            f"{Path(directory)} is in use: {purpose} there is refused because {_describe(holder)} "
            f"holds its lock ({path}). Wait for that run to finish (or stop it), or choose another "
            "directory") from None
    previous = _read_holder(file)
    if previous.get("pid") and (previous.get("pid"), previous.get("host")) != (os.getpid(), socket.gethostname()):
        warnings.warn(f"taking over the lock of {Path(directory)} left by {_describe(previous)}, which "
                      "is no longer running (it was killed or crashed)", RuntimeWarning, stacklevel=3)
    file.seek(0)
    file.truncate()
    file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                           "purpose": purpose}))
    file.flush()
    entry = [file, 1]
    with _guard:
        _held[path] = entry
    try:
        yield path
    finally:
        with _guard:
            entry[1] -= 1
            release = entry[1] == 0
            if release:
                del _held[path]
        if release:
            # Emptied before unlocking, so the next holder does not mistake a clean exit for a crash.
            file.seek(0)
            file.truncate()
            file.flush()
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            file.close()
