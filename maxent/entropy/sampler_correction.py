"""Correction for the mismatch between the engine that samples completions (vLLM) and the trainer
that scores them: truncated importance sampling (Yao et al. 2025, "Your efficient RL framework
secretly brings you off-policy RL training"; verl's TIS) in TRL's four modes, the share of samples
it drops, and the weighting of the per-token loss. Pure tensor maths, as :mod:`.token`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from maxent.entropy.token_checks import _LOG_RATIO_CLAMP, _bool_mask, _check_2d, _check_name

__all__ = ["SAMPLING_CORRECTIONS", "masked_fraction", "sampler_importance_weights"]

SAMPLING_CORRECTIONS = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def sampler_importance_weights(old_log_probs: Tensor, sampler_log_probs: Tensor, mask: Tensor, *,
                               mode: str = "sequence_mask", clip_max: float | None = 3.0,
                               clip_min: float | None = None) -> Tensor:
    """Importance weights pi_rollout / pi_sampler for completions sampled by an inference engine
    (vLLM) whose probabilities differ slightly from the trainer's (kernels, dtype): truncated
    importance sampling (Yao et al. 2025, "Your efficient RL framework secretly brings you
    off-policy RL training"; verl's TIS), with TRL's four modes.

    ``*token*`` modes weight each token by exp(log pi_old,t - log pi_sampler,t), ``sequence*``
    modes each completion by exp(sum over its tokens); ``*truncate`` clamps the weight to
    [clip_min, clip_max], ``*mask`` zeroes weights outside it. NaN sampler log-probs count as
    equal (weight 1). Returns (B, T) or (B, 1), no grad.

    Args:
        old_log_probs: (B, T) the trainer's log-probs of the sampled tokens under the rollout
            policy.
        sampler_log_probs: (B, T) the engine's log-probs of the same tokens.
        mask: (B, T) 1 on generated tokens.
        mode: one of ``SAMPLING_CORRECTIONS`` (TRL's default ``"sequence_mask"``).
        clip_max, clip_min: the bounds C (TRL's defaults 3.0 and none).
    """
    _check_name(mode, SAMPLING_CORRECTIONS, "mode")
    _check_2d("sampler_log_probs", sampler_log_probs, old_log_probs.shape)
    m = _bool_mask(mask, old_log_probs.shape)
    with torch.no_grad():
        diff = torch.where(m, old_log_probs.detach() - sampler_log_probs.to(old_log_probs.dtype), 0.0)
        diff = torch.nan_to_num(diff, nan=0.0)
        if mode.startswith("sequence"):
            diff = diff.sum(dim=-1, keepdim=True)
        weights = torch.exp(diff.clamp(max=_LOG_RATIO_CLAMP))
        low = -math.inf if clip_min is None else clip_min
        high = math.inf if clip_max is None else clip_max
        if mode.endswith("truncate"):
            weights = weights.clamp(min=None if clip_min is None else clip_min,
                                    max=None if clip_max is None else clip_max)
        else:
            weights = weights.masked_fill((weights < low) | (weights > high), 0.0)
    return weights


def masked_fraction(weights: Tensor, mask: Tensor) -> Tensor:
    """Share of the completions (``sequence*`` weights, (B, 1)) or generated tokens (``token*``,
    (B, T)) that :func:`sampler_importance_weights` zeroed, i.e. that do not train."""
    zeroed = weights == 0
    if weights.shape[-1] == 1:
        return zeroed.float().mean()
    m = _bool_mask(mask, weights.shape)
    return (zeroed & m).sum() / m.sum().clamp(min=1)


def _weigh_samples(per_token: Tensor, sampling_weights: Tensor | None) -> Tensor:
    """The per-token loss times the (detached) importance weights, which must be (B, T) or (B, 1)."""
    if sampling_weights is None:
        return per_token
    shape = per_token.shape
    if sampling_weights.dim() != 2 or sampling_weights.shape[0] != shape[0] or \
            sampling_weights.shape[1] not in (1, shape[1]):
        raise ValueError(f"sampling_weights must have shape {tuple(shape)} or ({shape[0]}, 1), "
                         f"got {tuple(sampling_weights.shape)}")
    return per_token * sampling_weights.detach().to(per_token.dtype)
