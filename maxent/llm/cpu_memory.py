"""Keep freed CPU memory in the process, so that each training pass reuses pages instead of
asking the kernel for fresh ones.

PyTorch allocates CPU tensors with the C library's ``malloc``, which hands blocks above a size
threshold straight back to the kernel when they are freed. A training pass over an LLM frees
and re-allocates the same hundreds of megabytes every step, so every step pays for them again
as page faults, each page zero-filled by the kernel (``benchmarks/grpo_phases.py`` counts them
with and without this setting). jemalloc and tcmalloc cache freed
memory likewise but must be preloaded at process start; glibc's ``mallopt`` does it from inside
the process. The cost: the process keeps its peak memory after a pass instead of returning it.
"""

from __future__ import annotations

import ctypes
import functools
import os

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Free memory at the top of the heap that may stay in the process: more than any pass needs.
_TRIM_THRESHOLD = 2**31 - 1

OPT_OUT = "MAXENT_KEEP_FREED_MEMORY"  # set to 0 to leave the C allocator as it is


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's glibc, or None (another C library, or not Linux)."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` serve every block from its heap and keep freed memory there
    (``M_MMAP_MAX = 0``, a 2 GiB trim threshold), for the whole process and the rest of its
    life. Returns whether it did: False off glibc, or when ``MAXENT_KEEP_FREED_MEMORY=0``.
    The same as starting Python with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``."""
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; glibc then stops adjusting these thresholds by itself.
    no_mmap = libc.mallopt(_M_MMAP_MAX, 0)
    no_trim = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    return bool(no_mmap and no_trim)
