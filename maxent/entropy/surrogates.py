"""Policy-gradient surrogates beyond the token-level clipped ratio, as TRL 1.16's ``GRPOTrainer``
defines them (definitions read from its ``_compute_loss``): GSPO's sequence-level ratio (Zheng et
al. 2025, "Group Sequence Policy Optimization"), CISPO (MiniMax 2025, "MiniMax-M1": a clipped,
detached importance weight on the REINFORCE term) and SAPO (Qwen 2025, "Soft Adaptive Policy
Optimization": a sigmoid gate instead of a hard clip). Pure tensor maths, as :mod:`.token`."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["IMPORTANCE_LEVELS", "SURROGATES", "importance_log_weights", "surrogate_loss"]

SURROGATES = ("clip", "cispo", "sapo")
IMPORTANCE_LEVELS = ("token", "sequence")
_LOG_RATIO_CLAMP = 20.0  # as token.clipped_surrogate: exp never overflows into a NaN gradient


def importance_log_weights(log_probs: Tensor, old_log_probs: Tensor, mask: Tensor, level: str) -> Tensor:
    """log r: per token (B, T), or GSPO's per sequence (B, 1), the mean of the valid tokens'
    log-ratios. The gradient flows through every token's log-prob (TRL's "sequence" level; the
    paper's GSPO-token variant with a stop-gradient is not what TRL 1.16 computes)."""
    log_ratio = torch.where(mask, log_probs - old_log_probs.detach(), 0.0)
    if level == "token":
        return log_ratio
    if level != "sequence":
        raise ValueError(f"importance_sampling_level must be one of {list(IMPORTANCE_LEVELS)}, got {level!r}")
    return (log_ratio.sum(-1) / mask.sum(-1).clamp(min=1)).unsqueeze(-1)


def surrogate_loss(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor, *,
                   surrogate: str = "clip", level: str = "token", clip_low: float = 0.2,
                   clip_high: float = 0.28, delta: float | None = None, sapo_temperature_pos: float = 1.0,
                   sapo_temperature_neg: float = 1.05) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Per-token loss (B, T) of one surrogate, the importance ratio it used broadcast to (B, T)
    (before any ``delta`` cap; the KL bias correction multiplies by it), and clip flags.

    - ``"clip"``: -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), r capped at ``delta`` first
      when given (TRL's two-sided clipping).
    - ``"cispo"``: -sg(min(r, eps_high)) A log pi: ``clip_high`` is the ratio's absolute cap here,
      as in TRL (MiniMax-M1's eps_max).
    - ``"sapo"``: -A * 4 sigmoid(tau (r - 1)) / tau, tau = ``sapo_temperature_pos`` where A > 0
      and ``sapo_temperature_neg`` elsewhere.

    ``advantages`` is (B, T) and ``mask`` bool (B, T); masked tokens get advantage 0.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {list(SURROGATES)}, got {surrogate!r}")
    a = torch.where(mask, advantages, 0.0)
    log_w = importance_log_weights(log_probs, old_log_probs, mask, level)
    ratio = torch.exp(log_w.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))
    full_ratio = ratio.expand_as(log_probs)
    r = full_ratio.detach()
    zeros = torch.zeros_like(mask)
    flags = {"low": zeros, "high": zeros, "dual": zeros}
    if surrogate == "clip":
        clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
        capped = ratio if delta is None else torch.clamp(ratio, max=delta)
        per_token = -torch.minimum(capped * a, clipped * a)
        flags = {"low": (r < 1.0 - clip_low) & (a < 0), "high": (r > 1.0 + clip_high) & (a > 0),
                 "dual": (r > delta) & (a < 0) if delta is not None else zeros}
    elif surrogate == "cispo":
        weight = torch.clamp(ratio, max=clip_high).detach()
        per_token = -weight * a * log_probs
        flags["high"] = (r > clip_high) & mask
    else:
        tau = torch.where(a > 0, torch.as_tensor(sapo_temperature_pos, dtype=a.dtype, device=a.device),
                          torch.as_tensor(sapo_temperature_neg, dtype=a.dtype, device=a.device))
        per_token = -torch.sigmoid(tau * (ratio - 1.0)) * 4.0 / tau * a
    per_token = torch.where(mask, per_token.expand_as(log_probs), 0.0)
    return per_token, full_ratio, flags
