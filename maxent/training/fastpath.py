"""The fast path of a training step, chosen by default: bf16 matrix products where the hardware
has them, and the whole update compiled in the background while training runs eagerly.

``torch.compile`` of a whole update (losses, gradients, optimiser) runs much faster than eager
PyTorch on CPU, but compiling takes seconds, fewer from inductor's disk cache (see
:func:`prepare_compile`; the speed page of the docs has the figures). :class:`BackgroundCompile` can pay that on a worker
thread: it compiles the step by calling it once on *copies* of the real tensors, while the agent
keeps training with the eager step; the agent switches when the compiled step is ready. The step
must therefore read every tensor it uses from its arguments (a pure function of tensors), so that
the graph traced on the copies is the graph that runs on the real tensors: dynamo guards on
shapes, dtypes, ``requires_grad``, the tensor's Python type and torch's thread count, not on
tensor identity, so the copies must match the originals in all of these. No C++ compiler, or any
compile error: the agent stays eager and says so once.

Inductor's cache goes to a stable per-user place (``$TORCHINDUCTOR_CACHE_DIR`` if the user set it,
else ``$XDG_CACHE_HOME/maxent/inductor`` or ``~/.cache/maxent/inductor``), so a machine's second run
starts from the cache instead of ``/tmp``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["BackgroundCompile", "bf16_matmul_supported", "clone_tree", "compile_unavailable_reason",
           "full_precision_head", "inductor_cache_dir", "keep_value_guards", "prepare_compile", "resolve_precision",
           "use_persistent_cache"]

PRECISIONS = ("auto", "float32", "bfloat16")


def bf16_matmul_supported(device: torch.device) -> bool:
    """Whether bf16 matrix products are native (fast) on ``device``: AVX512-BF16 or AMX on CPU,
    compute capability 8.0+ on CUDA."""
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo; empty elsewhere, where bf16 is not
    assumed)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"float32"`` or ``"bfloat16"``; ``"auto"`` picks bf16 where it is native on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if bf16_matmul_supported(device) else "float32"
    return precision


@contextlib.contextmanager
def full_precision_head(hidden: torch.Tensor):
    """Run a network's output layer in float32 even under bf16 autocast: Q-values and action
    means need the mantissa (bf16 resolves a Q of 300 only to ±1); the wide hidden matmuls,
    where the time goes, stay in bf16. Yields ``hidden`` cast to float32 when needed."""
    if not torch.is_autocast_enabled(hidden.device.type):
        yield hidden
        return
    with torch.autocast(hidden.device.type, enabled=False):
        yield hidden.float()


def _torch_default_cache_dir() -> str | None:
    """The temporary folder inductor falls back to (and writes into ``TORCHINDUCTOR_CACHE_DIR``
    the first time it asks for its cache), or None where torch does not say."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return None
    return os.path.abspath(default_cache_dir())


def inductor_cache_dir() -> Path:
    """Where inductor's compiled kernels are kept between runs (see the module docstring)."""
    explicit = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if explicit and os.path.abspath(explicit) != _torch_default_cache_dir():
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "maxent" / "inductor"


def use_persistent_cache() -> Path:
    """Point inductor at :func:`inductor_cache_dir` unless the user chose a place; return it.

    Inductor writes its temporary default into ``TORCHINDUCTOR_CACHE_DIR`` as soon as anything
    imports it (building an agent does), so that value is taken for "not chosen" and replaced,
    and inductor's memoised cache paths are cleared so that they follow.
    """
    path = inductor_cache_dir()
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") != str(path):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
        utils = sys.modules.get("torch._inductor.utils")
        if utils is not None and hasattr(utils, "clear_caches"):
            utils.clear_caches()
    return path


# Dynamo guards on the structure of a step's own arguments and modules (container keys and
# lengths, object identities and types, module hook dicts, aliasing between module attributes).
# The agent builds these once and passes the same structure on every call, yet the SAC family's
# step carried some 1300 such guards, checked on every update: 0.4-0.8 ms each time, a tenth of a
# CrossQ update and more of DroQ's 20 small ones per env step. Guards on values (hyperparameters
# read as constants, such as a learning rate a schedule changes), on tensors (dtype, shape,
# strides, requires_grad) and on global state (grad mode, autocast, functorch) are kept, and so
# is any guard type this set does not name.
STRUCTURE_GUARDS = frozenset({
    "BUILTIN_MATCH", "CLASS_MATCH", "CLOSURE_MATCH", "DICT_CONTAINS", "DICT_KEYS_MATCH", "DICT_NOT_CONTAINS",
    "DUPLICATE_INPUT", "EMPTY_NN_MODULE_HOOKS_DICT", "HASATTR", "ID_MATCH", "MODULE_MATCH",
    "NOT_PRESENT_IN_GENERIC_DICT", "SEQUENCE_LENGTH", "SET_CONTAINS", "SET_NOT_CONTAINS", "TYPE_MATCH",
})


def keep_value_guards(guard_entries: list) -> list[bool]:
    """``torch.compile``'s ``guard_filter_fn`` for an update step: drop :data:`STRUCTURE_GUARDS`,
    keep the rest. Only for functions whose callers always pass the same structure (the SAC
    steps, which read every tensor from their arguments)."""
    return [entry.guard_type not in STRUCTURE_GUARDS for entry in guard_entries]


def prepare_compile(device: torch.device) -> dict[str, Any]:
    """Get this process ready to compile an update for ``device`` and return the keyword
    arguments for ``torch.compile``. On CPU the C++ wrapper (``cpp_wrapper``) builds the graph as
    one library instead of a Python module calling dozens of separately built kernels, which
    saves compiling time and the Python between kernels; and inductor's probes of the CPU's
    vector instruction sets stop after the best one passes (see
    :func:`_probe_only_the_best_vector_isa`). On every device the structure guards are dropped
    (:func:`keep_value_guards`)."""
    use_persistent_cache()
    options: dict[str, Any] = {"guard_filter_fn": keep_value_guards}
    if device.type == "cpu":
        _probe_only_the_best_vector_isa()
        options["cpp_wrapper"] = True
    return {"options": options}


@functools.cache
def _probe_only_the_best_vector_isa() -> bool:
    """Run inductor's build-and-load probe for the widest vector ISA this CPU reports, and if it
    passes, tell inductor the narrower ones build too (``config.cpp.vec_isa_ok``) instead of
    probing each: every probe compiles ATen's vector headers again, once per ISA the CPU has,
    on every machine's first compile. A compiler that builds the widest builds the
    narrower. Leaves inductor alone when the user set ``vec_isa_ok``, off x86, or when the probe
    fails (inductor then probes each ISA and picks the best that works, as before)."""
    from torch._inductor import config, cpu_vec_isa

    if config.cpp.vec_isa_ok is not None:
        return False
    cpu_has = set(cpu_vec_isa.x86_isa_checker())
    widest = next((isa for isa in cpu_vec_isa.supported_vec_isa_list
                   if cpu_has and all(flag in cpu_has for flag in str(isa).split())), None)
    if widest is None or not widest.check_build(cpu_vec_isa.VecISA._avx_code):
        return False
    config.cpp.vec_isa_ok = True
    return True


def compile_unavailable_reason(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot build code for ``device`` here, or ``None`` when it can."""
    if device.type == "cpu":
        candidates = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in candidates):
            return ("no C++ compiler was found (CXX, g++, c++, clang++), which torch.compile needs "
                    "on CPU; install one (e.g. apt-get install g++) for the compiled update")
        return None
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton is not installed, which torch.compile needs on CUDA"
        return None
    return f"torch.compile is not used on {device.type} devices by maxent"


def clone_tree(value: Any) -> Any:
    """Copies of every tensor in nested tuples/lists/dicts, for compiling on stand-ins. Each keeps
    its original's type (``nn.Parameter`` or tensor) and ``requires_grad``: dynamo guards on both,
    and stand-ins without them made the first call on the real tensors compile the whole update a
    second time."""
    if isinstance(value, nn.Parameter):
        return nn.Parameter(value.detach().clone(), requires_grad=value.requires_grad)
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, dict):
        return {k: clone_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clone_tree(v) for v in value)
    return value


class BackgroundCompile:
    """``torch.compile(fn)`` built on a worker thread by one call on ``example_args``.

    Args:
        fn: a pure function of its tensor arguments (it may update them in place).
        example_args: copies of the real arguments (same shapes, dtypes, devices); they are
            consumed (updated in place) by the compiling call.
        name: for the thread's name.
        background: ``False`` compiles in the calling thread before the constructor returns
            (with the same failure handling): on a machine with few cores the compiler and the eager
            trainer only slow each other down.
        **compile_kwargs: passed to ``torch.compile`` (:func:`prepare_compile`'s).

    :meth:`poll` returns the compiled function once it is ready (``None`` before); :attr:`error`
    holds the exception of a compile that failed.
    """

    def __init__(self, fn: Callable, example_args: tuple, name: str = "step", background: bool = True,
                 **compile_kwargs: Any):
        self.error: BaseException | None = None
        self._compiled: Callable | None = None
        self._done = threading.Event()
        if not background:
            self._run(fn, example_args, compile_kwargs)
            return
        self._thread = threading.Thread(target=self._run, args=(fn, example_args, compile_kwargs),
                                        name=f"maxent-compile-{name}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable, example_args: tuple, compile_kwargs: dict) -> None:
        try:
            compiled = torch.compile(fn, **compile_kwargs)
            compiled(*example_args)
            self._compiled = compiled
        except Exception as err:  # noqa: BLE001 -- any failure means: stay eager, say why
            self.error = err
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def poll(self) -> Callable | None:
        """The compiled function if it is ready, else ``None`` (also after a failure)."""
        return self._compiled if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> Callable | None:
        """Block until the compile ends (or ``timeout`` s); return :meth:`poll`'s answer."""
        self._done.wait(timeout)
        return self.poll()
