"""Samplers that draw GRPO's groups of completions from a causal language model (Shao et al. 2024,
"DeepSeekMath"): prompt encoding, transformers ``generate`` and a static-cache sampler; vLLM's sampler
is in :mod:`maxent.llm.vllm_sampler`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from maxent.llm.models import cache_argument


def encode_prompts(tokenizer, prompts: Sequence[str | list[dict]], *, chat_template: bool | None = None,
                   max_prompt_tokens: int = 256) -> list[list[int]]:
    """Token ids of each prompt, through the chat template for instruct models.

    Args:
        tokenizer: the model's tokenizer.
        prompts: plain-text prompts (one user turn each), or conversations (lists of
            ``{"role", "content"}`` messages, always rendered with the chat template).
        chat_template: wrap each prompt as a user message with the tokenizer's chat template and a
            generation prompt; ``None`` does so when the tokenizer has a template.
        max_prompt_tokens: longest prompt allowed.

    Raises:
        ValueError: a prompt is longer than ``max_prompt_tokens`` (prompts are never truncated
            silently: a cut question has a different answer).
    """
    use_template = bool(getattr(tokenizer, "chat_template", None)) if chat_template is None \
        else chat_template
    if use_template and not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but the tokenizer has no chat template; "
                         "pass chat_template=False for a base model")
    ids: list[list[int]] = []
    for prompt in prompts:
        if isinstance(prompt, list) and not getattr(tokenizer, "chat_template", None):
            raise ValueError("a conversational prompt (a list of messages) needs a tokenizer with a "
                             "chat template; this one has none: use plain-text prompts")
        if use_template or isinstance(prompt, list):
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            row = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            row = tokenizer(prompt)["input_ids"]
        if len(row) > max_prompt_tokens:
            raise ValueError(
                f"prompt of {len(row)} tokens exceeds max_prompt_tokens={max_prompt_tokens}: "
                f"{str(prompt)[:60]!r}...; raise max_prompt_tokens (within the model's context) or "
                "shorten the prompt")
        if not row:
            raise ValueError(f"prompt {prompt!r} encodes to no tokens")
        ids.append(list(row))
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """``(ids, mask)`` of shape (B, max_len), padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.as_tensor(row)
            mask[i, width - len(row):] = 1
    return ids, mask


# --------------------------------------------------------------------------- samplers


@dataclass
class Completions:
    """A batch of sampled completions, right-padded.

    Attributes:
        ids: (B, T) token ids; positions past the end hold the pad id.
        mask: (B, T) bool, True on tokens the model generated (the eos included, when produced).
        truncated: (B,) bool, True where generation stopped at ``max_new_tokens`` without an eos.
        texts: the completions decoded without special tokens.
        log_probs: (B, T) float32 log-prob of each generated token under the distribution it
            was sampled from, 0 where ``mask`` is False; ``None`` when the sampler does not
            report them (GRPO's importance correction of sampler/trainer mismatch reads it).
    """

    ids: Tensor
    mask: Tensor
    truncated: Tensor
    texts: list[str]
    log_probs: Tensor | None = None


class Sampler(Protocol):
    """Draws completions for token-id prompts; ``sync`` is called after each optimiser step."""

    def generate(self, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False,
                 seed: int = 0) -> Completions: ...

    def sync(self, model) -> None: ...


def completions_from_rows(rows: Sequence[Sequence[int]], tokenizer, eos_ids: set[int],
                          max_new_tokens: int) -> Completions:
    """Cut each generated row after its first eos and pad: the shared tail of both samplers."""
    cut: list[list[int]] = []
    truncated: list[bool] = []
    for row in rows:
        row = list(row)
        end = next((i for i, t in enumerate(row) if t in eos_ids), None)
        if end is None:
            cut.append(row[:max_new_tokens])
            truncated.append(True)
        else:
            cut.append(row[:end + 1])
            truncated.append(False)
    width = max(1, max(len(r) for r in cut))
    ids = torch.full((len(cut), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(cut), width), dtype=torch.bool)
    for i, row in enumerate(cut):
        ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, :len(row)] = True
    texts = tokenizer.batch_decode([r for r in cut], skip_special_tokens=True)
    return Completions(ids, mask, torch.as_tensor(truncated), texts)


def eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the model and tokenizer define no eos token; completions could never end")
    return ids


class HFSampler:
    """Sampling with transformers' ``generate`` (the default; runs anywhere the model runs).

    Prompts are left-padded and generated in one batch; randomness comes from ``seed`` alone (the
    global RNG is restored afterwards), so a run and its resumed copy draw the same completions.

    Args:
        model: the policy (an unwrapped ``PreTrainedModel``; it is read, never copied).
        tokenizer: its tokenizer (with a pad token).
        batch_size: prompts per ``generate`` call (``None``: all at once).
    """

    def __init__(self, model, tokenizer, batch_size: int | None = None):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.eos_ids = eos_ids(model, tokenizer)

    @torch.no_grad()
    def generate(self, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False,
                 seed: int = 0, **generation_kwargs: Any) -> Completions:
        """``generation_kwargs`` (``top_k``, ``min_p``, ``repetition_penalty``, or any other
        ``generate`` keyword) go to transformers' ``generate`` as given."""
        model = self.model
        device = next(model.parameters()).device
        step = self.batch_size or len(prompt_ids)
        rows: list[list[int]] = []
        was_training = model.training
        model.eval()
        devices = [device] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                for start in range(0, len(prompt_ids), step):
                    ids, mask = left_pad(prompt_ids[start:start + step], self.tokenizer.pad_token_id)
                    kwargs: dict[str, Any] = {"do_sample": False} if greedy else {
                        "do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
                    kwargs.update(generation_kwargs)
                    out = model.generate(
                        input_ids=ids.to(device), attention_mask=mask.to(device),
                        max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                        eos_token_id=sorted(self.eos_ids), **kwargs)
                    rows.extend(out[:, ids.shape[1]:].tolist())
        finally:
            model.train(was_training)
        return completions_from_rows(rows, self.tokenizer, self.eos_ids, max_new_tokens)

    def sync(self, model) -> None:
        self.model = model  # generate reads the live weights: nothing to copy


class StaticSampler:
    """Sampling with a fixed-size KV cache (transformers ``StaticCache``) and one
    ``torch.compile``'d decode step: on a CPU the tiny and small models are bound by per-op
    overhead, which compilation fuses away. Prompts are left-padded to a multiple of
    ``bucket`` tokens, so shapes repeat and the step compiles once per (batch, prompt bucket,
    max_new_tokens); the first call pays the compilation. The compiled
    step reads the live parameters, so in-place optimiser updates need no copy.

    Args:
        model: the policy (an unwrapped ``PreTrainedModel`` whose cache supports
            ``StaticCache``: Llama, Qwen2, ...).
        tokenizer: its tokenizer (with a pad token).
        bucket: prompt lengths are rounded up to a multiple of this (default 16).
        compile: compile the decode step (default True); False runs it eagerly.
    """

    def __init__(self, model, tokenizer, *, bucket: int = 16, compile: bool = True):
        if bucket < 1:
            raise ValueError(f"bucket must be >= 1, got {bucket}")
        self.model, self.tokenizer, self.bucket = model, tokenizer, bucket
        self.eos_ids = eos_ids(model, tokenizer)
        self._eos = torch.tensor(sorted(self.eos_ids))
        self._cache_arg = cache_argument(model)
        self._step = torch.compile(self._decode, dynamic=False) if compile else self._decode

    def _decode(self, tokens: Tensor, position_ids: Tensor, cache_position: Tensor, cache,
                mask: Tensor) -> Tensor:
        return self.model(input_ids=tokens, position_ids=position_ids,
                          cache_position=cache_position, attention_mask=mask, use_cache=True,
                          **{self._cache_arg: cache}).logits[:, -1]

    @torch.no_grad()
    def generate(self, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False,
                 seed: int = 0) -> Completions:
        from transformers import StaticCache

        model = self.model
        device = next(model.parameters()).device
        pad = self.tokenizer.pad_token_id
        width = -(-max(len(r) for r in prompt_ids) // self.bucket) * self.bucket
        ids, prompt_mask = left_pad(prompt_ids, pad)   # (B, longest prompt)
        extra = width - ids.shape[1]                   # widen to the bucket, on the left
        ids = torch.nn.functional.pad(ids, (extra, 0), value=pad).to(device)
        prompt_mask = torch.nn.functional.pad(prompt_mask, (extra, 0)).to(device)
        B = ids.shape[0]
        mask = torch.cat([prompt_mask, prompt_mask.new_ones(B, max_new_tokens)], 1)
        position = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        cache = StaticCache(config=model.config, max_cache_len=width + max_new_tokens)
        generator = torch.Generator(device=device).manual_seed(seed)
        eos = self._eos.to(device)
        was_training = model.training
        model.eval()
        try:
            # Prefill each distinct prompt once (GRPO asks for G copies of every prompt), then
            # give every row its prompt's cache: a G-fold cut of the prefill's arithmetic.
            unique, row_of = torch.unique(torch.cat([ids, prompt_mask], 1), dim=0, return_inverse=True)
            first = torch.full((len(unique),), B, dtype=torch.long, device=device).scatter_reduce(
                0, row_of, torch.arange(B, device=device), reduce="amin")
            logits = model(input_ids=ids[first], attention_mask=prompt_mask[first],
                           position_ids=position[first],
                           cache_position=torch.arange(width, device=device),
                           use_cache=True, logits_to_keep=1, **{self._cache_arg: cache}).logits[:, -1]
            # torch.unique sorts its rows: map the cache back to the caller's order whenever
            # that differs, all prompts distinct included (then nothing is shared, but the
            # prefill still ran in sorted order).
            if not torch.equal(row_of, torch.arange(B, device=device)):
                _select_cache_rows(cache, row_of)
                logits = logits[row_of]
            last = position[:, -1:]
            done = torch.zeros(B, dtype=torch.bool, device=device)
            tokens: list[Tensor] = []
            for t in range(max_new_tokens):
                logits = logits.float()
                if greedy:
                    nxt = logits.argmax(-1)
                else:
                    probs = torch.softmax(logits / temperature, -1)
                    if top_p < 1.0:  # nucleus: keep the smallest prefix with mass >= top_p
                        p_sorted, order = probs.sort(-1, descending=True)
                        keep = p_sorted.cumsum(-1) - p_sorted < top_p
                        probs = torch.zeros_like(probs).scatter(-1, order, p_sorted * keep)
                    nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                nxt = nxt.masked_fill(done, pad)
                tokens.append(nxt)
                done = done | torch.isin(nxt, eos)
                if t == max_new_tokens - 1 or bool(done.all()):
                    break
                last = last + 1
                logits = self._step(nxt[:, None], last,
                                    torch.tensor([width + t], device=device), cache, mask)
        finally:
            model.train(was_training)
        rows = torch.stack(tokens, 1).tolist()
        return completions_from_rows(rows, self.tokenizer, self.eos_ids, max_new_tokens)

    def sync(self, model) -> None:
        self.model = model  # the compiled step reads the live weights


def _select_cache_rows(cache, rows: Tensor) -> None:
    """Make a prefilled ``StaticCache``'s batch ``rows`` (row i takes cached row ``rows[i]``), with
    the fresh tensors marked static like the ones the cache allocated itself."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, rows)
        layer.values = layer.values.index_select(0, rows)
        layer.batch_size = len(rows)
        torch._dynamo.mark_static_address(layer.keys)
        torch._dynamo.mark_static_address(layer.values)
