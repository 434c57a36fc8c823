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

__all__ = ["discrete_soft_policy_loss", "discrete_soft_value", "polyak_update", "quantile_huber_loss",
           "soft_bellman_target", "soft_policy_loss", "soft_q_loss", "truncated_quantile_target"]


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


def truncated_quantile_target(
    reward: Tensor,
    terminated: Tensor,
    next_quantiles: Tensor,
    next_log_prob: Tensor,
    alpha: Tensor | float,
    gamma: float,
    drop_per_critic: int,
) -> Tensor:
    """TQC's soft target atoms (Kuznetsov et al. 2020, Eq. 10): pool the N critics' M quantiles of
    Z(s', a'), drop the largest ``drop_per_critic * N``, and back up each kept atom
    y_k = r + gamma (1 - d) (z_(k) - alpha log pi(a'|s')). Call under ``torch.no_grad()``.

    Args:
        reward, terminated, next_log_prob: shape (batch,), as in :func:`soft_bellman_target`.
        next_quantiles: the target critics' quantiles at (s', a'), shape (N, batch, M).
        drop_per_critic: d, 0 <= d < M (TQC's MuJoCo default is 2 of 25).

    Returns:
        The target atoms, shape (batch, N * (M - d)), in no particular order.
    """
    if next_quantiles.ndim != 3:
        raise ValueError(f"next_quantiles must be (n_critics, batch, n_quantiles), got "
                         f"{tuple(next_quantiles.shape)}")
    n, batch, m = next_quantiles.shape
    if not 0 <= drop_per_critic < m:
        raise ValueError(f"drop_per_critic must be in [0, {m}) for {m} quantiles, got {drop_per_critic}")
    _same_shape(("reward", "terminated", "next_log_prob"), (reward, terminated, next_log_prob))
    if reward.shape != (batch,):
        raise ValueError(f"reward must be (batch,) = ({batch},), got {tuple(reward.shape)}")
    pooled = next_quantiles.permute(1, 0, 2).reshape(batch, n * m)
    # The loss averages over the atoms, so their order is free: an unsorted smallest-k selection is
    # about 4x cheaper than a full sort on CPU.
    kept = pooled.topk(n * (m - drop_per_critic), dim=-1, largest=False, sorted=False).values
    soft = kept - (alpha * next_log_prob).unsqueeze(-1)
    not_done = (~terminated if terminated.dtype == torch.bool else 1.0 - terminated).to(soft.dtype)
    return reward.unsqueeze(-1) + gamma * not_done.unsqueeze(-1) * soft


class _QuantileHuber(torch.autograd.Function):
    """The loss and its gradient in one pass over the (quantile, atom) pairs. Autograd would keep
    pairwise tensors of N x batch x M x K floats for the backward (megabytes, read back from memory);
    here only the (N, batch, M) gradient is kept."""

    @staticmethod
    def forward(quantiles: Tensor, target: Tensor, kappa: float) -> tuple[Tensor, Tensor]:
        m = quantiles.shape[-1]
        delta = target[None, :, None, :] - quantiles[..., None]              # (N, batch, M, K)
        tau = ((torch.arange(m, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / m)[:, None]
        weight = torch.where(delta < 0, 1 - tau, tau)
        abs_delta = delta.abs()
        huber = torch.where(abs_delta <= kappa, 0.5 * delta * delta, kappa * (abs_delta - 0.5 * kappa))
        count = delta.numel() * kappa
        # Both reductions run over the atoms, so the compiler fuses them into one loop.
        loss = (weight * huber).sum(-1).sum() / count
        grad = (weight * delta.clamp(-kappa, kappa)).sum(-1) / -count
        return loss, grad

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        # A separate setup_context lets functorch transforms (the fused update's grad) run it.
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(grad)

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _unused: Tensor) -> tuple[Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return grad_loss * grad, None, None


def quantile_huber_loss(quantiles: Tensor, target: Tensor, kappa: float = 1.0) -> Tensor:
    """Quantile Huber loss of QR-DQN/TQC (Dabney et al. 2018, Eq. 10): for every critic's quantile
    theta_m at level tau_m = (m + 1/2) / M and every target atom y_k,
    |tau_m - 1{y_k < theta_m}| * Huber_kappa(y_k - theta_m) / kappa, averaged over all of them
    (as the TQC authors' code does). ``target`` is treated as a constant; the gradient reaches
    ``quantiles`` only (first order, as every critic update needs).

    Args:
        quantiles: (N, batch, M).
        target: atoms, (batch, K).
    """
    if quantiles.ndim != 3 or target.ndim != 2 or target.shape[0] != quantiles.shape[1]:
        raise ValueError(f"quantiles must be (n_critics, batch, n_quantiles) and target (batch, atoms), "
                         f"got {tuple(quantiles.shape)} and {tuple(target.shape)}")
    if kappa <= 0:
        raise ValueError(f"kappa must be positive, got {kappa} (QR-DQN and TQC use 1.0)")
    return _QuantileHuber.apply(quantiles, target.detach(), float(kappa))[0]


def discrete_soft_value(probs: Tensor, log_probs: Tensor, q_values: Tensor, alpha: Tensor | float) -> Tensor:
    """Soft state value with the exact expectation over a finite action set (Christodoulou 2019,
    Eq. 10): V(s) = sum_a pi(a|s) (Q(s, a) - alpha log pi(a|s)).

    Args:
        probs, log_probs: pi(.|s) and log pi(.|s), shape (batch, n_actions).
        q_values: Q(s, .), shape (batch, n_actions).

    Returns:
        V(s), shape (batch,).
    """
    _same_shape(("probs", "log_probs", "q_values"), (probs, log_probs, q_values))
    return (probs * (q_values - alpha * log_probs)).sum(-1)


def discrete_soft_policy_loss(probs: Tensor, log_probs: Tensor, q_values: Tensor,
                              alpha: Tensor | float) -> Tensor:
    """Policy loss of discrete SAC (Christodoulou 2019, Eq. 12):
    mean_batch sum_a pi(a|s) (alpha log pi(a|s) - Q(s, a)), exact over the actions, so no
    reparameterisation is needed; ``q_values`` is treated as a constant.

    Args:
        probs, log_probs: pi(.|s) and log pi(.|s), shape (batch, n_actions).
        q_values: Q(s, .) (e.g. the minimum over critics), shape (batch, n_actions).
    """
    _same_shape(("probs", "log_probs", "q_values"), (probs, log_probs, q_values))
    return (probs * (alpha * log_probs - q_values.detach())).sum(-1).mean()
