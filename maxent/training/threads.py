"""How many CPU threads torch uses, and whether OpenMP may spin, on a machine shared with other
jobs.

Two runs that each start an OpenMP team as wide as the machine spin against each other: each
thread busy-waits for its team while the other run holds the core, so the runs together go slower
than one alone. The policy here sizes the team to the cores this process may use (its affinity)
minus the other runnable work, and makes OpenMP wait passively (sleep instead of spin) when cores
are shared.

The wait policy is read by the OpenMP runtime once, when torch loads it, so it can only be set
before ``import torch``: the ``maxent`` command does this first thing
(:func:`configure_environment`).
A library user who shares cores can run with ``OMP_WAIT_POLICY=PASSIVE`` in the environment; the
thread count alone is still chosen when an agent is built (:func:`apply_torch_threads`), and one
thread per run never spins at all. Nothing is chosen for a user who pinned the count with
``OMP_NUM_THREADS`` or an agent's ``torch_threads``.

This module imports nothing heavy at import time, so it is safe to use before torch is loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

__all__ = ["CpuShare", "apply_torch_threads", "auto_threads", "choose_threads",
           "configure_environment", "measure", "others_running", "spin_env", "usable_cores"]

# Other runnable work (in cores' worth) at or above which cores count as shared: half a core's
# demand means another job runs on our cores much of the time.
SHARED_AT = 0.5
# The run queue is sampled this many times, this far apart, and averaged: one sample sees a
# short-lived process (a shell command) as a whole core's worth of load.
SAMPLES = 8
SAMPLE_GAP_S = 0.005
# Every maxent run on the machine holds a locked file here for as long as it lives; runs started
# together are not yet runnable when each looks at the run queue, but they are in this folder.
RUNS_DIR = os.path.join(tempfile.gettempdir(), "maxent-runs")
# How long a run waits after registering before it counts the others: runs launched together
# (a shell loop over seeds) register within this time of each other.
SETTLE_S = 0.25
_registration: list[int] = []  # this process's locked file descriptor, held until exit


@dataclass(frozen=True)
class CpuShare:
    """What this process has to work with: ``cores`` it may run on and ``others``, the mean number
    of runnable threads of other processes on the machine."""

    cores: int
    others: float
    runs: int = 1  # live maxent runs on the machine, this one included


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (a container or ``taskset`` limits it below
    ``os.cpu_count()``), or ``os.cpu_count()`` where affinity is not available."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _procs_running(stat_text: str) -> int | None:
    """The ``procs_running`` line of ``/proc/stat``: threads runnable now, machine-wide, this
    process's running ones included."""
    for line in stat_text.splitlines():
        if line.startswith("procs_running"):
            return int(line.split()[1])
    return None


def _own_running(read: Callable[[str], str] = _read) -> int:
    """Threads of this process that are running or runnable (state ``R`` in ``/proc/self/task``)."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for task in tasks:
        try:
            state = read(f"/proc/self/task/{task}/stat").rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == "R"
    return max(count, 1)  # the thread reading is running


def others_running(read: Callable[[str], str] = _read, samples: int = SAMPLES,
                   gap_s: float = SAMPLE_GAP_S) -> float:
    """Mean runnable threads of other processes over ``samples`` looks at the run queue.

    The run queue now rather than the load average: the load average lags by a minute, so runs
    started together would not see each other in it. 0.0 where ``/proc/stat`` is unreadable
    (not Linux), which leaves torch as many threads as there are usable cores.
    """
    total, seen = 0.0, 0
    for i in range(samples):
        if i:
            time.sleep(gap_s)
        try:
            running = _procs_running(read("/proc/stat"))
        except OSError:
            running = None
        if running is None:
            continue
        total += max(running - _own_running(read), 0)
        seen += 1
    return total / seen if seen else 0.0


def register_run(directory: str = RUNS_DIR, settle_s: float = SETTLE_S) -> None:
    """Mark this process as a live maxent run until it exits (a file it holds locked; a file whose
    lock is free belongs to a run that has ended), then wait ``settle_s`` for runs started with it."""
    if _registration:
        return
    try:
        os.makedirs(directory, mode=0o777, exist_ok=True)
        fd = os.open(os.path.join(directory, str(os.getpid())), os.O_CREAT | os.O_RDWR, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        return  # no shared temporary folder: the run queue alone decides
    _registration.append(fd)
    time.sleep(settle_s)


def live_runs(directory: str = RUNS_DIR) -> int:
    """How many maxent runs hold their file in ``directory`` (this one included when registered);
    files of runs that have ended are removed on the way."""
    try:
        names = os.listdir(directory)
    except OSError:
        return 1
    live = 0
    for name in names:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            live += 1  # its owner holds the lock
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
        finally:
            os.close(fd)
    return max(live, 1)


def measure() -> CpuShare:
    """This process's :class:`CpuShare` now (registering it as a live run first)."""
    register_run()
    return CpuShare(usable_cores(), others_running(), live_runs())


def choose_threads(cores: int, others: float, runs: int = 1) -> int:
    """Threads for torch: the usable ``cores`` less the cores ``others`` keep busy, rounded to the
    nearest, and no more than this run's share of the cores among ``runs`` live maxent runs; at
    least one. Three other runnable threads on two cores give one thread, which keeps a run from
    waiting on a team member that is not scheduled."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if not math.isfinite(others) or others < 0:
        raise ValueError(f"others must be a finite number >= 0, got {others}")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    return max(1, min(cores // runs, math.floor(cores - others + 0.5)))


def spin_env(share: CpuShare, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables that stop OpenMP from spinning when cores are shared:
    ``OMP_WAIT_POLICY=PASSIVE`` (GNU OpenMP then also stops spinning, as with ``GOMP_SPINCOUNT=0``).
    Empty when the cores are not shared (spinning is the fast way to wait on an idle machine) or
    when the user set either variable."""
    environ = os.environ if environ is None else environ
    if (share.others < SHARED_AT and share.runs == 1) or "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_environment(environ: MutableMapping[str, str] | None = None,
                          share: CpuShare | None = None) -> dict[str, str]:
    """Set ``OMP_NUM_THREADS`` (unless set) to :func:`choose_threads`'s count and :func:`spin_env`'s
    wait policy in ``environ`` (default ``os.environ``); return what was set.

    Call before torch is imported (the OpenMP runtime reads these once, when it loads); after that
    nothing is set and ``{}`` comes back, and :func:`apply_torch_threads` sizes the team instead.
    """
    environ = os.environ if environ is None else environ
    if environ is os.environ and "torch" in sys.modules:
        return {}
    share = measure() if share is None else share
    changes = dict(spin_env(share, environ))
    if "OMP_NUM_THREADS" not in environ:
        changes["OMP_NUM_THREADS"] = str(choose_threads(share.cores, share.others, share.runs))
    environ.update(changes)
    return changes


@functools.cache
def auto_threads() -> int:
    """:func:`choose_threads` for this process, measured once: every agent of a process then uses
    the same count, so a compiled update (its guards include the thread count) is not rebuilt and
    results do not change between ``learn`` calls."""
    share = measure()
    return choose_threads(share.cores, share.others, share.runs)


def apply_torch_threads(requested: int | None) -> int:
    """Size torch's CPU thread team for an agent and return the count it now has.

    ``requested`` (an agent's ``torch_threads``) is used as given. ``None`` means automatic: the
    count ``OMP_NUM_THREADS`` fixed when set (by the user, or by the ``maxent`` command), else
    :func:`auto_threads`.
    """
    import torch

    if requested is not None:
        torch.set_num_threads(int(requested))
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(auto_threads())
    return torch.get_num_threads()
