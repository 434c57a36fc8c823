"""GRPO's advantage options beyond the group-normalised default, under TRL's names:
``scale_rewards="batch"`` (Hu et al. 2025, REINFORCE++: centre per group, scale by the batch's std)
and ``multi_objective_aggregation="normalize_then_sum"`` (GDPO: normalise each reward function in
its group before summing). NaN rewards ("not applicable") are left out of every statistic and get
advantage 0, as TRL's nan-aware aggregation does."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["advantages_from_rewards"]

_EPS = 1e-6  # the std's guard, as group_advantages (TRL adds 1e-4)


def _nanstd(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Unbiased std over the finite entries (0 where fewer than two)."""
    valid = torch.isfinite(x)
    n = valid.sum() if dim is None else valid.sum(dim, keepdim=keepdim)
    x0 = torch.where(valid, x, torch.zeros_like(x))
    mean = (x0.sum() if dim is None else x0.sum(dim, keepdim=True)) / (
        valid.sum() if dim is None else valid.sum(dim, keepdim=True)).clamp(min=1)
    sq = torch.where(valid, (x - mean).square(), torch.zeros_like(x))
    total = sq.sum() if dim is None else sq.sum(dim, keepdim=keepdim)
    return (total / (n - 1).clamp(min=1)).sqrt()


def _nanmean(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    valid = torch.isfinite(x)
    x0 = torch.where(valid, x, torch.zeros_like(x))
    if dim is None:
        return x0.sum() / valid.sum().clamp(min=1)
    return x0.sum(dim, keepdim=keepdim) / valid.sum(dim, keepdim=keepdim).clamp(min=1)


def advantages_from_rewards(rewards: Tensor, terms: Tensor | None, weights: Tensor, group_size: int,
                            scaling: str, aggregation: str) -> Tensor:
    """(B,) advantages for ``scaling`` "batch" or ``aggregation`` "normalize_then_sum" (the
    "group"/"sum_then_normalize" default is :func:`maxent.agents.grpo.group_advantages`).

    Args:
        rewards: (B,) weighted sums, NaN where no function rewarded.
        terms: (B, F) each function's reward (NaN for none); needed by "normalize_then_sum".
        weights: (F,) the reward weights.
        group_size: G; groups are contiguous rows.
        scaling: "group", "batch" or "none".
        aggregation: "sum_then_normalize" or "normalize_then_sum".
    """
    G = group_size
    if aggregation == "normalize_then_sum":
        if terms is None:
            raise ValueError("multi_objective_aggregation='normalize_then_sum' needs each reward "
                             "function's rewards")
        grouped = terms.float().reshape(-1, G, terms.shape[-1])                # (P, G, F)
        z = (grouped - _nanmean(grouped, 1, keepdim=True)) / (_nanstd(grouped, 1, keepdim=True) + _EPS)
        z = z.reshape(-1, terms.shape[-1])
        finite = torch.isfinite(z)
        combined = torch.where(finite, z * weights.float(), torch.zeros_like(z)).sum(-1)
        combined[~torch.isfinite(terms.float()).any(-1)] = float("nan")
        adv = (combined - _nanmean(combined)) / (_nanstd(combined) + _EPS)
        return torch.nan_to_num(adv, nan=0.0)
    r = rewards.float().reshape(-1, G)
    valid = torch.isfinite(r)
    centred = r - _nanmean(r, 1, keepdim=True)
    if scaling == "batch":
        centred = centred / (_nanstd(r) + _EPS)
    elif scaling == "group":
        centred = centred / (_nanstd(r, 1, keepdim=True) + _EPS)
    centred = torch.where(valid & (valid.sum(-1, keepdim=True) >= 2), centred, torch.zeros_like(centred))
    return centred.reshape(-1)
