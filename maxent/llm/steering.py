"""Reading and writing a transformer's residual stream: entropic activation steering (EAST; Rahn,
D'Oro & Bellemare 2024, arXiv 2406.00244) and the direction analyses of "How post-training reshapes
LLMs" (Du et al. 2025, arXiv 2504.02904): difference-of-means directions, their per-layer cosine
similarity across models, directional ablation, and entropy neurons (Stolfo et al. 2024).

Everything works through forward hooks on the decoder layer modules (``model.model.layers`` for
Llama/Qwen2/Mistral-style models, ``model.transformer.h`` for GPT-2-style ones, or a dotted
``module_path``); a hook reads or replaces the layer's output, i.e. the residual stream after that
layer. Every context manager removes its hooks on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "EntropyNeurons",
    "ablate",
    "capture",
    "direction_similarity",
    "east_vector",
    "entropy_neurons",
    "find_layers",
    "last_token_activations",
    "mean_difference",
    "neuron_overlap",
    "steer",
]

_LAYER_PATHS = ("model.layers", "transformer.h")  # Llama/Qwen2/Mistral; GPT-2


# --------------------------------------------------------------------------- layers


def _resolve(model: nn.Module, path: str) -> Any:
    obj: Any = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_layers(model: nn.Module, module_path: str | None = None) -> nn.ModuleList:
    """The list of decoder layers whose outputs form the residual stream.

    Args:
        model: a causal LM (``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``GPT2LMHeadModel``, ...).
        module_path: dotted attribute path to the layer list, e.g. ``"gpt_neox.layers"``;
            default None tries ``model.layers`` then ``transformer.h``.

    Raises:
        ValueError: no layer list is found there, naming the model's class and how to pass the path.
    """
    paths = (module_path,) if module_path is not None else _LAYER_PATHS
    for path in paths:
        layers = _resolve(model, path)
        if isinstance(layers, (nn.ModuleList, nn.Sequential)) and len(layers) > 0:
            return layers
    tried = f"module_path={module_path!r}" if module_path is not None else \
        f"model.{_LAYER_PATHS[0]} and model.{_LAYER_PATHS[1]}"
    raise ValueError(
        f"cannot find the decoder layers of a {type(model).__name__} (tried {tried}); pass "
        "module_path='<dotted path to its nn.ModuleList of layers>', e.g. module_path='gpt_neox.layers'")


def _layer_index(layers: nn.ModuleList, layer: int) -> int:
    n = len(layers)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"layer must be an int, got {type(layer).__name__} {layer!r}")
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} is out of range: this model has {n} layers, valid indices "
                         f"are 0..{n - 1} (or -{n}..-1 from the end)")
    return int(layer) % n


def _hidden(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace(output: Any, hidden: Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _width(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for name in ("hidden_size", "n_embd", "d_model"):
        if config is not None and isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


def _check_vector(model: nn.Module, vector: Tensor, what: str = "vector") -> Tensor:
    vector = torch.as_tensor(vector)
    width = _width(model)
    if vector.ndim != 1 or (width is not None and vector.shape[0] != width):
        raise ValueError(f"{what} must have shape ({width},) (the model's hidden size), got "
                         f"{tuple(vector.shape)}")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{what} has non-finite entries; recompute it from finite activations")
    return vector


# --------------------------------------------------------------------------- capture


@contextlib.contextmanager
def capture(model: nn.Module, layers: Sequence[int], *, position: str = "last",
            first_call_only: bool = False, module_path: str | None = None
            ) -> Iterator[dict[int, list[Tensor]]]:
    """Record the residual stream after each of ``layers`` on every forward call.

    Yields a dict ``layer -> list`` with one detached float32 CPU tensor per forward call:
    ``(batch, hidden)`` for ``position="last"`` (the last position; with left padding, the last
    prompt token) or ``(batch, seq, hidden)`` for ``position="all"``.

    Args:
        model: the causal LM.
        layers: layer indices (negative counts from the end).
        position: ``"last"`` or ``"all"``.
        first_call_only: record only the first forward call (inside ``generate``: the prompt pass).
        module_path: see :func:`find_layers`.
    """
    if position not in ("last", "all"):
        raise ValueError(f"position must be 'last' or 'all', got {position!r}")
    blocks = find_layers(model, module_path)
    indices = [_layer_index(blocks, layer) for layer in layers]
    records: dict[int, list[Tensor]] = {i: [] for i in indices}
    handles = []

    def make_hook(i: int):
        def hook(module, inputs, output):
            if first_call_only and records[i]:
                return
            h = _hidden(output).detach()
            records[i].append((h[:, -1] if position == "last" else h).float().cpu())
            return
        return hook

    try:
        for i in indices:
            handles.append(blocks[i].register_forward_hook(make_hook(i)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def last_token_activations(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None,
                           layers: Sequence[int] | None = None, *, module_path: str | None = None
                           ) -> Tensor:
    """Residual stream at the last position after each layer, shape ``(n_layers, batch, hidden)``.

    Args:
        model: the causal LM.
        input_ids: (batch, seq) token ids, LEFT-padded so that the last column is each prompt's
            last token.
        attention_mask: (batch, seq) mask; default all ones.
        layers: which layers (default all).
        module_path: see :func:`find_layers`.
    """
    blocks = find_layers(model, module_path)
    layers = list(range(len(blocks))) if layers is None else list(layers)
    if input_ids.ndim != 2 or input_ids.shape[0] == 0:
        raise ValueError(f"input_ids must be a non-empty (batch, seq) tensor, got {tuple(input_ids.shape)}")
    if attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("attention_mask is 0 in the last column: pad on the left "
                         "(tokenizer.padding_side = 'left') so the last position is a real token")
    device = next(model.parameters()).device
    with capture(model, layers, position="last", module_path=module_path) as rec:
        model(input_ids=input_ids.to(device),
              attention_mask=None if attention_mask is None else attention_mask.to(device),
              use_cache=False)
    return torch.stack([rec[_layer_index(blocks, layer)][0] for layer in layers])


# --------------------------------------------------------------------------- steering


@contextlib.contextmanager
def steer(model: nn.Module, vector: Tensor, layer: int, beta: float = 1.0, *,
          positions: str = "last", module_path: str | None = None) -> Iterator[None]:
    """Add ``beta * vector`` to the residual stream after ``layer`` while the context is open.

    EAST (Rahn et al. 2024) adds the vector at the last prompt position and at every generated
    position. Under KV-cached generation (transformers' default) the prompt pass sees all prompt
    positions and each later pass sees one new token, so ``positions="last"`` (default) adds at the
    last position of every forward call, which is exactly that set: the last prompt token during
    the prompt pass, then each generated token. The other prompt positions are left alone, as in
    the paper (their keys and values were never steered). ``positions="all"`` adds at every position
    of every call (the usual activation-addition convention). Without a KV cache
    (``use_cache=False``), ``"last"`` steers only the current last position of each recomputed pass.

    The hook is removed on exit, also when the body raises, so later calls are bit-identical to an
    unsteered model.

    Args:
        model: the causal LM.
        vector: (hidden,) steering vector ``u``.
        layer: layer index (negative counts from the end).
        beta: the multiplier β; default 1.
        positions: ``"last"`` (default) or ``"all"``.
        module_path: see :func:`find_layers`.
    """
    if positions not in ("last", "all"):
        raise ValueError(f"positions must be 'last' or 'all', got {positions!r}")
    blocks = find_layers(model, module_path)
    index = _layer_index(blocks, layer)
    vector = _check_vector(model, vector)
    beta = float(beta)
    if not math.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    cache: dict[tuple, Tensor] = {}

    def hook(module, inputs, output):
        h = _hidden(output)
        key = (h.device, h.dtype)
        if key not in cache:  # the scaled vector on the layer's device and dtype, made once
            cache[key] = (beta * vector.to(device=h.device, dtype=torch.float32)).to(h.dtype)
        delta = cache[key]
        if positions == "all" or h.shape[1] == 1:  # decoding steps: one position, a plain add
            h = h + delta
        else:
            h = torch.cat([h[:, :-1], h[:, -1:] + delta], dim=1)
        return _replace(output, h)

    handle = blocks[index].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def ablate(model: nn.Module, direction: Tensor, layers: Sequence[int] | None = None, *,
           module_path: str | None = None) -> Iterator[None]:
    """Directional ablation: project ``direction`` out of the residual stream,
    ``h <- h - (h . r) r`` with ``r`` the unit direction, after each of ``layers`` (default all) and
    at every position (Arditi et al. 2024's refusal ablation, used by Du et al. 2025).

    Args:
        model: the causal LM.
        direction: (hidden,) direction (normalised here; must be non-zero).
        layers: layer indices; default all layers.
        module_path: see :func:`find_layers`.
    """
    blocks = find_layers(model, module_path)
    indices = range(len(blocks)) if layers is None else [_layer_index(blocks, i) for i in layers]
    direction = _check_vector(model, direction, "direction").float()
    norm = direction.norm()
    if norm == 0:
        raise ValueError("direction is the zero vector; ablation needs a non-zero direction")
    unit = direction / norm

    def hook(module, inputs, output):
        h = _hidden(output)
        r = unit.to(h.device)
        hf = h.float()
        hf = hf - (hf @ r).unsqueeze(-1) * r
        return _replace(output, hf.to(h.dtype))

    handles = []
    try:
        for i in indices:
            handles.append(blocks[i].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------- EAST


def east_vector(activations: Tensor | Sequence[Tensor], entropies: Tensor | Sequence[Any]) -> Tensor:
    """The EAST steering vector (Rahn et al. 2024, Eq. 1):

        u = (1/Z) Σ_k Σ_t h_t^k (z_t^k − mean_t' z_t'^k),   Z = Σ_k Σ_t h_t^k,

    an entropy-weighted mean of activations, each centred on its own run's mean (the paper found
    the centring essential). Not otherwise normalised. With equal entropies it is the plain mean
    of the centred activations, which is zero: only how entropy co-varies with the activations
    within a run survives.

    Args:
        activations: K runs, each ``(T_k, hidden)`` (a list, runs may differ in length) or a
            ``(K, T, hidden)`` tensor: ``z_t^k`` at the last prompt token of step t of run k.
        entropies: matching ``(T_k,)`` entropies ``h_t^k >= 0`` (nats) of the action distribution.

    Returns:
        ``u``, shape ``(hidden,)``, float32.

    Raises:
        ValueError: empty log, mismatched shapes or widths, NaN/inf or negative entropies, or all
            entropies zero (Z = 0: the vector is undefined).
    """
    runs = list(activations) if not isinstance(activations, Tensor) else list(activations.unbind(0)) \
        if activations.ndim == 3 else None
    if runs is None:
        raise ValueError(f"activations must be (K, T, hidden) or a list of (T_k, hidden) tensors, "
                         f"got a tensor of shape {tuple(activations.shape)}")
    weights = list(entropies) if not isinstance(entropies, Tensor) else list(entropies.unbind(0)) \
        if entropies.ndim == 2 else [entropies]
    if not runs:
        raise ValueError("the activation log is empty: run the agent (LLMAgent.learn) to collect "
                         "activations and entropies first")
    if len(runs) != len(weights):
        raise ValueError(f"got {len(runs)} runs of activations but {len(weights)} runs of entropies")
    total = None
    z_sum = 0.0
    width = None
    for k, (z, h) in enumerate(zip(runs, weights)):
        z = torch.as_tensor(z, dtype=torch.float64)
        h = torch.as_tensor(np.asarray(h, dtype=np.float64))
        if z.ndim != 2 or z.shape[0] == 0:
            raise ValueError(f"run {k}: activations must be a non-empty (T, hidden) tensor, got "
                             f"{tuple(z.shape)}")
        if width is None:
            width = z.shape[1]
        elif z.shape[1] != width:
            raise ValueError(f"run {k}: activations have width {z.shape[1]}, run 0 has {width}; "
                             "log every run at the same layer of the same model")
        if h.shape != (z.shape[0],):
            raise ValueError(f"run {k}: {z.shape[0]} activations but entropies of shape "
                             f"{tuple(h.shape)}; give one entropy per logged step")
        if not torch.isfinite(h).all():
            raise ValueError(f"run {k}: entropies contain NaN or inf at steps "
                             f"{torch.nonzero(~torch.isfinite(h)).flatten().tolist()}; drop steps "
                             "where no completion parsed to an action before building the vector")
        if (h < 0).any():
            raise ValueError(f"run {k}: entropies must be >= 0, got min {h.min().item():.4g}")
        if not torch.isfinite(z).all():
            raise ValueError(f"run {k}: activations contain NaN or inf")
        centred = z - z.mean(dim=0, keepdim=True)  # (T_k, hidden)
        term = (h.unsqueeze(1) * centred).sum(dim=0)
        total = term if total is None else total + term
        z_sum += float(h.sum())
    if z_sum <= 0:
        raise ValueError("all logged entropies are zero (Z = 0): the agent acted deterministically "
                         "at every step, so the EAST vector is undefined; collect with a higher "
                         "sampling temperature or more samples per decision")
    return (total / z_sum).float()


# --------------------------------------------------------------------------- directions


def mean_difference(positive: Tensor, negative: Tensor) -> Tensor:
    """Difference-of-means direction ``mean(positive) − mean(negative)`` over the sample axis
    (Du et al. 2025: the truthfulness direction is true − false statements).

    Args:
        positive: ``(n_pos, ..., hidden)`` activations, e.g. ``(n, hidden)`` or
            ``(n, n_layers, hidden)``.
        negative: ``(n_neg, ..., hidden)`` with the same trailing shape.

    Returns:
        ``(..., hidden)``: one direction per layer when layers are given.
    """
    positive, negative = torch.as_tensor(positive), torch.as_tensor(negative)
    if positive.shape[0] == 0 or negative.shape[0] == 0:
        raise ValueError(f"both sets need at least one sample, got {positive.shape[0]} positive and "
                         f"{negative.shape[0]} negative")
    if positive.shape[1:] != negative.shape[1:]:
        raise ValueError(f"positive {tuple(positive.shape)} and negative {tuple(negative.shape)} "
                         "activations differ beyond the sample axis")
    return positive.float().mean(0) - negative.float().mean(0)


def direction_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of two models' directions, per layer: ``(n_layers, hidden)`` twice ->
    ``(n_layers,)`` (a single ``(hidden,)`` pair gives a 0-dim tensor)."""
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    if a.shape != b.shape:
        raise ValueError(f"directions must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)


# --------------------------------------------------------------------------- entropy neurons


@dataclass
class EntropyNeurons:
    """Entropy-neuron candidates of one model's last MLP layer.

    Attributes:
        indices: selected neuron indices, lowest logit variance first.
        norm: ``(d_mlp,)`` output-weight norms ``||w_out||``.
        logit_var: ``(d_mlp,)`` variance over the vocabulary of ``cos(w_out, W_U[:, v])``.
    """

    indices: list[int]
    norm: Tensor
    logit_var: Tensor


def _last_mlp_out(model: nn.Module, module_path: str | None) -> Tensor:
    """Output weights of the last layer's MLP as ``(d_mlp, hidden)``: row i is neuron i's w_out."""
    block = find_layers(model, module_path)[-1]
    mlp = getattr(block, "mlp", None)
    down = getattr(mlp, "down_proj", None)
    if isinstance(down, nn.Linear):  # Llama/Qwen2: (hidden, d_mlp)
        return down.weight.detach().float().T
    proj = getattr(mlp, "c_proj", None)
    if proj is not None and hasattr(proj, "weight"):  # GPT-2 Conv1D: (d_mlp, hidden)
        return proj.weight.detach().float()
    raise ValueError(f"cannot find the last MLP's output projection of a {type(block).__name__} "
                     "(looked for mlp.down_proj and mlp.c_proj)")


def _unembedding(model: nn.Module) -> Tensor:
    """``(vocab, hidden)`` unembedding with the final norm's scale folded in, as TransformerLens
    does (``fold_ln``), since that scale multiplies the residual stream before the unembedding."""
    w_u = model.get_output_embeddings().weight.detach().float()
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    final = None
    for name in ("norm", "ln_f", "final_layernorm"):
        final = getattr(base, name, None) if base is not None else None
        if final is not None:
            break
    gamma = getattr(final, "weight", None)
    if gamma is not None and gamma.shape == (w_u.shape[1],):
        w_u = w_u * gamma.detach().float()
    return w_u


def entropy_neurons(model: nn.Module, *, top_norm_fraction: float = 0.25, n: int = 10,
                    module_path: str | None = None) -> EntropyNeurons:
    """Entropy neurons of the last MLP layer (Stolfo et al. 2024; selection as in Du et al. 2025's
    code): among the ``top_norm_fraction`` of neurons with the largest output-weight norm, the
    ``n`` whose output direction has the smallest variance of cosine similarity with the
    unembedding columns (they write into the unembedding's near-null space: large effect on the
    residual norm, little direct effect on the logits).

    Args:
        model: the causal LM.
        top_norm_fraction: share of neurons kept by norm first; default 0.25.
        n: how many neurons to return; default 10.
        module_path: see :func:`find_layers`.
    """
    if not 0 < top_norm_fraction <= 1:
        raise ValueError(f"top_norm_fraction must be in (0, 1], got {top_norm_fraction}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    w_out = _last_mlp_out(model, module_path)  # (d_mlp, hidden)
    w_u = _unembedding(model)  # (vocab, hidden)
    norm = w_out.norm(dim=1)
    cos = (w_out / norm.clamp_min(1e-12).unsqueeze(1)) @ (w_u / w_u.norm(dim=1, keepdim=True)
                                                          .clamp_min(1e-12)).T  # (d_mlp, vocab)
    logit_var = cos.var(dim=1)
    k = max(1, round(top_norm_fraction * len(norm)))
    candidates = torch.topk(norm, k).indices
    order = torch.argsort(logit_var[candidates])[:n]
    return EntropyNeurons([int(i) for i in candidates[order]], norm, logit_var)


def neuron_overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two neuron sets (Du et al. 2025 compare base and post-trained)."""
    sa, sb = set(a), set(b)
    if not sa and not sb:
        raise ValueError("both neuron sets are empty")
    return len(sa & sb) / len(sa | sb)
