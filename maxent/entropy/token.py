"""Token-level policy-gradient losses for language-model RL (GRPO family) and the entropy
interventions that act on them: the clipped surrogate with asymmetric ("clip-higher") and dual
clipping, the loss aggregation modes of TRL/verl, an entropy bonus, Clip-Cov and KL-Cov (Cui et
al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models") and
STEER token reweighting (2025, "Rethinking Entropy Interventions in RLVR").

Every function is pure: tensors in, tensors out. Shapes: B sequences, T completion tokens;
``mask`` (B, T) marks the valid completion tokens (bool or 0/1). ``log_probs`` carries the graph;
old/reference log-probs, advantages and token selections are treated as constants.

Finite gradients: log-ratios are set to 0 at masked tokens and clamped to [-20, 20] before
``exp`` (as verl does), so that padding or a wild token cannot overflow into an inf whose
gradient is NaN even where the mask multiplies it by 0 (0 * inf = NaN in the backward pass).

Micro-batching: pass ``normalizer`` (see ``aggregate``) so that the losses of the micro-batches of
one training batch sum to the full-batch loss, and select Clip-Cov/KL-Cov tokens with
``select_tokens`` ONCE on the whole batch (selection per micro-batch is a known flaw of the
reference implementation: top-k of a micro-batch is not top-k of the batch).

The importance weights that correct for a sampling engine (vLLM) other than the trainer are in
:mod:`.sampler_correction`, the shared input checks in :mod:`.token_checks`; both are importable
from here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

# The vLLM mismatch correction lives in sampler_correction.py (and is documented there); importing
# it from here keeps working, and __all__ leaves it out so the API page lists it once.
from maxent.entropy.sampler_correction import (  # noqa: F401  (re-exported)
    SAMPLING_CORRECTIONS,
    _weigh_samples,
    masked_fraction,
    sampler_importance_weights,
)
from maxent.entropy.token_checks import (
    _LOG_RATIO_CLAMP,
    _bool_mask,
    _check_2d,
    _check_finite_advantages,
    _check_name,
    _check_no_nan,
    _expand_advantages,
)

__all__ = [
    "AGGREGATIONS",
    "INTERVENTIONS",
    "LossSettings",
    "STEER_MODES",
    "TokenLoss",
    "aggregate",
    "clipped_surrogate",
    "high_entropy_mask",
    "k3_kl",
    "policy_loss",
    "select_tokens",
    "steer_omega",
    "steer_weights",
    "token_covariance",
]

INTERVENTIONS = ("none", "clip_cov", "kl_cov", "steer")
AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
STEER_MODES = ("exponential", "linear")

# STEER: probabilities are clamped to [eps, 1 - eps] before the entropy-change estimate, and the
# exponential map's scale uses max(max|Omega|, floor) so tiny batches are not over-penalised.
_STEER_PROB_EPS = 1e-8
_STEER_OMEGA_FLOOR = 0.02


# --------------------------------------------------------------------------- selection and STEER checks


def _check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(
            f"ratio must be in [0, 1] (fraction of valid tokens to select), got {ratio}; "
            "the paper uses 2e-4 (2e-3 for 7B models)"
        )
    return ratio


def _check_lambdas(mode: str, lambda_min: float, lambda_max: float) -> None:
    _check_name(mode, STEER_MODES, "STEER mode")
    if not 0.0 < lambda_min <= 1.0:
        raise ValueError(f"lambda_min must be in (0, 1], got {lambda_min} (STEER uses 0.8)")
    if mode == "linear" and not lambda_max >= lambda_min:
        raise ValueError(
            f"lambda_max must be >= lambda_min ({lambda_min}) for the linear STEER map, "
            f"got {lambda_max} (STEER uses 1.2)"
        )


def _n_select(ratio: float, n_valid: int) -> int:
    """k = max(1, floor(ratio * N)) for ratio > 0; ratio 0 selects nothing."""
    if ratio <= 0.0 or n_valid == 0:
        return 0
    # The 1e-9 keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    return min(n_valid, max(1, math.floor(ratio * n_valid + 1e-9)))


# --------------------------------------------------------------------------- building blocks


def k3_kl(log_probs: Tensor, ref_log_probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) (Schulman 2020), as in GRPO (Shao et al. 2024):

        kl_t = exp(d_t) - d_t - 1,  d_t = clamp(ref_t - logp_t, -20, 20)
        (>= 0, unbiased for samples of pi)

    The clamp (verl's, see ``_LOG_RATIO_CLAMP``) keeps exp finite; TRL does not clamp, which is
    the same for |ref_t - logp_t| <= 20.

    Args:
        log_probs: (B, T) log pi(o_t) of the policy being trained (with grad).
        ref_log_probs: (B, T) log pi_ref(o_t) of the reference model (detached).
        mask: (B, T) valid tokens, optional; d_t is set to 0 (kl_t = 0, gradient 0) where it is 0,
            so padding can never overflow into a NaN gradient.

    Returns:
        (B, T) per-token KL estimate.
    """
    d = ref_log_probs.detach() - log_probs
    if mask is not None:
        d = torch.where(_bool_mask(mask, log_probs.shape), d, 0.0)
    d = d.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    return torch.exp(d) - d - 1.0


def token_covariance(log_probs: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Per-token centred cross-product of log-prob and advantage (Cui et al. 2025, Eq. 11's summand):

        cov_t = (A_t - mean(A)) * (log pi_t - mean(log pi)),

    means taken over the valid tokens of the batch given. Its batch mean is the covariance that
    drives the change of policy entropy under a policy-gradient step: large positive cov_t tokens
    (confident and rewarded, or unlikely and penalised) are the ones that collapse entropy.

    Args:
        log_probs: (B, T) token log-probs (detached here).
        advantages: (B,), (B, 1) or (B, T) advantages.
        mask: (B, T) valid-token mask.

    Returns:
        (B, T) float tensor, 0 where ``mask`` is 0. No gradient.
    """
    _check_2d("log_probs", log_probs)
    m = _bool_mask(mask, log_probs.shape)
    dtype = torch.promote_types(log_probs.dtype, torch.float32)
    lp = log_probs.detach().to(dtype)
    a = _expand_advantages(advantages, log_probs.shape).to(dtype)
    n = m.sum().clamp(min=1)
    lp = torch.where(m, lp, 0.0)
    a = torch.where(m, a, 0.0)
    cov = (a - a.sum() / n) * (lp - lp.sum() / n)
    return torch.where(m, cov, 0.0)


def select_tokens(
    intervention: str,
    log_probs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    ratio: float = 2e-4,
    cov_lower: float = 1.0,
    cov_upper: float = 5.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Tokens whose gradient Clip-Cov removes, or that KL-Cov regularises (Cui et al. 2025, Sec. 4).

    Call ONCE on the whole training batch (all micro-batches) before the update, with the
    rollout's log-probs, then slice the result per micro-batch. With N valid tokens and
    k = max(1, floor(ratio * N)) for ratio > 0 (ratio = 0 selects nothing):

    - ``"clip_cov"``: a uniformly random subset of size min(k, #candidates) of the candidates
      {t : cov_lower < cov_t < cov_upper} (Eq. 12); drawn with ``generator`` (seeded => repeatable).
    - ``"kl_cov"``: the k tokens with the largest cov_t (Eq. 13, top-k; ties broken by
      ``torch.topk``).
    - ``"none"`` / ``"steer"``: nothing (all False).

    The reference code also skips tokens PPO already clipped; before the first update of a
    rollout nothing is clipped (ratio = 1), and a clipped token has no gradient to remove.

    Args:
        intervention: one of ``INTERVENTIONS``.
        log_probs: (B, T) rollout log-probs (detached here).
        advantages: (B,), (B, 1) or (B, T).
        mask: (B, T) valid tokens.
        ratio: fraction r of valid tokens, in [0, 1]; default 2e-4 (the paper's 32B setting;
            2e-3 for 7B).
        cov_lower, cov_upper: Clip-Cov's covariance window, defaults 1 and 5.
        generator: ``torch.Generator`` (any device) for Clip-Cov's random subset.

    Returns:
        (B, T) bool tensor on ``log_probs``' device.
    """
    _check_name(intervention, INTERVENTIONS, "intervention")
    _check_2d("log_probs", log_probs)
    m = _bool_mask(mask, log_probs.shape)
    ratio = _check_ratio(ratio)
    if not cov_lower < cov_upper:
        raise ValueError(f"cov_lower must be < cov_upper, got {cov_lower} and {cov_upper}")
    selected = torch.zeros(log_probs.shape, dtype=torch.bool, device=log_probs.device)
    if intervention in ("none", "steer"):
        return selected
    _check_no_nan("log_probs", log_probs, m)
    k = _n_select(ratio, int(m.sum()))
    if k == 0:
        return selected
    cov = token_covariance(log_probs, advantages, m).flatten()
    flat = selected.flatten()
    if intervention == "kl_cov":
        scores = cov.masked_fill(~m.flatten(), -math.inf)
        flat[torch.topk(scores, k).indices] = True
    else:  # clip_cov
        candidates = torch.nonzero(m.flatten() & (cov > cov_lower) & (cov < cov_upper)).squeeze(1)
        if candidates.numel() > 0:
            # On the generator's device, so a CPU or a CUDA generator both work.
            perm = torch.randperm(candidates.numel(), generator=generator,
                                  device=generator.device if generator is not None else "cpu")[:k]
            flat[candidates[perm.to(candidates.device)]] = True
    return flat.view(log_probs.shape)


def high_entropy_mask(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """The tokens to train on when training only on the highest-entropy ones (Wang et al. 2025,
    "Beyond the 80/20 Rule: High-Entropy Minority Tokens Drive Effective RL for LLM Reasoning";
    TRL's ``top_entropy_quantile``): valid tokens whose entropy is at least the
    ``1 - quantile`` quantile of the valid tokens' entropies (linear interpolation, as
    ``torch.quantile``). ``quantile`` = 1 keeps every valid token; 0.2 the paper's top 20 %.

    Args:
        entropy: (B, T) token entropies (detached here).
        mask: (B, T) valid tokens.
        quantile: the share of tokens kept, in (0, 1].

    Returns:
        (B, T) bool, False at padding.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1] (the share of highest-entropy tokens trained "
                         f"on), got {quantile}")
    _check_2d("entropy", entropy)
    m = _bool_mask(mask, entropy.shape)
    values = entropy.detach()[m].float()
    if values.numel() == 0:
        return torch.zeros_like(m)
    threshold = torch.quantile(values, 1.0 - quantile)
    return (entropy.detach() >= threshold) & m


def steer_omega(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, old_entropy: Tensor, mask: Tensor
) -> Tensor:
    """|Omega_t|, STEER's first-order estimate of each token's effect on policy entropy:

        Omega_t = (A_t / pi_old,t) * pi_t (1 - pi_t) * (log pi_t + H_t),

    pi = exp(log-prob) clamped to [1e-8, 1 - 1e-8], H_t the old policy's token entropy;
    non-finite values -> 0; 0 at masked tokens. No gradient.

    Returns:
        (B, T) tensor of |Omega_t|.
    """
    _check_2d("log_probs", log_probs)
    _check_2d("old_log_probs", old_log_probs, log_probs.shape)
    _check_2d("old_entropy", old_entropy, log_probs.shape)
    m = _bool_mask(mask, log_probs.shape)
    dtype = torch.promote_types(log_probs.dtype, torch.float32)
    a = _expand_advantages(advantages, log_probs.shape).to(dtype)
    lo, hi = _STEER_PROB_EPS, 1.0 - _STEER_PROB_EPS
    pi = log_probs.detach().to(dtype).exp().clamp(lo, hi)
    pi_old = old_log_probs.detach().to(dtype).exp().clamp(lo, hi)
    omega = (a / pi_old) * pi * (1.0 - pi) * (pi.log() + old_entropy.detach().to(dtype))
    omega = torch.where(torch.isfinite(omega) & m, omega, 0.0)
    return omega.abs()


def steer_weights(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    old_entropy: Tensor,
    mask: Tensor,
    *,
    mode: str = "exponential",
    lambda_min: float = 0.8,
    lambda_max: float = 1.2,
) -> Tensor:
    """STEER's per-token loss weights lambda_t from |Omega_t| (``steer_omega``).

    - exponential: k = -ln(lambda_min) / max(max_t |Omega_t|, 0.02),
      lambda_t = clamp(exp(-k |Omega_t|), lambda_min, 1): tokens that would move entropy most
      get lambda_min, tokens that leave it unchanged get 1.
    - linear: |Omega| mapped linearly from [min_t |Omega_t|, max_t |Omega_t|] onto
      [lambda_max, lambda_min] (smallest effect -> lambda_max, largest -> lambda_min); when all
      |Omega| are equal every weight is (lambda_min + lambda_max) / 2.

    Extremes are over the valid tokens of the tensors given: compute the weights once on the whole
    training batch and pass them to ``policy_loss(token_weights=...)`` for micro-batch invariance.

    Args:
        log_probs, old_log_probs: (B, T) current and rollout log-probs (detached here).
        advantages: (B,), (B, 1) or (B, T).
        old_entropy: (B, T) token entropy of the rollout policy.
        mask: (B, T) valid tokens.
        mode: ``"exponential"`` (default) or ``"linear"``.
        lambda_min: in (0, 1], default 0.8; 1 gives all-ones weights (exponential).
        lambda_max: linear mode's upper weight, >= lambda_min, default 1.2.

    Returns:
        (B, T) weights, 1 at masked tokens, no gradient.
    """
    _check_lambdas(mode, lambda_min, lambda_max)
    omega = steer_omega(log_probs, old_log_probs, advantages, old_entropy, mask)
    m = _bool_mask(mask, log_probs.shape)
    if not bool(m.any()):
        return torch.ones_like(omega)
    if mode == "exponential":
        scale = omega.max().clamp(min=_STEER_OMEGA_FLOOR)  # omega is 0 at masked tokens
        k = -math.log(lambda_min) / scale
        w = torch.exp(-k * omega).clamp(lambda_min, 1.0)
    else:
        lo = omega.masked_fill(~m, math.inf).min()
        hi = omega.max()
        span = hi - lo
        frac = torch.where(span > 0, (omega - lo) / span.clamp(min=torch.finfo(omega.dtype).tiny),
                           torch.full_like(omega, 0.5))
        w = lambda_max + frac * (lambda_min - lambda_max)
    return torch.where(m, w, 1.0)


def aggregate(
    values: Tensor,
    mask: Tensor,
    mode: str,
    *,
    normalizer: float | None = None,
    max_length: int | None = None,
) -> Tensor:
    """Reduce per-token values (B, T) to a scalar loss, as TRL/verl do:

    ==========================  ===================================================  ===========
    mode                        formula (m = mask, L = max_length)                   TRL / verl
    ==========================  ===================================================  ===========
    token-mean                  sum_bt m v / sum_bt m                                 dapo, bnpo
    seq-mean-token-mean         (1/B) sum_b [sum_t m v / max(1, sum_t m)]             grpo
    seq-mean-token-sum          (1/B) sum_b sum_t m v                                 (verl)
    seq-mean-token-sum-norm     sum_bt m v / (B * L)      (Dr.GRPO, L default T)      dr_grpo
    ==========================  ===================================================  ===========

    token-mean weighs every token equally (long answers count more); seq-mean-token-mean weighs
    every sequence equally (each token of a long answer counts less); the token-sum modes have
    no length normalisation per sequence (Dr.GRPO's unbiased form divides by a constant).

    Args:
        values: (B, T) per-token values.
        mask: (B, T) valid tokens; values at masked tokens are ignored (even NaN).
        mode: one of ``AGGREGATIONS``.
        normalizer: replaces the divisor (the denominator above) so that micro-batch losses sum
            to the global-batch loss: token-mean -> total valid tokens of the global batch;
            seq-mean-* -> number of sequences in the global batch; seq-mean-token-sum-norm ->
            global B * max_length. Default: the divisor of ``values`` alone.
        max_length: L for seq-mean-token-sum-norm (TRL: ``max_completion_length``), >= T.

    Returns:
        0-dim tensor.
    """
    _check_name(mode, AGGREGATIONS, "aggregation")
    _check_2d("values", values)
    m = _bool_mask(mask, values.shape)
    v = torch.where(m, values, 0.0)
    if normalizer is not None:
        normalizer = float(normalizer)
        if not (math.isfinite(normalizer) and normalizer > 0):
            raise ValueError(f"normalizer must be a finite number > 0, got {normalizer}")
    if mode == "token-mean":
        den = normalizer if normalizer is not None else m.sum().clamp(min=1)
        return v.sum() / den
    n_seq = normalizer if normalizer is not None else values.shape[0]
    if mode == "seq-mean-token-mean":
        per_seq = v.sum(-1) / m.sum(-1).clamp(min=1)
        return per_seq.sum() / max(n_seq, 1)
    if mode == "seq-mean-token-sum":
        return v.sum() / max(n_seq, 1)
    # seq-mean-token-sum-norm (Dr.GRPO)
    length = values.shape[1] if max_length is None else int(max_length)
    if max_length is not None and length < values.shape[1]:
        raise ValueError(
            f"max_length must be >= the number of completion tokens T = {values.shape[1]}, "
            f"got {max_length}"
        )
    den = normalizer if normalizer is not None else max(values.shape[0] * length, 1)
    return v.sum() / den


def clipped_surrogate(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Per-token PPO clipped surrogate with asymmetric clip (DAPO's clip-higher) and dual clip:

        r_t = exp(clamp(logp_t - logp_old,t, -20, 20))     (verl's clamp, ``_LOG_RATIO_CLAMP``)
        l_t = max(-A_t r_t, -A_t clip(r_t, 1 - eps_low, 1 + eps_high))
        dual clip (Ye et al. 2020, as in verl), for A_t < 0 only: l_t = min(l_t, -A_t c)

    Args:
        log_probs: (B, T) with grad; old_log_probs: (B, T) detached.
        advantages: (B, T) (already expanded).
        clip_low, clip_high: eps_low (default 0.2) and eps_high (default 0.28).
        dual_clip: c > 1 (e.g. 3.0) or None.
        mask: (B, T) valid tokens, optional; where it is 0 the log-ratio and the advantage are
            set to 0 first (r = 1, l = 0), so that padding (any value, even inf or NaN) gives
            exactly 0 gradient instead of 0 * inf = NaN.

    Returns:
        (per-token loss (B, T), ratio (B, T), boolean masks "low", "high" (clipped region, as in
        TRL's clip_ratio metrics), "dual" (dual clip active)).
    """
    log_ratio = log_probs - old_log_probs.detach()
    if mask is not None:
        m = _bool_mask(mask, log_probs.shape)
        log_ratio = torch.where(m, log_ratio, 0.0)
        advantages = torch.where(m, advantages, 0.0)
    ratio = torch.exp(log_ratio.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(loss1, loss2)
    r = ratio.detach()
    flags = {"low": (r < 1.0 - clip_low) & (advantages < 0),
             "high": (r > 1.0 + clip_high) & (advantages > 0)}
    if dual_clip is not None:
        loss3 = -advantages * dual_clip
        flags["dual"] = (advantages < 0) & (loss.detach() > loss3)
        loss = torch.where(advantages < 0, torch.minimum(loss, loss3), loss)
    else:
        flags["dual"] = torch.zeros_like(flags["low"])
    return loss, ratio, flags


# --------------------------------------------------------------------------- the loss


@dataclass
class TokenLoss:
    """Result of ``policy_loss``: the differentiable scalar loss and detached 0-dim diagnostics."""

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


def _masked_mean(x: Tensor, m: Tensor) -> Tensor:
    x = x.detach().to(torch.promote_types(x.dtype, torch.float32))
    return torch.where(m, x, 0.0).sum() / m.sum().clamp(min=1)


@dataclass(frozen=True)
class LossSettings:
    """The settings of :func:`policy_loss` that stay fixed over a run (GRPO builds one from its
    config); the tensors and the per-step values (entropy coefficient, normalizers) are arguments.

    Attributes:
        intervention: one of ``INTERVENTIONS`` (see :func:`policy_loss`); default "none".
        aggregation: one of ``AGGREGATIONS``; default "token-mean".
        clip_low, clip_high: eps_low / eps_high of the clipped surrogate, defaults 0.2 / 0.28.
        dual_clip: c > 1 for dual clip on negative advantages (verl uses 3.0); default None.
        kl_coef: beta of the k3 KL term to the reference model; default 0 (no reference).
        kl_importance_correction: multiply kl3_t by r_t (with grad), the unbiased reverse-KL
            gradient of DeepSeek-V3.2; TRL 1.16's ``use_bias_correction_kl`` (default True there).
            Default False: the GRPO paper's plain k3 term.
        kl_cov_coef: beta of KL-Cov, default 1.
        steer_mode, lambda_min, lambda_max: STEER settings (see ``steer_weights``); checked when
            STEER is used.
        entropy_aggregation: aggregation of the entropy bonus; default: ``aggregation`` (verl).
            TRL uses "token-mean" over the micro-batch whatever its loss type.
        max_length: Dr.GRPO's L for "seq-mean-token-sum-norm" (see ``aggregate``).
        surrogate: "clip" (default), "cispo" or "sapo"; importance_sampling_level: "token"
            (default) or "sequence" (GSPO); sapo_temperature_pos/neg: SAPO's gate temperatures.
            See :mod:`maxent.entropy.surrogates`. With a surrogate other than "clip" or sequence
            level, ``dual_clip`` is TRL's ``delta`` (the same loss for delta > 1 + clip_high).
        check_finite: raise on NaN in the log-probs and on non-finite (inf or NaN) advantages at
            valid tokens (one host sync each). Masked tokens may hold anything: their log-ratios
            and advantages are set to 0 before use, so they add exactly 0 to loss and gradient.
    """

    intervention: str = "none"
    aggregation: str = "token-mean"
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float | None = None
    kl_coef: float = 0.0
    kl_importance_correction: bool = False
    kl_cov_coef: float = 1.0
    steer_mode: str = "exponential"
    lambda_min: float = 0.8
    lambda_max: float = 1.2
    entropy_aggregation: str | None = None
    max_length: int | None = None
    check_finite: bool = True
    surrogate: str = "clip"
    importance_sampling_level: str = "token"
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05

    def __post_init__(self) -> None:
        _check_name(self.intervention, INTERVENTIONS, "intervention")
        _check_name(self.aggregation, AGGREGATIONS, "aggregation")
        if self.entropy_aggregation is not None:
            _check_name(self.entropy_aggregation, AGGREGATIONS, "entropy_aggregation")
        if not 0.0 <= self.clip_low < 1.0:
            raise ValueError(f"clip_low must be in [0, 1), got {self.clip_low} (default 0.2)")
        if not self.clip_high >= 0.0:
            raise ValueError(f"clip_high must be >= 0, got {self.clip_high} (default 0.28)")
        if self.dual_clip is not None and not self.dual_clip > 1.0:
            raise ValueError(f"dual_clip must be > 1 (e.g. 3.0) or None, got {self.dual_clip}")
        from maxent.entropy.surrogates import IMPORTANCE_LEVELS, SURROGATES

        _check_name(self.surrogate, SURROGATES, "surrogate")
        _check_name(self.importance_sampling_level, IMPORTANCE_LEVELS, "importance_sampling_level")
        if self.surrogate != "clip" and self.intervention in ("clip_cov", "kl_cov"):
            raise ValueError(f"intervention {self.intervention!r} acts on the clipped surrogate; "
                             f"use surrogate='clip' with it, not {self.surrogate!r}")


_SETTING_NAMES = tuple(f.name for f in fields(LossSettings))


def _settings_from(settings: LossSettings | None, legacy: dict[str, Any]) -> LossSettings:
    """``settings``, or the one the old keyword-argument call names (deprecated)."""
    if not legacy:
        return LossSettings() if settings is None else settings
    unknown = sorted(set(legacy) - set(_SETTING_NAMES))
    if unknown:
        raise TypeError(f"policy_loss() got unexpected keyword argument(s) {unknown}; its "
                        f"settings go in LossSettings({', '.join(_SETTING_NAMES)})")
    if settings is not None:
        raise TypeError(f"policy_loss() got settings and the keyword(s) {sorted(legacy)}; put "
                        "them all in the LossSettings")
    warnings.warn(f"policy_loss(..., {', '.join(f'{k}=' for k in legacy)}) is deprecated: pass "
                  f"policy_loss(..., LossSettings({', '.join(f'{k}=' for k in legacy)})) (the "
                  "keywords are removed in maxent 0.3)", DeprecationWarning, stacklevel=3)
    return LossSettings(**legacy)


def _intervene(s: LossSettings, per_token: Tensor, ratio: Tensor, log_probs: Tensor, old: Tensor,
               a: Tensor, m: Tensor, selected: Tensor | None, old_entropy: Tensor | None,
               token_weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """The intervention's change to the per-token loss: (per-token loss, tokens it touched,
    STEER weights or None)."""
    shape = log_probs.shape
    touched = torch.zeros_like(m)
    if s.intervention in ("clip_cov", "kl_cov"):
        if selected is None:
            raise ValueError(
                f"intervention {s.intervention!r} needs selected=select_tokens("
                f"{s.intervention!r}, ...) computed once on the whole training batch (then sliced "
                "per micro-batch)"
            )
        _check_2d("selected", selected, shape)
        touched = selected.to(torch.bool) & m
        if s.intervention == "clip_cov":
            return torch.where(touched, torch.zeros_like(per_token), per_token), touched, None
        log_ratio = torch.where(m, log_probs - old, 0.0)  # (B, T), 0 at padding
        kl_loss = -a * ratio + s.kl_cov_coef * log_ratio.abs()
        return torch.where(touched, kl_loss, per_token), touched, None
    if s.intervention == "steer":
        if token_weights is None:
            if old_entropy is None:
                raise ValueError(
                    "intervention 'steer' needs old_entropy=(B, T) rollout token entropy, or "
                    "token_weights=steer_weights(...) computed on the whole batch"
                )
            token_weights = steer_weights(
                log_probs, old, a, old_entropy, m,
                mode=s.steer_mode, lambda_min=s.lambda_min, lambda_max=s.lambda_max)
        else:
            _check_lambdas(s.steer_mode, s.lambda_min, s.lambda_max)
            _check_2d("token_weights", token_weights, shape)
        weights = token_weights.detach().to(per_token.dtype)
        return per_token * weights, (weights != 1.0) & m, weights
    return per_token, touched, None


def _kl_term(s: LossSettings, per_token: Tensor, ratio: Tensor, log_probs: Tensor,
             ref_log_probs: Tensor | None, m: Tensor) -> tuple[Tensor, Tensor]:
    """Adds kl_coef * k3 KL to the reference to the per-token loss; returns it and the KL metric."""
    if ref_log_probs is None:
        if s.kl_coef != 0.0:
            raise ValueError(f"kl_coef = {s.kl_coef} needs ref_log_probs (reference log-probs)")
        return per_token, torch.zeros((), device=log_probs.device)
    _check_2d("ref_log_probs", ref_log_probs, log_probs.shape)
    if s.check_finite:
        _check_no_nan("ref_log_probs", ref_log_probs, m)
    kl = k3_kl(log_probs, ref_log_probs, m)
    if s.kl_coef != 0.0:
        kl_term = kl * ratio if s.kl_importance_correction else kl
        per_token = per_token + s.kl_coef * kl_term
    return per_token, _masked_mean(kl, m)


def _entropy_bonus(s: LossSettings, entropy: Tensor | None, entropy_coef: float | Tensor,
                   m: Tensor, normalizer: float | None, entropy_normalizer: float | None
                   ) -> tuple[Tensor | float | None, Tensor | None, dict[str, Tensor]]:
    """(coefficient, aggregated bonus) to subtract from the loss, both None when there is none,
    and the entropy metrics."""
    if entropy is None:
        if isinstance(entropy_coef, Tensor) or entropy_coef != 0.0:
            raise ValueError("entropy_coef is non-zero but entropy (the (B, T) token entropy with "
                             "grad) was not given")
        return None, None, {}
    _check_2d("entropy", entropy, m.shape)
    metrics = {"entropy": _masked_mean(entropy, m)}
    coef = entropy_coef.detach() if isinstance(entropy_coef, Tensor) else float(entropy_coef)
    if not isinstance(coef, Tensor) and coef == 0.0:
        return None, None, metrics
    mode = s.aggregation if s.entropy_aggregation is None else s.entropy_aggregation
    norm = normalizer if mode == s.aggregation else entropy_normalizer
    bonus = aggregate(entropy, m, mode, normalizer=norm, max_length=s.max_length)
    metrics["entropy_bonus"] = bonus.detach()
    return coef, bonus, metrics


def _diagnostics(ratio: Tensor, flags: dict[str, Tensor], touched: Tensor, weights: Tensor | None,
                 old: Tensor, a: Tensor, m: Tensor) -> dict[str, Tensor]:
    """Clip fractions, ratio, log-prob/advantage covariance and STEER weight statistics."""
    zero = torch.zeros((), device=ratio.device)
    r = ratio.detach()
    metrics = {
        "clip_fraction_low": _masked_mean(flags["low"].float(), m),
        "clip_fraction_high": _masked_mean(flags["high"].float(), m),
        "clip_fraction": _masked_mean((flags["low"] | flags["high"]).float(), m),
        "dual_clip_fraction": _masked_mean(flags["dual"].float(), m),
        "touched_fraction": _masked_mean(touched.float(), m),
        "ratio_mean": _masked_mean(r, m),
        "ratio_max": r.masked_fill(~m, -math.inf).max() if bool(m.any()) else zero,
    }
    cov = token_covariance(old, a, m)
    metrics["cov_mean"] = _masked_mean(cov, m)
    metrics["cov_max"] = cov.masked_fill(~m, -math.inf).max() if bool(m.any()) else zero
    if weights is not None and bool(m.any()):
        metrics["weight_min"] = weights.masked_fill(~m, math.inf).min()
        metrics["weight_mean"] = _masked_mean(weights, m)
        metrics["weight_max"] = weights.masked_fill(~m, -math.inf).max()
    else:
        one = torch.ones((), device=ratio.device)
        metrics["weight_min"] = metrics["weight_mean"] = metrics["weight_max"] = one
    return metrics


def policy_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    settings: LossSettings | None = None,
    *,
    selected: Tensor | None = None,
    old_entropy: Tensor | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float | Tensor = 0.0,
    ref_log_probs: Tensor | None = None,
    normalizer: float | None = None,
    entropy_normalizer: float | None = None,
    token_weights: Tensor | None = None,
    sampling_weights: Tensor | None = None,
    entropy_mask: Tensor | None = None,
    **legacy: Any,
) -> TokenLoss:
    """GRPO-family token loss with an optional entropy intervention:

        loss = agg_t( l_t^int + kl_coef * kl3_t ) - entropy_coef * agg'_t( H_t )

    l_t is ``clipped_surrogate``; the intervention (``settings.intervention``) changes it per token:

    - ``"none"``: l_t.
    - ``"clip_cov"`` (Cui et al. 2025, Eq. 12): l_t for unselected tokens; 0 (value and gradient)
      for ``selected`` ones. The divisor still counts them, as in the reference code.
    - ``"kl_cov"`` (Eq. 13): selected tokens use -A_t r_t + kl_cov_coef * |logp_t - logp_old,t|
      (unclipped; r_t is the clamped ratio of ``clipped_surrogate``, the |.| term is not
      clamped), the others keep l_t. On a fully on-policy step (logp == logp_old exactly) the
      KL term is 0 in value, and its gradient is 0 as well (d|x|/dx at 0 is taken as 0), so the
      selected tokens get -A_t grad r_t: exactly the clipped surrogate's gradient, since r = 1 lies
      inside the clip range. KL-Cov therefore acts only from the second update on the same
      rollout (ppo epochs > 1 or several optimiser steps per generation): there it removes the
      selected tokens' clipping and pulls them back to the old policy. (The reference code also
      leaves the unselected tokens unclipped; we keep their clipped surrogate, so ratio 0 is
      exactly the plain loss.)
    - ``"steer"``: lambda_t * l_t with STEER weights (``steer_weights``); pass ``token_weights``
      computed once on the whole batch, else they are computed from this call's tensors
      (needs ``old_entropy``).

    Args:
        log_probs: (B, T) current log-probs, with grad.
        old_log_probs: (B, T) rollout log-probs (detached).
        advantages: (B,), (B, 1) or (B, T).
        mask: (B, T) valid tokens, bool or 0/1.
        settings: the :class:`LossSettings` (default ``LossSettings()``). Passing its fields as
            keywords instead still works, with a ``DeprecationWarning``.
        selected: (B, T) bool from ``select_tokens`` (required for clip_cov / kl_cov; ignored
            otherwise).
        old_entropy: (B, T) rollout token entropy, for STEER without ``token_weights``.
        entropy: (B, T) current token entropy with grad, for the bonus (and the metric).
        entropy_coef: bonus coefficient (float or 0-dim tensor, e.g. a controller's value;
            detached), default 0.
        ref_log_probs: (B, T) reference-model log-probs for the k3 KL term.
        normalizer: passed to ``aggregate`` (the global-batch divisor, for micro-batches).
        entropy_normalizer: the bonus's divisor when ``entropy_aggregation`` differs from
            ``aggregation`` (else ``normalizer`` is used).
        token_weights: (B, T) precomputed STEER weights.
        sampling_weights: (B, T) or (B, 1) importance weights of samples drawn by another
            engine than the trainer (vLLM), from :func:`sampler_importance_weights`; every
            token's policy term is multiplied by its weight (the KL term is not), as in TRL's
            ``vllm_importance_sampling_correction``.
        entropy_mask: (B, T) bool from :func:`high_entropy_mask`: the policy term of other tokens
            is zeroed (the KL term and the divisor are not), as TRL's ``top_entropy_quantile``.

    Returns:
        ``TokenLoss``: ``loss`` and metrics "policy_loss", "clip_fraction" (+ "_low", "_high"),
        "dual_clip_fraction", "touched_fraction", "ratio_mean", "ratio_max", "kl",
        "cov_mean", "cov_max", "weight_min", "weight_mean", "weight_max" and, if ``entropy`` is
        given, "entropy" (token mean) and "entropy_bonus" (the aggregated bonus term).
    """
    s = _settings_from(settings, legacy)
    _check_2d("log_probs", log_probs)
    shape = log_probs.shape
    _check_2d("old_log_probs", old_log_probs, shape)
    m = _bool_mask(mask, shape)
    a = _expand_advantages(advantages, shape).to(log_probs.dtype)
    if s.check_finite:
        _check_no_nan("log_probs", log_probs, m)
        _check_no_nan("old_log_probs", old_log_probs, m)
        _check_finite_advantages(a, m)
    old = old_log_probs.detach()
    a = torch.where(m, a, 0.0)  # (B, T); padding's advantage, even inf or NaN, never reaches a grad

    if s.surrogate == "clip" and s.importance_sampling_level == "token":
        per_token, ratio, flags = clipped_surrogate(
            log_probs, old, a, clip_low=s.clip_low, clip_high=s.clip_high, dual_clip=s.dual_clip,
            mask=m)
    else:
        from maxent.entropy.surrogates import surrogate_loss

        per_token, ratio, flags = surrogate_loss(
            log_probs, old, a, m, surrogate=s.surrogate, level=s.importance_sampling_level,
            clip_low=s.clip_low, clip_high=s.clip_high, delta=s.dual_clip,
            sapo_temperature_pos=s.sapo_temperature_pos, sapo_temperature_neg=s.sapo_temperature_neg)
    per_token, touched, weights = _intervene(s, per_token, ratio, log_probs, old, a, m, selected,
                                             old_entropy, token_weights)
    if entropy_mask is not None:
        _check_2d("entropy_mask", entropy_mask, shape)
        per_token = per_token * (entropy_mask.to(torch.bool) & m).to(per_token.dtype)
    # TRL weighs the policy term alone and adds the KL term after, unweighted.
    per_token = _weigh_samples(per_token, sampling_weights)
    per_token, kl = _kl_term(s, per_token, ratio, log_probs, ref_log_probs, m)

    loss = aggregate(per_token, m, s.aggregation, normalizer=normalizer, max_length=s.max_length)
    metrics: dict[str, Tensor] = {"kl": kl, "policy_loss": loss.detach()}
    coef, bonus, entropy_metrics = _entropy_bonus(s, entropy, entropy_coef, m, normalizer,
                                                  entropy_normalizer)
    if bonus is not None:
        loss = loss - coef * bonus
    metrics.update(entropy_metrics)
    metrics.update(_diagnostics(ratio, flags, touched, weights, old, a, m))
    return TokenLoss(loss=loss, metrics=metrics)
