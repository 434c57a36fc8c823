"""Adam's parameter update as plain tensor ops on a ``torch.optim.Adam``'s own state.

A whole training step (losses, gradients from ``torch.func``, optimiser, target update) compiled
as one graph is the fastest update on CPU and GPU alike, but ``torch.optim.Adam.step`` does not
belong in such a graph: it reads ``.grad`` fields that ``torch.func`` never fills. These functions
take the gradients as a mapping and update the optimizer's ``exp_avg``/``exp_avg_sq``/``step``
tensors in place, so the same optimizer object keeps working eagerly, in checkpoints and on
resume. The arithmetic is torch's (Kingma & Ba 2015, Alg. 1, bias-corrected); the bias
corrections are computed in float32 through expm1, as accurate as torch's float64 ones to 1e-7.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["adam_hyperparameters", "adam_state_tensors", "adam_step_", "adam_update_",
           "init_adam_state"]


def init_adam_state(optimizer: torch.optim.Adam) -> None:
    """Create every parameter's state now, in the format ``Adam.step`` would create lazily.

    Needed before :func:`adam_step_` runs first, and harmless for ``Adam.step`` (it only fills
    empty state). The step counter is a float32 tensor on the parameter's device, as for the
    fused and capturable implementations.
    """
    _check_supported(optimizer)
    for group in optimizer.param_groups:
        for p in group["params"]:
            if optimizer.state[p]:
                continue
            optimizer.state[p] = {
                "step": torch.zeros((), dtype=torch.float32, device=p.device),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }


def adam_step_(optimizer: torch.optim.Adam, grads: Mapping[Tensor, Tensor] | list[Tensor]) -> None:
    """One Adam step, in place, with gradients given explicitly instead of read from ``.grad``.

    Args:
        optimizer: a ``torch.optim.Adam`` without weight decay, amsgrad or maximize, whose state
            :func:`init_adam_state` has created.
        grads: one gradient per parameter, in the order of ``optimizer.param_groups``' params
            (a list), or keyed by the parameter tensor itself.
    """
    if not isinstance(grads, Mapping):
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if len(grads) != len(params):
            raise ValueError(f"adam_step_ got {len(grads)} gradients for {len(params)} parameters")
        grads = dict(zip(params, grads))
    for group, (exp_avg, exp_avg_sq, steps) in zip(optimizer.param_groups, adam_state_tensors(optimizer)):
        adam_update_(group["params"], [grads[p] for p in group["params"]], exp_avg, exp_avg_sq, steps,
                     **adam_hyperparameters(group))


def adam_state_tensors(optimizer: torch.optim.Adam) -> list[tuple[list[Tensor], list[Tensor], list[Tensor]]]:
    """Per param group: the optimizer's own ``(exp_avg, exp_avg_sq, step)`` tensors, in the
    group's parameter order (what :func:`adam_update_` updates in place)."""
    out = []
    for group in optimizer.param_groups:
        states = [optimizer.state[p] for p in group["params"]]
        out.append(([s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                    [s["step"] for s in states]))
    return out


def adam_hyperparameters(group: dict) -> dict[str, float]:
    """A param group's ``lr``, ``beta1``, ``beta2`` and ``eps`` as plain floats."""
    beta1, beta2 = group["betas"]
    return {"lr": float(group["lr"]), "beta1": float(beta1), "beta2": float(beta2),
            "eps": float(group["eps"])}


def adam_update_(params: list[Tensor], grads: list[Tensor], exp_avg: list[Tensor],
                 exp_avg_sq: list[Tensor], steps: list[Tensor], *, lr: float, beta1: float,
                 beta2: float, eps: float) -> None:
    """Adam's update of one parameter group as a pure function of tensors, in place on
    ``params``, ``exp_avg``, ``exp_avg_sq`` and ``steps`` (one shared count per group, kept in
    each parameter's ``step`` tensor as ``torch.optim.Adam`` does). Reads nothing but its
    arguments, so a compiled caller can trace it on copies and run it on the real tensors."""
    with torch.no_grad():
        g = [gi.to(p.dtype) for gi, p in zip(grads, params)]
        torch._foreach_add_(steps, 1)
        step = steps[0]
        # 1 - beta^t as -expm1(t log beta): float32-accurate (1 - 0.999f ** t loses ~1e-5) and no
        # float64, which MPS lacks.
        bias_correction1 = -torch.expm1(step * math.log(beta1)) if beta1 > 0 else torch.ones_like(step)
        bias_correction2_sqrt = (-torch.expm1(step * math.log(beta2))).sqrt() if beta2 > 0 \
            else torch.ones_like(step)
        step_size = lr / bias_correction1
        torch._foreach_lerp_(exp_avg, g, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, g, g, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        updates = torch._foreach_div(exp_avg, denom)
        torch._foreach_mul_(updates, step_size)
        torch._foreach_sub_(params, updates)


def _check_supported(optimizer: torch.optim.Optimizer) -> None:
    if not isinstance(optimizer, torch.optim.Adam) or isinstance(optimizer, torch.optim.AdamW):
        raise TypeError(f"adam_step_ needs a torch.optim.Adam, got {type(optimizer).__name__}")
    for group in optimizer.param_groups:
        unsupported = [k for k in ("amsgrad", "maximize") if group.get(k)]
        if group.get("weight_decay"):
            unsupported.append("weight_decay")
        if unsupported:
            raise ValueError(f"adam_step_ implements plain Adam; this optimizer sets {unsupported}")
