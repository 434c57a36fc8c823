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

__all__ = ["adam_step_", "init_adam_state"]


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
    with torch.no_grad():
        for group in optimizer.param_groups:
            beta1, beta2 = group["betas"]
            params = group["params"]
            states = [optimizer.state[p] for p in params]
            g = [grads[p].to(p.dtype) for p in params]
            exp_avg = [s["exp_avg"] for s in states]
            exp_avg_sq = [s["exp_avg_sq"] for s in states]
            for s in states:
                s["step"].add_(1)
            # All of a group's parameters share one step count. 1 - beta^t as -expm1(t log beta):
            # float32-accurate (1 - 0.999f ** t loses ~1e-5) and no float64, which MPS lacks.
            step = states[0]["step"]
            bias_correction1 = -torch.expm1(step * math.log(beta1)) if beta1 > 0 else torch.ones_like(step)
            bias_correction2_sqrt = (-torch.expm1(step * math.log(beta2))).sqrt() if beta2 > 0 \
                else torch.ones_like(step)
            step_size = group["lr"] / bias_correction1
            torch._foreach_lerp_(exp_avg, g, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, g, g, value=1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, bias_correction2_sqrt)
            torch._foreach_add_(denom, group["eps"])
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
