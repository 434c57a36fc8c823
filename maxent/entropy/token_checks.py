"""Input checks and the numeric guard shared by the token-level losses (:mod:`.token`) and the
sampler mismatch correction (:mod:`.sampler_correction`): one-line errors for wrong shapes, dtypes,
names and non-finite values, and the log-ratio clamp that keeps ``exp`` finite."""

from __future__ import annotations

import torch
from torch import Tensor

# Every log-ratio that goes through exp (log pi - log pi_old in the PPO ratio, log pi_ref - log pi
# in the k3 KL) is clamped to [-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP] first, as verl does
# (core_algos.compute_policy_loss and kl_penalty "low_var_kl" clamp to [-20, 20]): exp(20) ~ 4.9e8
# is far outside any clip range, while exp of a float32 log-ratio above ~88.7 is inf. Log-ratios
# in the range are unchanged, so the loss equals TRL's (which does not clamp) on them; outside it
# the value is held at the bound and the gradient through exp is 0. (verl also clamps the k3
# value to [-10, 10]; we do not, as that changes it from |log-ratio| ~ 2.6 on, unlike TRL.)
_LOG_RATIO_CLAMP = 20.0


def _check_name(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid names are {', '.join(map(repr, valid))}")
    return value


def _check_2d(name: str, t: Tensor, shape: torch.Size | None = None) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, T), got {type(t).__name__}")
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (B, T), got shape {tuple(t.shape)}")
    if shape is not None and t.shape != shape:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)} but log_probs has shape {tuple(shape)}; "
            "all per-token tensors (log-probs, mask, entropies) must share one (B, T) shape"
        )


def _bool_mask(mask: Tensor, shape: torch.Size) -> Tensor:
    _check_2d("mask", mask, shape)
    return mask if mask.dtype == torch.bool else mask != 0


def _expand_advantages(advantages: Tensor, shape: torch.Size) -> Tensor:
    """(B,), (B, 1) or (B, T) advantages -> (B, T), detached."""
    if not isinstance(advantages, Tensor):
        raise TypeError(f"advantages must be a torch.Tensor, got {type(advantages).__name__}")
    a = advantages.detach()
    if a.ndim == 1:
        a = a.unsqueeze(1)
    if a.ndim != 2 or a.shape[0] != shape[0] or a.shape[1] not in (1, shape[1]):
        raise ValueError(
            f"advantages must have shape (B,), (B, 1) or (B, T) = ({shape[0]}, {shape[1]}), "
            f"got {tuple(advantages.shape)}"
        )
    return a.expand(shape)


def _check_no_nan(name: str, t: Tensor, mask: Tensor) -> None:
    # One host sync per tensor: a NaN here silently turns the whole loss into NaN otherwise.
    if bool(torch.isnan(t.detach()).logical_and(mask).any()):
        raise ValueError(
            f"{name} contains NaN at valid (mask != 0) tokens; check the forward pass "
            "(e.g. fp16 overflow) or mask those tokens out"
        )


def _check_finite_advantages(a: Tensor, mask: Tensor) -> None:
    # One host sync: an inf advantage makes the loss +-inf (and its gradient inf or NaN), a NaN
    # one makes it NaN; neither is an error torch would raise.
    bad = ~torch.isfinite(a.detach()) & mask
    if bool(bad.any()):
        b, t = (int(i) for i in torch.nonzero(bad)[0])
        value = float(a[b, t])
        raise ValueError(
            f"advantages must be finite at valid (mask != 0) tokens, got {value} at "
            f"(sequence {b}, token {t}) (in {a.dtype}); an inf or NaN reward, or a division by a "
            "zero reward std without eps, gives this: replace non-finite rewards before computing "
            "advantages, normalise with (r - mean) / (std + eps), or mask those tokens out"
        )
