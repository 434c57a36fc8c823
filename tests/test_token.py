"""Tests for maxent/entropy/token.py: the clipped surrogate, aggregation modes, entropy bonus, k3 KL,
Clip-Cov / KL-Cov token selection and STEER weights, against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from maxent.entropy.token import (
    AGGREGATIONS,
    INTERVENTIONS,
    LossSettings,
    aggregate,
    k3_kl,
    policy_loss,
    select_tokens,
    steer_omega,
    steer_weights,
    token_covariance,
)

# ----------------------------------------------------------------------------- the 2x3 example
# old log-prob log 0.5 everywhere; ratios r = exp(logp - old) chosen by hand:
#   row 0, A = +1: r = 1.0, 1.5, 0.5      row 1, A = -2: r = 1.1, 0.7, 2.0 (last token masked)
# clip range [1 - 0.2, 1 + 0.28] = [0.8, 1.28]; l = max(-A r, -A clip(r)):
#   row 0: -1.0 | max(-1.5, -1.28) = -1.28 (clipped) | max(-0.5, -0.8) = -0.5
#   row 1:  2.2 | max( 1.4,  1.6)  =  1.6  (clipped) | masked
# valid sum = -1 - 1.28 - 0.5 + 2.2 + 1.6 = 1.02 over 5 tokens.
RATIOS = torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 2.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
OLD = torch.full((2, 3), math.log(0.5), dtype=torch.float64)


def example():
    lp = (OLD + RATIOS.log()).clone().requires_grad_()
    return lp, OLD.clone(), ADV.clone(), MASK.clone()


def grad_of(out, lp):
    (g,) = torch.autograd.grad(out.loss, lp)
    return g


def test_hand_computed_surrogate_in_every_aggregation():
    expected = {
        "token-mean": 1.02 / 5,
        "seq-mean-token-mean": ((-1 - 1.28 - 0.5) / 3 + (2.2 + 1.6) / 2) / 2,  # 0.486667
        "seq-mean-token-sum": ((-1 - 1.28 - 0.5) + (2.2 + 1.6)) / 2,  # 0.51
        "seq-mean-token-sum-norm": 1.02 / (2 * 3),  # Dr.GRPO, L defaults to T = 3
    }
    for mode, value in expected.items():
        lp, old, adv, mask = example()
        out = policy_loss(lp, old, adv, mask, LossSettings(aggregation=mode))
        assert out.loss.item() == pytest.approx(value, abs=1e-12), mode
    lp, old, adv, mask = example()
    out = policy_loss(lp, old, adv, mask,
                      LossSettings(aggregation="seq-mean-token-sum-norm", max_length=4))
    assert out.loss.item() == pytest.approx(1.02 / 8, abs=1e-12)
    # The four modes give four different numbers here, as documented.
    assert len({round(v, 6) for v in expected.values()}) == 4


def test_hand_computed_gradient_and_clip_metrics():
    lp, old, adv, mask = example()
    out = policy_loss(lp, old, adv, mask, LossSettings(aggregation="token-mean"))
    # d l / d logp = -A r where unclipped, 0 where clipped or masked; token-mean divides by 5.
    expected = torch.tensor([[-1.0, 0.0, -0.5], [2.2, 0.0, 0.0]], dtype=torch.float64) / 5
    torch.testing.assert_close(grad_of(out, lp), expected)
    m = out.metrics
    assert m["clip_fraction"].item() == pytest.approx(2 / 5)
    assert m["clip_fraction_low"].item() == pytest.approx(1 / 5)
    assert m["clip_fraction_high"].item() == pytest.approx(1 / 5)
    assert m["ratio_mean"].item() == pytest.approx((1 + 1.5 + 0.5 + 1.1 + 0.7) / 5)
    assert m["touched_fraction"].item() == 0.0 and m["kl"].item() == 0.0


def test_symmetric_clip_differs_from_clip_higher():
    lp, old, adv, mask = example()
    out = policy_loss(lp, old, adv, mask, LossSettings(clip_low=0.2, clip_high=0.6))
    # With eps_high = 0.6, r = 1.5 (A > 0) is no longer clipped: -1.5 instead of -1.28.
    assert out.loss.item() == pytest.approx((1.02 + 1.28 - 1.5) / 5)


def test_dual_clip_caps_negative_advantage_loss():
    _, old, adv, _ = example()
    full = torch.ones_like(MASK)
    big = (OLD + torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 4.0]], dtype=torch.float64).log())
    big = big.clone().requires_grad_()
    plain = policy_loss(big, old, adv, full)
    dual = policy_loss(big, old, adv, full, LossSettings(dual_clip=3.0))
    # Token (1, 2): A = -2, r = 4: l = max(8, 2.56) = 8; dual clip min(8, -A c = 6) = 6.
    assert plain.loss.item() == pytest.approx((1.02 + 8.0) / 6)
    assert dual.loss.item() == pytest.approx((1.02 + 6.0) / 6)
    assert dual.metrics["dual_clip_fraction"].item() == pytest.approx(1 / 6)
    assert grad_of(dual, big)[1, 2].item() == 0.0  # capped: no gradient


def test_entropy_bonus_hand_computed():
    lp, old, adv, mask = example()
    ent = torch.tensor([[0.5, 1.0, 1.5], [2.0, 1.0, 9.9]], dtype=torch.float64,
                       requires_grad=True)
    out = policy_loss(lp, old, adv, mask, entropy=ent, entropy_coef=0.1)
    # token-mean entropy = (0.5 + 1 + 1.5 + 2 + 1) / 5 = 1.2; loss = 0.204 - 0.1 * 1.2.
    assert out.loss.item() == pytest.approx(0.204 - 0.12)
    assert out.metrics["entropy"].item() == pytest.approx(1.2)
    (g,) = torch.autograd.grad(out.loss, ent)
    torch.testing.assert_close(g, -0.1 * MASK.double() / 5)
    # A controller's value (0-dim tensor) works as the coefficient.
    lp, old, adv, mask = example()
    out_t = policy_loss(lp, old, adv, mask, entropy=ent, entropy_coef=torch.tensor(0.1))
    assert out_t.loss.item() == pytest.approx(out.loss.item())


def test_k3_kl_hand_computed_and_in_loss():
    lp = torch.zeros(1, 3, dtype=torch.float64)
    ref = torch.tensor([[0.0, math.log(2.0), -math.log(2.0)]], dtype=torch.float64)
    # exp(d) - d - 1 for d = 0, ln 2, -ln 2:
    expected = torch.tensor([[0.0, 1.0 - math.log(2.0), 0.5 + math.log(2.0) - 1.0]],
                            dtype=torch.float64)
    torch.testing.assert_close(k3_kl(lp, ref), expected)
    lp, old, adv, mask = example()
    ref = lp.detach() + torch.tensor([[math.log(2.0), 0, 0], [0, 0, 5.0]], dtype=torch.float64)
    out = policy_loss(lp, old, adv, mask, LossSettings(kl_coef=0.5), ref_log_probs=ref)
    assert out.loss.item() == pytest.approx((1.02 + 0.5 * (1 - math.log(2.0))) / 5)
    assert out.metrics["kl"].item() == pytest.approx((1 - math.log(2.0)) / 5)


def test_clip_cov_and_kl_cov_hand_computed():
    lp, old, adv, mask = example()
    sel = torch.zeros(2, 3, dtype=torch.bool)
    sel[1, 0] = True
    out = policy_loss(lp, old, adv, mask, LossSettings(intervention="clip_cov"), selected=sel)
    assert out.loss.item() == pytest.approx((1.02 - 2.2) / 5)  # token (1, 0) contributes 0
    g = grad_of(out, lp)
    assert g[1, 0].item() == 0.0 and g[0, 0].item() == pytest.approx(-1 / 5)
    assert out.metrics["touched_fraction"].item() == pytest.approx(1 / 5)

    lp, old, adv, mask = example()
    sel = torch.zeros(2, 3, dtype=torch.bool)
    sel[0, 1] = True  # r = 1.5, A = 1: clipped in the plain loss
    out = policy_loss(lp, old, adv, mask, LossSettings(intervention="kl_cov", kl_cov_coef=1.0),
                      selected=sel)
    # -A r + beta |log r| = -1.5 + ln 1.5 replaces -1.28; gradient -A r + beta = -0.5.
    assert out.loss.item() == pytest.approx((1.02 + 1.28 - 1.5 + math.log(1.5)) / 5)
    assert grad_of(out, lp)[0, 1].item() == pytest.approx(-0.5 / 5)


def test_steer_weights_hand_computed():
    # On-policy, pi = 0.5, H = 1: Omega = (A / 0.5) * 0.25 * (ln 0.5 + 1) = A * 0.5 * 0.3068528.
    lp = torch.full((1, 3), math.log(0.5), dtype=torch.float64)
    adv = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    ent = torch.ones(1, 3, dtype=torch.float64)
    mask = torch.ones(1, 3)
    omega = steer_omega(lp, lp, adv, ent, mask)
    torch.testing.assert_close(omega, 0.5 * (1 - math.log(2)) * adv)
    w = steer_weights(lp, lp, adv, ent, mask, mode="exponential", lambda_min=0.8)
    # max |Omega| -> lambda_min; half of it -> exp(0.5 ln 0.8) = sqrt(0.8); 0 -> 1.
    torch.testing.assert_close(w, torch.tensor([[0.8, math.sqrt(0.8), 1.0]], dtype=torch.float64))
    w = steer_weights(lp, lp, adv, ent, mask, mode="linear", lambda_min=0.8, lambda_max=1.2)
    # Linear endpoints: largest |Omega| -> 0.8, smallest -> 1.2, midpoint -> 1.0.
    torch.testing.assert_close(w, torch.tensor([[0.8, 1.0, 1.2]], dtype=torch.float64))


def test_steer_weights_bounds_and_floor():
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(6, 8, generator=g, dtype=torch.float64) * 4
    old = lp + 0.1 * torch.randn(6, 8, generator=g, dtype=torch.float64)
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    ent = torch.rand(6, 8, generator=g, dtype=torch.float64) * 3
    mask = torch.rand(6, 8, generator=g) > 0.3
    for lam in (0.5, 0.8, 0.95):
        w = steer_weights(lp, old, adv, ent, mask, lambda_min=lam)
        assert w[mask].min().item() >= lam - 1e-12 and w[mask].max().item() <= 1.0
        assert w[mask].min().item() == pytest.approx(lam)  # max |Omega| >= 0.02 here
        assert torch.all(w[~mask] == 1.0)
    w = steer_weights(lp, old, adv, ent, mask, mode="linear", lambda_min=0.7, lambda_max=1.3)
    assert w[mask].min().item() == pytest.approx(0.7) and w[mask].max().item() == pytest.approx(1.3)
    # Tiny |Omega| (all < 0.02): the scale floor keeps weights near 1, not at lambda_min.
    w = steer_weights(lp, old, adv * 1e-6, ent, mask, lambda_min=0.8)
    assert w[mask].min().item() > 0.999


def test_neutral_settings_equal_the_plain_surrogate_exactly():
    g = torch.Generator().manual_seed(1)
    B, T = 5, 7
    old = -torch.rand(B, T, generator=g) * 3
    base = old + 0.2 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = torch.rand(B, T, generator=g) > 0.25
    ent = torch.rand(B, T, generator=g)

    def run(selected=None, old_entropy=None, **settings):
        lp = base.clone().requires_grad_()
        out = policy_loss(lp, old, adv, mask, LossSettings(**settings), selected=selected,
                          old_entropy=old_entropy)
        return out.loss.detach(), torch.autograd.grad(out.loss, lp)[0]

    ref_loss, ref_grad = run()
    for iv in ("clip_cov", "kl_cov"):
        sel = select_tokens(iv, old, adv, mask, ratio=0.0, cov_lower=-1e9, cov_upper=1e9)
        assert not sel.any()  # ratio 0 selects nothing
        loss, grad = run(intervention=iv, selected=sel)
        assert torch.equal(loss, ref_loss) and torch.equal(grad, ref_grad)
    loss, grad = run(intervention="steer", old_entropy=ent, lambda_min=1.0)
    assert torch.equal(loss, ref_loss) and torch.equal(grad, ref_grad)
    loss, grad = run(intervention="steer", old_entropy=ent, steer_mode="linear",
                     lambda_min=1.0, lambda_max=1.0)
    assert torch.equal(loss, ref_loss) and torch.equal(grad, ref_grad)
    # ...and the non-neutral settings do change it.
    sel = select_tokens("kl_cov", old, adv, mask, ratio=0.2)
    assert not torch.equal(run(intervention="kl_cov", selected=sel)[1], ref_grad)


def test_kl_cov_on_policy_step_equals_plain_surrogate():
    """Documented: with logp == logp_old exactly, |logp - logp_old| is 0 with zero gradient."""
    g = torch.Generator().manual_seed(2)
    old = -torch.rand(4, 6, generator=g) * 3
    adv = torch.randn(4, generator=g)
    mask = torch.ones(4, 6, dtype=torch.bool)
    sel = select_tokens("kl_cov", old, adv, mask, ratio=0.5)
    outs = []
    for iv in ("none", "kl_cov"):
        lp = old.clone().requires_grad_()
        out = policy_loss(lp, old, adv, mask, LossSettings(intervention=iv), selected=sel)
        outs.append((out.loss.detach(), torch.autograd.grad(out.loss, lp)[0]))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_kl_cov_picks_exactly_the_top_k():
    g = torch.Generator().manual_seed(3)
    B, T = 8, 16
    lp = -torch.rand(B, T, generator=g) * 5
    adv = torch.randn(B, generator=g)
    mask = torch.rand(B, T, generator=g) > 0.3
    n = int(mask.sum())
    cov = token_covariance(lp, adv, mask)
    for ratio, k in ((0.1, math.floor(0.1 * n)), (1e-6, 1), (1.0, n)):
        sel = select_tokens("kl_cov", lp, adv, mask, ratio=ratio)
        assert int(sel.sum()) == k and not (sel & ~mask).any()
        top = torch.topk(cov[mask], k).values
        assert torch.equal(torch.sort(cov[sel]).values, torch.sort(top).values)
    # Hand check of the covariance: 1 sequence, A = (1, 1, -1) per token, logp = (0, -1, -2).
    c = token_covariance(torch.tensor([[0.0, -1.0, -2.0]]), torch.tensor([[1.0, 1.0, -1.0]]),
                         torch.ones(1, 3))
    # mean A = 1/3, mean logp = -1: (2/3)(1), (2/3)(0), (-4/3)(-1)
    torch.testing.assert_close(c, torch.tensor([[2 / 3, 0.0, 4 / 3]]))


def test_clip_cov_picks_within_bounds_and_is_seeded():
    g = torch.Generator().manual_seed(4)
    B, T = 10, 20
    lp = -torch.rand(B, T, generator=g) * 6
    adv = 2 * torch.randn(B, generator=g)
    mask = torch.rand(B, T, generator=g) > 0.2
    cov = token_covariance(lp, adv, mask)
    lower, upper = 0.5, 3.0
    cand = mask & (cov > lower) & (cov < upper)
    assert cand.sum() > 10
    picks = []
    for seed in (0, 0, 1):
        sel = select_tokens("clip_cov", lp, adv, mask, ratio=0.03, cov_lower=lower,
                            cov_upper=upper, generator=torch.Generator().manual_seed(seed))
        assert not (sel & ~cand).any()
        assert int(sel.sum()) == max(1, math.floor(0.03 * int(mask.sum())))
        picks.append(sel)
    assert torch.equal(picks[0], picks[1]) and not torch.equal(picks[0], picks[2])
    # More tokens requested than candidates: all candidates, nothing else.
    sel = select_tokens("clip_cov", lp, adv, mask, ratio=1.0, cov_lower=lower, cov_upper=upper,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(sel, cand)
    assert not select_tokens("none", lp, adv, mask, ratio=1.0).any()
    assert not select_tokens("steer", lp, adv, mask, ratio=1.0).any()


@pytest.mark.parametrize("mode", AGGREGATIONS)
@pytest.mark.parametrize("intervention", INTERVENTIONS)
def test_micro_batches_sum_to_the_full_batch_loss_and_gradient(mode, intervention):
    g = torch.Generator().manual_seed(5)
    B, T, L = 6, 5, 8
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    base = old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    lengths = torch.tensor([5, 1, 3, 4, 2, 5])
    mask = torch.arange(T)[None] < lengths[:, None]
    ent_old = torch.rand(B, T, generator=g, dtype=torch.float64)
    ent = torch.rand(B, T, generator=g, dtype=torch.float64)
    sel = select_tokens(intervention, old, adv, mask, ratio=0.2, cov_lower=-1e9, cov_upper=1e9,
                        generator=torch.Generator().manual_seed(0))
    weights = steer_weights(base, old, adv, ent_old, mask)
    normalizer = {"token-mean": float(mask.sum()), "seq-mean-token-mean": float(B),
                  "seq-mean-token-sum": float(B), "seq-mean-token-sum-norm": float(B * L)}[mode]
    settings = LossSettings(intervention=intervention, aggregation=mode, max_length=L)

    lp = base.clone().requires_grad_()
    e = ent.clone().requires_grad_()
    full = policy_loss(lp, old, adv, mask, settings, selected=sel, entropy=e, entropy_coef=0.01,
                       token_weights=weights)
    g_full = torch.autograd.grad(full.loss, (lp, e))

    lp = base.clone().requires_grad_()
    e = ent.clone().requires_grad_()
    total = 0.0
    for rows in (slice(0, 2), slice(2, 3), slice(3, 6)):
        part = policy_loss(lp[rows], old[rows], adv[rows], mask[rows], settings,
                           selected=sel[rows], entropy=e[rows], entropy_coef=0.01,
                           normalizer=normalizer, token_weights=weights[rows])
        total = total + part.loss
    g_parts = torch.autograd.grad(total, (lp, e))
    assert total.item() == pytest.approx(full.loss.item(), abs=1e-12)
    for a, b in zip(g_parts, g_full):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_aggregation_weighting_as_documented():
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]])
    values = torch.tensor([[1.0, 7.0, 7.0, 7.0], [0.0, 0.0, 0.0, 7.0]])  # 7s are padding
    # A 1-token answer with value 1 and a 3-token answer with value 0:
    assert aggregate(values, mask, "token-mean").item() == pytest.approx(1 / 4)
    assert aggregate(values, mask, "seq-mean-token-mean").item() == pytest.approx(1 / 2)
    assert aggregate(values, mask, "seq-mean-token-sum").item() == pytest.approx(1 / 2)
    assert aggregate(values, mask, "seq-mean-token-sum-norm").item() == pytest.approx(1 / 8)
    nan_pad = values.clone()
    nan_pad[0, 1] = float("nan")
    assert aggregate(nan_pad, mask, "token-mean").item() == pytest.approx(1 / 4)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
    lp, old, adv, mask = example()
    with pytest.raises(ValueError, match="unknown intervention 'clipcov'.*'clip_cov'"):
        LossSettings(intervention="clipcov")
    with pytest.raises(ValueError, match="unknown intervention.*'kl_cov'"):
        select_tokens("topk", old, adv, mask)
    with pytest.raises(ValueError, match="unknown aggregation 'mean'.*'token-mean'"):
        LossSettings(aggregation="mean")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(old, mask, "sum")
    with pytest.raises(ValueError, match=r"mask has shape \(2, 4\)"):
        policy_loss(lp, old, adv, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"old_log_probs has shape"):
        policy_loss(lp, old[:, :2], adv, mask)
    with pytest.raises(ValueError, match="advantages must have shape"):
        policy_loss(lp, old, torch.ones(3), mask)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
            select_tokens("kl_cov", old, adv, mask, ratio=bad)
    for bad in (0.0, 1.2, -0.5):
        with pytest.raises(ValueError, match=r"lambda_min must be in \(0, 1\]"):
            steer_weights(old, old, adv, torch.ones(2, 3), mask, lambda_min=bad)
        with pytest.raises(ValueError, match=r"lambda_min must be in \(0, 1\]"):
            policy_loss(lp, old, adv, mask, LossSettings(intervention="steer", lambda_min=bad),
                        old_entropy=torch.ones(2, 3))
    with pytest.raises(ValueError, match="lambda_max must be >= lambda_min"):
        steer_weights(old, old, adv, torch.ones(2, 3), mask, mode="linear", lambda_max=0.5)
    with pytest.raises(ValueError, match="unknown STEER mode"):
        steer_weights(old, old, adv, torch.ones(2, 3), mask, mode="cubic")
    nan_lp = lp.detach().clone()
    nan_lp[0, 1] = float("nan")
    with pytest.raises(ValueError, match="log_probs contains NaN"):
        policy_loss(nan_lp, old, adv, mask)
    with pytest.raises(ValueError, match="log_probs contains NaN"):
        select_tokens("kl_cov", nan_lp, adv, mask, ratio=0.5)
    nan_pad = lp.detach().clone()
    nan_pad[1, 2] = float("nan")  # masked: allowed, and does not leak into the loss
    assert math.isfinite(policy_loss(nan_pad, old, adv, mask).loss.item())
    with pytest.raises(ValueError, match="needs selected=select_tokens"):
        policy_loss(lp, old, adv, mask, LossSettings(intervention="kl_cov"))
    with pytest.raises(ValueError, match="needs old_entropy"):
        policy_loss(lp, old, adv, mask, LossSettings(intervention="steer"))
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        LossSettings(dual_clip=0.5)
    with pytest.raises(ValueError, match="needs ref_log_probs"):
        policy_loss(lp, old, adv, mask, LossSettings(kl_coef=0.1))
    with pytest.raises(ValueError, match="max_length must be >="):
        aggregate(old, mask, "seq-mean-token-sum-norm", max_length=2)
    with pytest.raises(ValueError, match="normalizer must be"):
        aggregate(old, mask, "token-mean", normalizer=0)
    with pytest.raises(ValueError, match="cov_lower must be < cov_upper"):
        select_tokens("clip_cov", old, adv, mask, cov_lower=5, cov_upper=1)


def test_sampler_importance_weights_follow_trls_four_modes():
    from maxent.entropy.token import sampler_importance_weights

    old = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    same = sampler_importance_weights(old, old.clone(), mask, mode="token_truncate")
    assert torch.equal(same, torch.ones(2, 3))
    sampler = old - torch.tensor([[0.5, 2.0, 9.0], [0.1, 0.1, 0.1]])  # the engine was less sure
    token = sampler_importance_weights(old, sampler, mask, mode="token_truncate", clip_max=3.0)
    torch.testing.assert_close(token, torch.tensor([[math.exp(0.5), 3.0, 1.0], [math.exp(0.1)] * 3]))
    masked = sampler_importance_weights(old, sampler, mask, mode="token_mask", clip_max=3.0)
    assert masked[0, 1] == 0 and masked[0, 0] == pytest.approx(math.exp(0.5))
    seq = sampler_importance_weights(old, sampler, mask, mode="sequence_mask", clip_max=3.0)
    assert seq.shape == (2, 1) and seq[0, 0] == 0  # exp(2.5) > 3: the whole completion is dropped
    assert seq[1, 0] == pytest.approx(math.exp(0.3))
    nan = sampler_importance_weights(old, torch.full_like(old, float("nan")), mask)
    assert torch.equal(nan, torch.ones(2, 1))
    with pytest.raises(ValueError, match="mode"):
        sampler_importance_weights(old, sampler, mask, mode="sequence")


def test_masked_fraction_counts_what_the_correction_drops():
    from maxent.entropy.token import masked_fraction, sampler_importance_weights

    old = torch.zeros(4, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    sampler = old.clone()
    sampler[0, 0] = -2.0  # ratio e^2 > 3: completion 0 (or its token) is masked
    seq = sampler_importance_weights(old, sampler, mask, mode="sequence_mask", clip_max=3.0)
    assert masked_fraction(seq, mask) == pytest.approx(1 / 4)
    token = sampler_importance_weights(old, sampler, mask, mode="token_mask", clip_max=3.0)
    assert masked_fraction(token, mask) == pytest.approx(1 / 9)  # 1 of 9 generated tokens
    kept = sampler_importance_weights(old, sampler, mask, mode="sequence_truncate", clip_max=3.0)
    assert masked_fraction(kept, mask) == 0


def test_sampling_weights_scale_each_tokens_loss():
    log_probs = torch.randn(2, 3, requires_grad=True)
    old = log_probs.detach()
    adv, mask = torch.tensor([1.0, -1.0]), torch.ones(2, 3)
    base = policy_loss(log_probs, old, adv, mask, LossSettings(aggregation="token-mean")).loss
    doubled = policy_loss(log_probs, old, adv, mask, LossSettings(aggregation="token-mean"),
                          sampling_weights=torch.full((2, 1), 2.0)).loss
    torch.testing.assert_close(doubled, 2 * base)
    with pytest.raises(ValueError, match="sampling_weights must have shape"):
        policy_loss(log_probs, old, adv, mask, sampling_weights=torch.ones(3, 1))


def test_old_keyword_call_warns_and_gives_the_same_numbers():
    """The settings passed as keywords (the old call) still work for one release, bit-identically."""
    g = torch.Generator().manual_seed(4)
    old = -torch.rand(3, 5, generator=g, dtype=torch.float64) * 3
    base = old + 0.3 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    adv, mask = torch.randn(3, generator=g, dtype=torch.float64), torch.rand(3, 5, generator=g) > 0.2
    sel = select_tokens("kl_cov", old, adv, mask, ratio=0.3)
    settings = dict(intervention="kl_cov", aggregation="seq-mean-token-mean", dual_clip=3.0,
                    clip_high=0.4, kl_cov_coef=0.5)
    lp_new, lp_old = base.clone().requires_grad_(), base.clone().requires_grad_()
    new = policy_loss(lp_new, old, adv, mask, LossSettings(**settings), selected=sel)
    with pytest.warns(DeprecationWarning, match=r"LossSettings\(intervention=, aggregation="):
        kept = policy_loss(lp_old, old, adv, mask, selected=sel, **settings)
    assert torch.equal(new.loss, kept.loss)
    assert torch.equal(grad_of(new, lp_new), grad_of(kept, lp_old))
    assert all(torch.equal(new.metrics[k], kept.metrics[k]) for k in new.metrics)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['clip'\]"):
        policy_loss(base, old, adv, mask, clip=0.3)
    with pytest.raises(TypeError, match="got settings and the keyword"):
        policy_loss(base, old, adv, mask, LossSettings(), aggregation="token-mean")
