"""Flush denormal floats to zero on the CPU, in the calling thread and in every OpenMP worker of
torch's thread pool.

Adam's second moment of a parameter whose gradient is tiny (≈ 1e-20) holds squares below
float32's smallest normal number (1.2e-38). x86 CPUs compute on such denormals through slow
microcode: after a few thousand SAC updates about a fifth of some Adam state tensors are
denormal, and the fused Adam kernel slows several-fold on them (the speed page of the docs has
the figures). With flush-to-zero (FTZ) and denormals-are-zero (DAZ) they count as 0, which changes
no update measurably (Adam divides by ``sqrt(v) + eps`` with eps = 1e-8). SAC turns it on for the length of a ``learn`` call and restores the previous mode after, so the
rest of a user's process (and libraries that test for subnormals, such as Hypothesis) is left
as it was.

The mode lives in each thread's MXCSR register. ``torch.set_flush_denormal`` sets only the
calling thread's; threads created afterwards inherit it from their creator (POSIX), but torch's
OpenMP workers may already exist. So one OpenMP parallel region is run whose body sets the mode
in each thread of the team.
"""

from __future__ import annotations

import ctypes
import functools

import torch

__all__ = ["denormals_flushed", "flush_denormals", "set_flush_denormals"]



@functools.cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch loaded into this process (GNU or Intel, both export
    ``GOMP_parallel``), or None where it cannot be found (not Linux, no OpenMP)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "omp" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for path in sorted(paths):
        if path.endswith(".so") or ".so." in path:
            try:
                runtime = ctypes.CDLL(path)
            except OSError:
                continue
            if hasattr(runtime, "GOMP_parallel"):
                return runtime
    return None


# GOMP_parallel(fn, data, num_threads, flags): runs fn(data) on each thread of a new team.
_REGION_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# Kept alive at module level: the runtime holds raw pointers to them.
_BODIES = {enabled: _REGION_BODY(lambda _data, on=enabled: torch.set_flush_denormal(on))
           for enabled in (True, False)}


def denormals_flushed() -> bool:
    """Whether the calling thread flushes denormals (a one-element product, which torch computes
    in the calling thread, comes out as 0)."""
    return (torch.tensor(1e-30) * 1e-10).item() == 0.0


def set_flush_denormals(enabled: bool) -> bool:
    """Turn FTZ and DAZ on (or off) in this thread and in every thread of torch's OpenMP team (at
    ``torch.get_num_threads()``; a larger team made later inherits it from this thread). Returns
    False where the CPU has no such mode (torch says so) or the OpenMP runtime was not found, in
    which case only this thread and threads it starts later are changed."""
    if not torch.set_flush_denormal(enabled):
        return False
    runtime = _openmp_runtime()
    if runtime is None:
        return False
    # ctypes releases the GIL for the call; each thread of the team takes it in turn to run
    # the body. num_threads = torch's count, so the team is the one torch's ops use.
    runtime.GOMP_parallel(_BODIES[enabled], None, ctypes.c_uint(torch.get_num_threads()), ctypes.c_uint(0))
    return True


def flush_denormals() -> bool:
    """``set_flush_denormals(True)``."""
    return set_flush_denormals(True)
