"""Soft Bellman target, critic and actor losses, and the Polyak target update of Soft Actor-Critic
(Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", Sec. 4, Eqs. 3, 5, 7).

Pure tensor functions called every gradient step: no host syncs, few ops, and shape checks that
cost only Python time (a (batch, 1) against (batch,) mix would silently broadcast to a matrix).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["polyak_update", "soft_bellman_target", "soft_policy_loss", "soft_q_loss"]


def _same_shape(names: tuple[str, ...], tensors: tuple[Tensor, ...]) -> None:
    shape = tensors[0].shape
    if any(t.shape != shape for t in tensors[1:]):
        got = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors))
        raise ValueError(
            f"{', '.join(names)} must have the same shape, got {got}; squeeze trailing size-1 "
            "dims (e.g. q.squeeze(-1)) so they do not broadcast into a (batch, batch) matrix"
        )


def soft_bellman_target(
    reward: Tensor,
    terminated: Tensor,
    next_q: Tensor,
    next_log_prob: Tensor,
    alpha: Tensor | float,
    gamma: float,
) -> Tensor:
    """Soft Bellman backup y = r + gamma (1 - d) (Q_target(s', a') - alpha log pi(a'|s')).

    SAC paper Eqs. 3 and 5, with a' ~ pi(.|s') and Q_target usually the minimum over the target
    critics. ``terminated`` (d) must flag true terminations only: an episode cut by a time limit
    (truncation) still bootstraps, so passing ``terminated | truncated`` biases the target.
    No gradient is needed here; call it under ``torch.no_grad()``.

    Args:
        reward: r, shape (batch,).
        terminated: d, float or bool tensor, shape (batch,).
        next_q: Q_target(s', a'), shape (batch,).
        next_log_prob: log pi(a'|s'), shape (batch,).
        alpha: temperature, a 0-dim tensor (e.g. ``controller.value``) or a float.
        gamma: discount in [0, 1].

    Returns:
        The target y, shape (batch,).
    """
    _same_shape(
        ("reward", "terminated", "next_q", "next_log_prob"),
        (reward, terminated, next_q, next_log_prob),
    )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma} (SAC's default is 0.99)")
    if isinstance(alpha, Tensor):
        soft_v = torch.addcmul(next_q, next_log_prob, alpha, value=-1.0)
    else:
        soft_v = torch.add(next_q, next_log_prob, alpha=-alpha)
    not_done = ~terminated if terminated.dtype == torch.bool else 1.0 - terminated
    return torch.addcmul(reward, not_done, soft_v, value=gamma)


def soft_q_loss(q_values: Tensor, target: Tensor) -> Tensor:
    """Critic loss 0.5 * sum_j mean_batch (Q_j(s, a) - y)^2 over the critics (SAC Eq. 5).

    Stable-Baselines3's convention (the 0.5 and the sum over critics, not their mean). ``target``
    is treated as a constant (detached).

    Args:
        q_values: Q_j(s, a) for every critic, shape (n_critics, batch).
        target: y from ``soft_bellman_target``, shape (batch,).

    Returns:
        0-dim loss.
    """
    if q_values.ndim != 2 or target.shape != q_values.shape[1:]:
        raise ValueError(
            f"q_values must be (n_critics, batch) and target (batch,), got q_values "
            f"{tuple(q_values.shape)} and target {tuple(target.shape)}; stack the critics with "
            "torch.stack([q1, q2]) and squeeze trailing size-1 dims"
        )
    # The mean over all n * batch entries times n / 2 equals 0.5 * sum_j mean_j.
    mse = F.mse_loss(q_values, target.detach().expand_as(q_values))
    return mse * (0.5 * q_values.shape[0])


def soft_policy_loss(log_prob: Tensor, q_value: Tensor, alpha: Tensor | float) -> Tensor:
    """Actor loss J_pi = mean(alpha * log pi(a|s) - Q(s, a)), a ~ pi reparameterised (SAC Eq. 7).

    Args:
        log_prob: log pi(a|s) of the reparameterised actions, shape (batch,).
        q_value: Q(s, a) at those actions (usually the minimum over critics), shape (batch,).
        alpha: temperature, a detached 0-dim tensor or a float.

    Returns:
        0-dim loss.
    """
    _same_shape(("log_prob", "q_value"), (log_prob, q_value))
    return (alpha * log_prob - q_value).mean()


def polyak_update(target_params: Iterable[Tensor], params: Iterable[Tensor], tau: float) -> None:
    """In place: theta_target <- (1 - tau) theta_target + tau theta, for each pair (SAC Alg. 1).

    One fused ``torch._foreach_lerp_`` call under ``torch.no_grad``; tau = 1 copies exactly.

    Args:
        target_params: target tensors, updated in place (e.g. ``target_net.parameters()``).
        params: source tensors, same order, shapes and dtypes.
        tau: interpolation factor in (0, 1] (SAC's default is 0.005).
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau} (SAC's default is 0.005)")
    target_params = list(target_params)
    params = list(params)
    if len(target_params) != len(params):
        raise ValueError(
            f"target_params and params must pair up, got {len(target_params)} target and "
            f"{len(params)} source tensors; pass the same network's parameters in the same order"
        )
    if not params:
        return
    with torch.no_grad():
        torch._foreach_lerp_(target_params, params, tau)
