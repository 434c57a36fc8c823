"""GRPO's advantages from its rewards: the group-relative default (Shao et al. 2024, "DeepSeekMath"),
SEED-GRPO's semantic-entropy scaling, and the options beyond them under TRL's names:
``scale_rewards="batch"`` (Hu et al. 2025, REINFORCE++: centre per group, scale by the batch's std)
and ``multi_objective_aggregation="normalize_then_sum"`` (GDPO: normalise each reward function in
its group before summing). NaN rewards ("not applicable") are left out of every statistic and get
advantage 0, as TRL's nan-aware aggregation does."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["advantages_from_rewards", "group_advantages", "seed_grpo_advantages"]

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
    "group"/"sum_then_normalize" default is :func:`group_advantages`).

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


def group_advantages(rewards: Tensor, group_size: int, scale: bool = True) -> Tensor:
    """GRPO's group-relative advantage (r − mean_g r) / (std_g r + 1e-6), or r − mean_g r with
    ``scale=False`` (Dr.GRPO). Rewards that are NaN (failed scoring) are left out of the group's
    statistics and get advantage 0; groups with fewer than two valid rewards get 0.

    Args:
        rewards: (B,) with B a multiple of ``group_size``, groups contiguous.
        group_size: G.
        scale: divide by the group's (unbiased, as TRL) standard deviation.

    Returns:
        (B,) advantages, float32.
    """
    r = rewards.reshape(-1, group_size).float()                     # (n_prompts, G)
    valid = torch.isfinite(r)
    n = valid.sum(-1, keepdim=True)
    r0 = torch.where(valid, r, torch.zeros_like(r))
    mean = r0.sum(-1, keepdim=True) / n.clamp(min=1)
    centred = torch.where(valid, r - mean, torch.zeros_like(r))
    if scale:
        std = (centred.square().sum(-1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()
        centred = centred / (std + 1e-6)
    centred = torch.where(n >= 2, centred, torch.zeros_like(centred))
    return centred.reshape(-1)


def seed_grpo_advantages(rollout: Any, task: Any, cfg: Any,
                         sequence_log_probs: Tensor | None) -> tuple[Tensor, Tensor]:
    """SEED-GRPO's (B,) advantages of a :class:`~maxent.agents.grpo_batch.Rollout` and the (n_prompts,)
    semantic entropies of its groups, answers clustered by ``task.parse`` (the stripped completion
    when ``task`` is None, a dataset); ``cfg`` a :class:`~maxent.agents.grpo_config.GRPOConfig`,
    ``sequence_log_probs`` (B,) the completions' log-probs (for ``seed_likelihood_weights``)."""
    from maxent.entropy.semantic import seed_advantages

    G = cfg.group_size
    rewards = rollout.rewards.reshape(-1, G).clone()
    valid = torch.isfinite(rewards)
    # Failed rewards take their group's mean (no signal) and are zeroed afterwards.
    means = torch.where(valid, rewards, 0).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp(min=1)
    rewards = torch.where(valid, rewards, means)
    # Clusters of meaning: the task's parsed answer; for a dataset, the stripped completion.
    parse = task.parse if task is not None else (lambda text: text.strip())
    answers = [[parse(rollout.texts[p * G + g]) for g in range(G)]
               for p in range(rewards.shape[0])]
    if cfg.reward_scaling == "batch" or cfg.multi_objective_aggregation != "sum_then_normalize":
        raise ValueError("intervention='seed' scales group advantages: use it with "
                         "scale_rewards 'group' or 'none' and multi_objective_aggregation "
                         "'sum_then_normalize'")
    kwargs: dict[str, Any] = {"mode": cfg.seed_mode, "scale_std": cfg.reward_scaling == "group"}
    if cfg.seed_alpha is not None:
        kwargs["alpha"] = cfg.seed_alpha
    if cfg.seed_likelihood_weights:
        kwargs["weights"] = sequence_log_probs.reshape(-1, G)
        kwargs["log_weights"] = True
    adv, semantic = seed_advantages(rewards, answers, **kwargs)
    adv = torch.where(valid & (valid.sum(-1, keepdim=True) >= 2), adv, 0)
    return adv.reshape(-1).float(), semantic
