"""The data one GRPO step passes from rollout to update: the sampled and scored completions
(:class:`Rollout`) and, computed from them once with no grad, the tensors the update trains on
(:class:`Batch`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["Batch", "Rollout"]


@dataclass
class Rollout:
    """One process's share of a GRPO step: ``n_prompts`` groups of ``group_size`` rows each,
    row ``p * group_size + g`` being completion g of prompt p. B rows, P prompt and T completion
    token positions.

    Attributes:
        prompt_ids: (B, P) left-padded prompt tokens; prompt_mask (B, P) 1 on real tokens.
        completion_ids: (B, T) right-padded completion tokens; completion_mask (B, T) bool, True on
            generated tokens (eos included).
        truncated: (B,) bool, no eos within ``max_new_tokens``.
        rewards: (B,) float32, NaN where no reward function rewarded the completion.
        texts: decoded completions; targets: the task's target (or the dataset row) per row.
        reward_terms: (B, F) each reward function's reward, NaN where it gave none.
        prompts: the prompt (text or conversation) of each row.
        sampler_log_probs: (B, T) the sampler's log-prob of each generated token (vLLM), or None.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    completion_ids: Tensor
    completion_mask: Tensor
    truncated: Tensor
    rewards: Tensor
    texts: list[str]
    targets: list[Any]
    reward_terms: Tensor | None = None
    prompts: list[Any] | None = None
    sampler_log_probs: Tensor | None = None

    def rows(self, start: int, stop: int) -> Rollout:
        """Rows ``start:stop`` (keep whole groups together: advantages are per group)."""
        def cut(x):
            return None if x is None else x[start:stop]

        return Rollout(self.prompt_ids[start:stop], self.prompt_mask[start:stop],
                       self.completion_ids[start:stop], self.completion_mask[start:stop],
                       self.truncated[start:stop], self.rewards[start:stop],
                       self.texts[start:stop], self.targets[start:stop], cut(self.reward_terms),
                       cut(self.prompts), cut(self.sampler_log_probs))


@dataclass
class Batch:
    """A scored rollout ready for the update: inputs, masks and everything computed once with no
    grad. Shapes: B rows, T completion tokens."""

    input_ids: Tensor          # (B, P + T)
    attention_mask: Tensor     # (B, P + T)
    position_ids: Tensor       # (B, P + T)
    loss_mask: Tensor          # (B, T) float, tokens that carry loss
    advantages: Tensor         # (B,)
    old_log_probs: Tensor      # (B, T)
    old_entropy: Tensor        # (B, T)
    ref_log_probs: Tensor | None
    selected: Tensor | None    # (B, T) bool, Clip-Cov/KL-Cov tokens
    token_weights: Tensor | None = None  # (B, T) STEER weights
    sampler_log_probs: Tensor | None = None  # (B, T) the sampling engine's (vLLM) log-probs
