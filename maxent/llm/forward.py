"""Forward passes of a causal language model over prompt + completion rows: the logits and
token log-probs (and entropies) of the completions, with the prompt run once per group of rows
that share it. Not specific to any one algorithm."""

from __future__ import annotations

import torch
from torch import Tensor

from maxent.entropy import categorical_entropy
from maxent.entropy.estimates import categorical_log_prob
from maxent.llm.models import cache_argument

__all__ = ["completion_logits", "token_log_probs"]


def _groups_share_prompt(prompt_ids: Tensor, prompt_mask: Tensor, group_size: int) -> bool:
    """True when every run of ``group_size`` consecutive rows holds one prompt (as GRPO's do)."""
    B = prompt_ids.shape[0]
    if group_size < 2 or B % group_size:
        return False
    ids = prompt_ids.reshape(B // group_size, group_size, -1)
    mask = prompt_mask.reshape(B // group_size, group_size, -1)
    return bool((ids == ids[:, :1]).all() and (mask == mask[:, :1]).all())


def _activation_checkpointing(model) -> bool:
    # transformers 5 renamed is_gradient_checkpointing (deprecated) to is_activation_checkpointing.
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(flag if flag is not None else getattr(model, "is_gradient_checkpointing", False))


def completion_logits(model, batch_ids: Tensor, attention_mask: Tensor, position_ids: Tensor,
                      n_completion: int, group_size: int = 1) -> Tensor:
    """(B, T, V) logits of the distributions the last T = ``n_completion`` tokens were drawn from.

    With ``group_size`` G > 1 and each run of G rows sharing its prompt (a GRPO group), the prompt
    is run once per group and its KV cache repeated for the G completions: the same logits and
    gradients (attention is causal, so prompt states never see completions), for a forward and
    backward over n·P + B·T tokens instead of B·(P + T). With SmolLM2's chat prompts (P ≈ 45,
    T ≤ 32) that is about a third of the arithmetic. Rows that do not share prompts, models under
    gradient checkpointing (no cache) and T < 2 take the plain full-sequence forward.
    """
    L = batch_ids.shape[1]
    P = L - n_completion
    shared = (group_size > 1 and n_completion > 1 and P > 0
              and not _activation_checkpointing(model)
              and _groups_share_prompt(batch_ids[:, :P], attention_mask[:, :P], group_size))
    if not shared:
        out = model(input_ids=batch_ids, attention_mask=attention_mask, position_ids=position_ids,
                    logits_to_keep=n_completion + 1, use_cache=False)
        return out.logits[:, :-1]
    from transformers import DynamicCache

    heads = slice(None, None, group_size)   # the first row of each group
    cache = DynamicCache(config=model.config)
    cache_arg = cache_argument(model)
    prompt = model(input_ids=batch_ids[heads, :P], attention_mask=attention_mask[heads, :P],
                   position_ids=position_ids[heads, :P], use_cache=True, logits_to_keep=1,
                   **{cache_arg: cache})
    # The prompt's last logits give each completion's first token; the repeated cache (a
    # differentiable copy) lets the completions attend to the prompt.
    cache.batch_repeat_interleave(group_size)
    # The last completion token is never an input: nothing is predicted from it.
    rest = model(input_ids=batch_ids[:, P:-1], attention_mask=attention_mask[:, :-1],
                 position_ids=position_ids[:, P:-1], use_cache=True, **{cache_arg: cache})
    return torch.cat([prompt.logits.repeat_interleave(group_size, 0), rest.logits], 1)


def token_log_probs(model, batch_ids: Tensor, attention_mask: Tensor, position_ids: Tensor,
                    n_completion: int, temperature: float = 1.0, *, with_entropy: bool = True,
                    entropy_grad: bool = True, group_size: int = 1) -> tuple[Tensor, Tensor | None]:
    """Log-probs of the last ``n_completion`` tokens of each row under ``model`` and the token
    entropy of the distributions they were drawn from (logits / temperature). ``group_size``:
    see :func:`completion_logits` (rows sharing a prompt run it once).

    Returns:
        ``(log_probs (B, T), entropy (B, T) or None)``, float32; graphs are kept when grad is on.
    """
    logits = completion_logits(model, batch_ids, attention_mask, position_ids, n_completion,
                               group_size).float() / temperature                # (B, T, V)
    targets = batch_ids[:, -n_completion:]
    # Not log_softmax(logits).gather: that rounds a near-certain token's log p and 1 - p to 0.
    log_probs = categorical_log_prob(logits, targets)
    entropy = None
    if with_entropy and entropy_grad:
        entropy = categorical_entropy(logits)
    elif with_entropy:  # logged only: keep the (B, T, V) softmax out of the autograd graph
        with torch.no_grad():
            entropy = categorical_entropy(logits.detach())
    return log_probs, entropy
