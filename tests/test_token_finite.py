"""Tests that maxent/entropy/token.py's policy loss stays finite, in value and gradient, on extreme
log-ratios and advantages, on padding that holds anything, and refuses non-finite advantages."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maxent.entropy.token import (
    AGGREGATIONS,
    INTERVENTIONS,
    LossSettings,
    clipped_surrogate,
    k3_kl,
    policy_loss,
)

HUGE = 1e4


def _inputs(log_ratio, mask, advantages, dtype=torch.float32):
    """Leaf log-probs with the given log-ratios to old log-probs of -1."""
    old = torch.full(log_ratio.shape, -1.0, dtype=dtype)
    lp = (old + log_ratio.to(dtype)).requires_grad_()
    return lp, old, advantages.to(dtype), mask


def _loss_and_grad(lp, *args, **kwargs):
    out = policy_loss(lp, *args, **kwargs)
    (grad,) = torch.autograd.grad(out.loss, lp)
    return out, grad


def _kwargs(intervention, mask, **loss_settings):
    selected = torch.ones(mask.shape, dtype=torch.bool)  # every token selected where it matters
    return {"settings": LossSettings(intervention=intervention, **loss_settings),
            "selected": selected, "old_entropy": torch.full(mask.shape, 0.7)}


@pytest.mark.parametrize("intervention", INTERVENTIONS)
@pytest.mark.parametrize("padding", [HUGE, -HUGE, math.inf, -math.inf, math.nan])
def test_masked_token_with_an_overflowing_log_ratio_adds_nothing(intervention, padding):
    """A masked (padding) token with log pi - log pi_old = 1e4 (exp overflows even in float64)
    used to give a finite loss and a NaN gradient; now it adds exactly 0 to both."""
    mask = torch.tensor([[True, True, False], [True, False, False]])
    log_ratio = torch.tensor([[0.1, -0.2, padding], [0.05, padding, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    kw = _kwargs(intervention, mask, kl_coef=0.1)
    ref = torch.full((2, 3), -1.0)
    for dtype in (torch.float32, torch.float64):
        lp, old, a, m = _inputs(log_ratio, mask, adv, dtype)
        out, grad = _loss_and_grad(lp, old, a, m, ref_log_probs=ref.to(dtype), **kw)
        assert torch.isfinite(out.loss) and torch.isfinite(grad).all(), (dtype, grad)
        assert (grad[~mask] == 0).all()
        # The same as with harmless padding.
        clean = torch.where(mask, log_ratio, torch.zeros(()))
        lp2, old2, a2, m2 = _inputs(clean, mask, adv, dtype)
        out2, grad2 = _loss_and_grad(lp2, old2, a2, m2, ref_log_probs=ref.to(dtype), **kw)
        torch.testing.assert_close(out.loss, out2.loss)
        torch.testing.assert_close(grad, grad2)
        for name, value in out.metrics.items():
            assert torch.isfinite(value).all(), name


def test_masked_padding_of_the_reference_and_the_entropy_adds_nothing():
    mask = torch.tensor([[True, False]])
    lp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, HUGE]])  # k3: exp(ref - logp) overflows at the padding
    ent = torch.tensor([[0.5, math.inf]], requires_grad=True)
    out = policy_loss(lp, lp.detach(), torch.tensor([1.0]), mask,
                      LossSettings(kl_coef=0.5, kl_importance_correction=True), ref_log_probs=ref,
                      entropy=ent, entropy_coef=0.1)
    g_lp, g_ent = torch.autograd.grad(out.loss, (lp, ent))
    assert torch.isfinite(out.loss) and torch.isfinite(g_lp).all() and torch.isfinite(g_ent).all()
    assert g_lp[0, 1] == 0 and g_ent[0, 1] == 0
    assert torch.isfinite(out.metrics["kl"]) and torch.isfinite(out.metrics["entropy"])
    kl = k3_kl(lp, ref, mask)
    assert kl[0, 1] == 0 and torch.isfinite(kl).all()


def test_unmasked_overflowing_log_ratios_are_clamped_as_in_verl():
    """At a valid token the log-ratio is clamped to [-20, 20] before exp: the value is held at
    the bound and its gradient through exp is 0, instead of inf and NaN."""
    lp = torch.tensor([[-1.0 + HUGE, -1.0 - HUGE, -1.0 + 0.1]], requires_grad=True)
    old = torch.full((1, 3), -1.0)
    loss, ratio, _ = clipped_surrogate(lp, old, torch.tensor([[-1.0, -1.0, -1.0]]))
    torch.testing.assert_close(ratio.detach(), torch.tensor([[math.exp(20), math.exp(-20),
                                                              math.exp(0.1)]]))
    (grad,) = torch.autograd.grad(loss.sum(), lp)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert grad[0, 0] == 0 and grad[0, 1] == 0 and grad[0, 2] != 0
    ref = torch.tensor([[-1.0, -1.0 + HUGE, -1.0 - HUGE]])
    kl = k3_kl(torch.full((1, 3), -1.0), ref)
    torch.testing.assert_close(kl, torch.tensor([[0.0, math.exp(20) - 21, math.exp(-20) + 19]]))


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_advantages_at_valid_tokens_are_refused(bad):
    lp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    for adv in (torch.tensor([1.0, bad]), torch.tensor([[1.0, 1.0, 1.0], [1.0, bad, 1.0]])):
        with pytest.raises(ValueError, match="advantages must be finite at valid") as info:
            policy_loss(lp, lp.detach(), adv, mask)
        assert "sequence 1, token" in str(info.value) and "std + eps" in str(info.value)
    # At a masked token anything is allowed, and it reaches neither the loss nor the gradient.
    adv = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, bad]])
    out, grad = _loss_and_grad(lp, lp.detach(), adv, mask)
    assert torch.isfinite(out.loss) and torch.isfinite(grad).all() and grad[1, 2] == 0


# --------------------------------------------------------------------------- properties

big = st.one_of(st.sampled_from([-HUGE, -200.0, -88.8, -20.5, 0.0, 20.5, 88.8, 200.0, HUGE]),
                st.floats(-HUGE, HUGE))
advantage = st.one_of(st.sampled_from([-1e10, -1.0, 0.0, 1.0, 1e10]), st.floats(-1e10, 1e10))


@st.composite
def loss_inputs(draw):
    b, t = draw(st.integers(1, 3)), draw(st.integers(1, 5))

    def grid(elements):
        return torch.tensor(draw(st.lists(elements, min_size=b * t, max_size=b * t)),
                            dtype=torch.float64).view(b, t)
    return {
        "log_ratio": grid(big),
        "ref_offset": grid(big),
        "old": grid(st.floats(-30.0, 0.0)),
        "mask": grid(st.booleans()).bool(),
        "selected": grid(st.booleans()).bool(),
        "entropy": grid(st.floats(0.0, 10.0)),
        "advantages": torch.tensor(draw(st.lists(advantage, min_size=b, max_size=b)),
                                   dtype=torch.float64),
        "intervention": draw(st.sampled_from(INTERVENTIONS)),
        "aggregation": draw(st.sampled_from(AGGREGATIONS)),
        "dual_clip": draw(st.sampled_from([None, 3.0])),
        "kl_coef": draw(st.sampled_from([0.0, 0.04])),
        "kl_importance_correction": draw(st.booleans()),
        "entropy_coef": draw(st.sampled_from([0.0, 0.01])),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
    }


@settings(max_examples=200, deadline=None)
@given(loss_inputs())
def test_loss_and_gradient_are_finite_for_huge_log_ratios_and_advantages(x):
    dtype, mask = x["dtype"], x["mask"]
    old = x["old"].to(dtype)
    lp = (old + x["log_ratio"].to(dtype)).requires_grad_()
    ent = torch.where(mask, x["entropy"], math.inf).to(dtype).requires_grad_()  # inf padding
    loss_settings = LossSettings(
        intervention=x["intervention"], aggregation=x["aggregation"], dual_clip=x["dual_clip"],
        kl_coef=x["kl_coef"], kl_importance_correction=x["kl_importance_correction"])
    out = policy_loss(
        lp, old, x["advantages"].to(dtype), mask, loss_settings, selected=x["selected"],
        old_entropy=x["entropy"].to(dtype), entropy=ent, entropy_coef=x["entropy_coef"],
        ref_log_probs=(lp.detach() + x["ref_offset"].to(dtype)))
    g_lp, g_ent = torch.autograd.grad(out.loss, (lp, ent), allow_unused=True,
                                      materialize_grads=True)  # no bonus: entropy is unused
    assert torch.isfinite(out.loss), out.loss
    assert torch.isfinite(g_lp).all(), g_lp
    assert torch.isfinite(g_ent).all(), g_ent
    assert (g_lp[~mask] == 0).all() and (g_ent[~mask] == 0).all()
    for name, value in out.metrics.items():
        assert torch.isfinite(value).all(), name
