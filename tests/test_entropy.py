"""Tests for maxent/entropy/estimates.py: the tanh-squashed Gaussian of SAC (Haarnoja et al. 2018) against
torch.distributions, its stability, sampling, the Monte-Carlo entropies, and the categorical entropy
and log-prob against 40-digit references with error bounds derived from their formulation."""

import math

import mpmath
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from maxent.entropy import (
    categorical_entropy,
    gaussian_entropy,
    gaussian_log_prob_from_noise,
    monte_carlo_entropy,
    sample_squashed_gaussian,
    squashed_gaussian_entropy,
    squashed_gaussian_log_prob,
)
from maxent.entropy.estimates import categorical_log_prob


def reference_log_prob(mean, log_std, u):
    """torch.distributions' tanh-Gaussian log-density at a = tanh(u), summed over the last dim."""
    dist = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform(cache_size=1))
    a = dist.transforms[0](u)  # fills the cache so log_prob inverts to u, not atanh(a)
    return dist.log_prob(a).sum(-1)


def naive_log_prob(mean, log_std, u):
    """The textbook formula with log(1 - tanh(u)^2): overflows once tanh(u) rounds to 1."""
    return (Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    seed=st.integers(0, 2**31 - 1),
    mean_scale=st.floats(0.0, 4.0),
    log_std_lo=st.floats(-5.0, 1.0),
    u_scale=st.floats(0.0, 8.0),
)
def test_log_prob_matches_torch_distributions(shape, seed, mean_scale, log_std_lo, u_scale):
    g = torch.Generator().manual_seed(seed)
    mean = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * mean_scale
    log_std = log_std_lo + torch.rand(shape, generator=g, dtype=torch.float64) * 1.0
    u = ((torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * u_scale).clamp(-8, 8)
    ours = squashed_gaussian_log_prob(mean, log_std, u)
    assert ours.shape == shape[:-1]
    torch.testing.assert_close(ours, reference_log_prob(mean, log_std, u), rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_log_prob_float32_matches_float64(shape, seed):
    g = torch.Generator().manual_seed(seed)
    mean, log_std, u = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    ours = squashed_gaussian_log_prob(mean.float(), log_std.float(), (3 * u).float())
    ref = reference_log_prob(mean, log_std, 3 * u)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)


def test_log_prob_gradients_match_reference():
    mean0, log_std0, u0 = torch.randn(5, 3), torch.randn(5, 3) * 0.5, torch.randn(5, 3) * 2
    grads = []
    for fn in (squashed_gaussian_log_prob, reference_log_prob):
        args = [t.clone().requires_grad_() for t in (mean0, log_std0, u0)]
        fn(*args).sum().backward()
        grads.append([a.grad for a in args])
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref)


def test_log_prob_hand_value():
    # dim 1, mean 0, std 1, u 0: log N(0) = -0.5 log(2 pi), tanh'(0) = 1.
    z = torch.zeros(1, 1)
    assert squashed_gaussian_log_prob(z, z, z).item() == pytest.approx(-0.5 * math.log(2 * math.pi))


def test_log_prob_stays_finite_where_naive_formula_fails():
    u = torch.tensor([[20.0, -20.0, 50.0]])
    mean = torch.tensor([[19.0, -21.0, 49.0]])
    log_std = torch.zeros(1, 3)
    assert not torch.isfinite(naive_log_prob(mean, log_std, u)).all()
    ours = squashed_gaussian_log_prob(mean, log_std, u)
    assert torch.isfinite(ours).all()
    # For |u| >> 1: log(1 - tanh(u)^2) = log 4 - 2|u| to within e^(-2|u|).
    expected = sum(
        -0.5 - 0.5 * math.log(2 * math.pi) - (math.log(4) - 2 * abs(v)) for v in (20, 20, 50)
    )
    assert ours.item() == pytest.approx(expected, rel=1e-6)


def test_log_prob_broadcasts_state_independent_log_std():
    mean, u = torch.randn(5, 3), torch.randn(5, 3)
    log_std = torch.randn(3)
    torch.testing.assert_close(
        squashed_gaussian_log_prob(mean, log_std, u),
        squashed_gaussian_log_prob(mean, log_std.expand(5, 3), u),
    )


def test_sample_log_prob_equals_log_prob_at_pre_tanh_point():
    mean, log_std = torch.randn(7, 4), torch.randn(7, 4) * 0.5
    action, log_prob = sample_squashed_gaussian(
        mean, log_std, generator=torch.Generator().manual_seed(3)
    )
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    u = mean + log_std.exp() * eps
    assert action.shape == mean.shape and log_prob.shape == (7,)
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(log_prob, squashed_gaussian_log_prob(mean, log_std, u))
    torch.testing.assert_close(log_prob, reference_log_prob(mean, log_std, u), rtol=1e-5, atol=1e-5)
    assert (action.abs() < 1).all()


def test_sample_gradients_match_rsample_reference():
    torch.manual_seed(0)
    mean0, log_std0 = torch.randn(6, 3), torch.randn(6, 3) * 0.3
    weights = torch.randn(6, 3)

    mean, log_std = mean0.clone().requires_grad_(), log_std0.clone().requires_grad_()
    action, log_prob = sample_squashed_gaussian(
        mean, log_std, generator=torch.Generator().manual_seed(1)
    )
    ((action * weights).sum() + log_prob.sum()).backward()

    ref_mean, ref_log_std = mean0.clone().requires_grad_(), log_std0.clone().requires_grad_()
    eps = torch.randn(mean0.shape, generator=torch.Generator().manual_seed(1))
    u = ref_mean + ref_log_std.exp() * eps  # what Normal.rsample does
    ref_lp = (
        Normal(ref_mean, ref_log_std.exp()).log_prob(u)
        - TanhTransform().log_abs_det_jacobian(u, None)
    ).sum(-1)
    ((torch.tanh(u) * weights).sum() + ref_lp.sum()).backward()

    assert mean.grad.abs().sum() > 0 and log_std.grad.abs().sum() > 0
    torch.testing.assert_close(mean.grad, ref_mean.grad)
    torch.testing.assert_close(log_std.grad, ref_log_std.grad)


def test_sample_generator_determinism():
    mean, log_std = torch.randn(4, 2), torch.zeros(4, 2)
    a1, lp1 = sample_squashed_gaussian(mean, log_std, generator=torch.Generator().manual_seed(7))
    a2, lp2 = sample_squashed_gaussian(mean, log_std, generator=torch.Generator().manual_seed(7))
    a3, _ = sample_squashed_gaussian(mean, log_std, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a1, a2) and torch.equal(lp1, lp2)
    assert not torch.equal(a1, a3)


def test_sample_deterministic():
    mean, log_std = torch.randn(3, 2), torch.randn(3, 2)
    action, log_prob = sample_squashed_gaussian(mean, log_std, deterministic=True)
    torch.testing.assert_close(action, torch.tanh(mean))
    torch.testing.assert_close(log_prob, squashed_gaussian_log_prob(mean, log_std, mean))


def test_gaussian_log_prob_from_noise():
    mean, log_std, eps = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    u = mean + log_std.exp() * eps
    torch.testing.assert_close(
        gaussian_log_prob_from_noise(eps, log_std),
        Normal(mean, log_std.exp()).log_prob(u).sum(-1),
        rtol=1e-5,
        atol=1e-5,
    )


def test_gaussian_entropy_matches_normal():
    log_std = torch.randn(4, 3, 5)
    torch.testing.assert_close(
        gaussian_entropy(log_std), Normal(0.0, log_std.exp()).entropy().sum(-1)
    )


def test_squashed_gaussian_entropy_close_to_large_sample_reference():
    mean = torch.tensor([[0.0, 0.5], [1.5, -2.0], [0.3, 0.0]], dtype=torch.float64)
    log_std = torch.tensor([[0.0, -1.0], [0.5, -0.5], [-3.0, 1.0]], dtype=torch.float64)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform(cache_size=1))
    samples = dist.rsample((200_000,))
    reference = -dist.log_prob(samples).sum(-1).mean(0)
    est = squashed_gaussian_entropy(mean, log_std, n_samples=100_000, generator=g)
    assert est.shape == (3,)
    # Standard errors: <= 0.006 (reference), <= 0.01 (estimate, the std-2.7 row).
    torch.testing.assert_close(est, reference, rtol=0, atol=0.04)
    assert (est - reference)[:2].abs().max() < 0.015
    # Squashing only removes entropy (|tanh'| <= 1).
    assert (est < gaussian_entropy(log_std)).all()


def test_squashed_gaussian_entropy_small_std_limit_and_grad():
    # std -> 0: H(tanh u) ~ H(u) + log(1 - tanh(mean)^2).
    mean = torch.tensor([0.7], requires_grad=True)
    log_std = torch.tensor([-6.0], requires_grad=True)
    est = squashed_gaussian_entropy(mean, log_std, n_samples=64)
    expected = (
        gaussian_entropy(log_std.detach()) + torch.log(1 - torch.tanh(mean.detach()) ** 2).sum()
    )
    assert est.shape == ()
    assert est.item() == pytest.approx(expected.item(), abs=1e-3)
    est.backward()
    assert torch.isfinite(mean.grad).all() and mean.grad.abs().item() > 0
    assert log_std.grad.item() == pytest.approx(1.0, abs=1e-3)


def test_squashed_gaussian_entropy_bad_n_samples():
    with pytest.raises(ValueError, match="n_samples"):
        squashed_gaussian_entropy(torch.zeros(2), torch.zeros(2), n_samples=0)


def test_monte_carlo_entropy():
    log_probs = torch.tensor([[-1.0, -3.0], [0.0, -2.0]])
    torch.testing.assert_close(monte_carlo_entropy(log_probs), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(monte_carlo_entropy(log_probs, dim=0), torch.tensor([0.5, 2.5]))


def mp_entropy_and_grad(row):
    """H = -sum p log p, dH/dz_j = -p_j (log p_j + H) and T = sum_j p_j (max z - z_j) of one row
    of logits, to 40 digits (mpmath): an independent reference far more accurate than float64.
    log p_j + H is taken as (z_j - max z) + T, the same number without its cancellation."""
    finite = [x for x in row if x != -math.inf]
    if not finite:  # all masked: counted as uniform, H = log n, gradient 0
        return math.log(len(row)), [0.0] * len(row), 0.0
    m = max(finite)
    # Enough digits that 1 + R (R = sum of the others' e^{s_j}) keeps 40 of R's.
    mpmath.mp.dps = 40 + int(max(m - x for x in finite) / 2.3)
    s = [None if x == -math.inf else mpmath.mpf(x) - m for x in row]
    log_z = mpmath.log(mpmath.fsum(mpmath.exp(sj) for sj in s if sj is not None))
    p = [0 if sj is None else mpmath.exp(sj - log_z) for sj in s]
    t = mpmath.fsum(-pj * sj for pj, sj in zip(p, s) if sj is not None)
    grad = [0.0 if sj is None else float(-pj * (sj + t)) for pj, sj in zip(p, s)]
    return float(log_z + t), grad, float(t)


def entropy_error_bound(logits, dtype):
    """Worst-case error of ``categorical_entropy``'s formulation, per row: H = L + T is a sum of
    non-negative terms, each with relative error <= (|s_j| + 8) u (s_j = z_j - max rounded, so
    exp(s_j) is off by |s_j| u, plus a few roundings in exp, the product and log1p), and the
    n-term sums add (n - 1) u; so |error| <= (max|s_j| + n + 8) u H, where only |s_j| up to
    exp's underflow (104 in float32, 745 in float64) matters and u is the unit roundoff of the
    computing dtype. Underflowed or subnormal exp(s_j) lose at most 104 * 2^-149 (float32)
    each: n times that absolutely. Doubled for safety; the gradient -p_j (s_j + T) has the same
    relative bound on p_j (|s_j| + T)."""
    compute = torch.promote_types(dtype, torch.float32)
    u = torch.finfo(compute).eps / 2
    n = logits.shape[-1]
    underflow, tiny = (104, 2.0**-149) if compute == torch.float32 else (745, 2.0**-1074)
    rel = 2 * (underflow + n + 8) * u
    return rel, 2 * n * underflow * tiny


# Logits of random shape, class count and spread, for the 40-digit reference comparisons.
LOGIT_DRAWS = dict(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
    n_classes=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.0, 100.0),
)


def random_logits(shape, n_classes, seed, scale, dtype):
    """Gaussian logits of spread ``scale`` drawn from ``seed``, and the generator for further draws."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((*shape, n_classes), generator=g) * scale).to(dtype), g


@settings(max_examples=40, deadline=None)
@given(
    **LOGIT_DRAWS,
    mask_fraction=st.sampled_from([0.0, 0.0, 0.3, 0.9]),
    dtype=st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float64]),
)
# Row 0 has H = 9.36e-5; the textbook formula gives 8.39e-5 in float32 (-10 %).
@example(shape=(4,), n_classes=4, seed=1048577, scale=50.0, mask_fraction=0.0,
         dtype=torch.float32)
def test_categorical_entropy_and_gradient_match_40_digit_reference(
        shape, n_classes, seed, scale, mask_fraction, dtype):
    logits, g = random_logits(shape, n_classes, seed, scale, dtype)
    if mask_fraction:
        logits[torch.rand(logits.shape, generator=g) < mask_fraction] = float("-inf")
    logits.requires_grad_()
    ours = categorical_entropy(logits)
    assert ours.shape == shape and ours.dtype == torch.promote_types(dtype, torch.float32)
    ours.sum().backward()
    assert torch.isfinite(logits.grad).all()
    rel, atol = entropy_error_bound(logits, dtype)
    rows = logits.detach().double().reshape(-1, n_classes).tolist()  # bf16/f32 -> f64: exact
    got_h = ours.detach().double().reshape(-1).tolist()
    got_g = logits.grad.double().reshape(-1, n_classes).tolist()
    for row, h, grad in zip(rows, got_h, got_g):
        ref_h, ref_g, t = mp_entropy_and_grad(row)
        assert abs(h - ref_h) <= rel * ref_h + atol, (row, h, ref_h)
        if dtype == torch.bfloat16:
            continue  # the gradient is rounded to bf16 on its way back
        m = max((x for x in row if x != -math.inf), default=0.0)
        for x, gj, rj in zip(row, grad, ref_g):
            scale_j = 0.0 if x == -math.inf else math.exp(x - m) * (m - x + t)
            assert abs(gj - rj) <= rel * scale_j + atol, (row, gj, rj)


def test_categorical_entropy_is_exact_where_the_textbook_formula_cancels():
    """Near collapse, float32 against a 40-digit reference: a row the textbook
    logsumexp(z) - sum p z gets 10 % wrong (its float32 difference of two ~|max z| numbers
    loses the digits of a small H), and rows of H < 1e-6, also under a large common shift."""
    z = torch.randn(4, 4, generator=torch.Generator().manual_seed(1048577)) * 50
    ref = torch.tensor([mp_entropy_and_grad(r)[0] for r in z.double().tolist()],
                       dtype=torch.float64)
    textbook = torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)
    assert abs(textbook[0].item() / ref[0].item() - 1) > 0.05  # -10 %
    torch.testing.assert_close(categorical_entropy(z).double(), ref, rtol=1e-5, atol=0)
    for shift in (0.0, 1e4):  # H depends on differences only; a large common shift must not hurt
        deep = torch.tensor([[30.0, 0.0, -5.0, float("-inf")], [80.0, 60.0, 1.0, 0.0]]) + shift
        ref = torch.tensor([mp_entropy_and_grad(r)[0] for r in deep.double().tolist()],
                           dtype=torch.float64)
        assert (ref < 1e-6).all() and (ref > 0).all()
        torch.testing.assert_close(categorical_entropy(deep).double(), ref, rtol=2e-5, atol=0)


def test_categorical_entropy_gradient_matches_float64_autograd_near_collapse_and_masked():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 5.0, 20.0, 50.0]).repeat(16)[:, None]
    logits = torch.randn(64, 6, generator=g) * scales
    logits[::3, 1] = float("-inf")
    logits[5, :] = float("-inf")  # all masked: uniform by convention, gradient 0
    x32 = logits.clone().requires_grad_()
    categorical_entropy(x32, chunk_size=7).sum().backward()
    # float64 autograd of torch's own entropy is accurate to ~|z| 2^-52 absolutely, far below
    # the float32 errors tested here; the fully masked row is checked separately.
    ok = torch.ones(64, dtype=torch.bool)
    ok[5] = False
    x64 = logits[ok].double().requires_grad_()
    Categorical(logits=x64).entropy().sum().backward()
    assert torch.isfinite(x32.grad).all()
    assert torch.equal(x32.grad[5], torch.zeros(6))
    # Relative accuracy per component: (|s| + n + 8) u of p_j (|s_j| + T), |s| <= 104.
    p = torch.softmax(x64.detach(), -1)
    s = (x64.detach() - x64.detach().amax(-1, keepdim=True)).clamp(min=-1e30)
    size = p * (s.abs() + 1.0)
    assert ((x32.grad[ok].double() - x64.grad).abs() <= 2e-5 * size + 1e-30).all()
    assert (x32.grad[ok][x64.grad != 0] != 0).float().mean() > 0.9  # tiny gradients survive
    with pytest.raises(RuntimeError):  # once differentiable, said so instead of a wrong answer
        y = logits[:2].clone().requires_grad_()
        (gy,) = torch.autograd.grad(categorical_entropy(y).sum(), y, create_graph=True)
        gy.sum().backward()


def mp_log_prob_and_grad(row, t):
    """log p_t and d log p_t / dz_j = delta_jt - p_j of one row, to 40 digits (mpmath); 1 - p_t
    is taken as the others' mass sum_{j != t} p_j, which does not cancel."""
    finite = [x for x in row if x != -math.inf]
    m = max(finite)
    mpmath.mp.dps = 40 + int(max(m - x for x in finite) / 2.3)
    e = [mpmath.mpf(0) if x == -math.inf else mpmath.exp(mpmath.mpf(x) - m) for x in row]
    z = mpmath.fsum(e)
    p = [ej / z for ej in e]
    rest = mpmath.fsum(pj for j, pj in enumerate(p) if j != t)
    grad = [float(rest) if j == t else float(-pj) for j, pj in enumerate(p)]
    lp = -math.inf if row[t] == -math.inf else float(mpmath.mpf(row[t]) - m - mpmath.log(z))
    return lp, grad


@settings(max_examples=40, deadline=None)
@given(
    **LOGIT_DRAWS,
    mask=st.booleans(),
    argmax_targets=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
@example(shape=(4,), n_classes=4, seed=1048577, scale=50.0, mask=False, argmax_targets=True,
         dtype=torch.float32)
def test_categorical_log_prob_and_gradient_match_40_digit_reference(
        shape, n_classes, seed, scale, mask, argmax_targets, dtype):
    """Bound: log p_t = s_t - log1p(R), two non-positive terms, each with relative error
    <= (|s| + n + 8) u as in entropy_error_bound; the gradient's terms p_j and R / (1 + R)
    likewise. No entropy-size atol is needed beyond the underflow one."""
    logits, g = random_logits(shape, n_classes, seed, scale, dtype)
    target = torch.randint(0, n_classes, shape, generator=g)
    if argmax_targets:
        target = logits.argmax(-1)
    if mask:  # mask every non-target class with probability 1/2
        drop = torch.rand(logits.shape, generator=g) < 0.5
        drop.scatter_(-1, target[..., None], False)
        logits[drop] = float("-inf")
    logits.requires_grad_()
    ours = categorical_log_prob(logits, target)
    assert ours.shape == shape and ours.dtype == torch.promote_types(dtype, torch.float32)
    ours.sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(ours).all()
    rel, atol = entropy_error_bound(logits, dtype)
    rows = logits.detach().double().reshape(-1, n_classes).tolist()
    for row, t, lp, grad in zip(rows, target.reshape(-1).tolist(),
                                ours.detach().reshape(-1).tolist(),
                                logits.grad.double().reshape(-1, n_classes).tolist()):
        ref_lp, ref_g = mp_log_prob_and_grad(row, t)
        assert abs(lp - ref_lp) <= rel * abs(ref_lp) + atol, (row, t, lp, ref_lp)
        for gj, rj in zip(grad, ref_g):
            assert abs(gj - rj) <= rel * abs(rj) + atol, (row, t, gj, rj)


def test_categorical_log_prob_keeps_a_near_certain_tokens_digits():
    z = torch.tensor([[30.0, 0.0, -5.0, float("-inf")], [80.0, 60.0, 1.0, 0.0]]) + 1e3
    t = torch.tensor([0, 0])
    ref = torch.tensor([mp_log_prob_and_grad(r, 0)[0] for r in z.double().tolist()],
                       dtype=torch.float64)
    assert (torch.log_softmax(z, -1)[:, 0] == 0).all()  # every digit of log p rounded away
    torch.testing.assert_close(categorical_log_prob(z, t).double(), ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(categorical_log_prob(z.double(), t), ref, rtol=1e-12, atol=0)
    x = z.clone().requires_grad_()
    categorical_log_prob(x, t).sum().backward()
    ref_g = torch.tensor([mp_log_prob_and_grad(r, 0)[1] for r in z.double().tolist()])
    assert (x.grad[:, 0] > 0).all()  # log_softmax's backward gives 1 - p_t = 0 here
    torch.testing.assert_close(x.grad, ref_g, rtol=1e-5, atol=1e-30)


def test_categorical_log_prob_agrees_with_log_softmax_chunked_bf16_and_masked_target():
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(3, 7, 50, generator=g) * 4).bfloat16()
    t = torch.randint(0, 50, (3, 7), generator=g)
    ref = torch.log_softmax(logits.float(), -1).gather(-1, t[..., None])[..., 0]
    for chunk in (None, 1, 4, 100):
        ours = categorical_log_prob(logits, t, chunk_size=chunk)
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    x = logits.float().requires_grad_()
    y = logits.float().requires_grad_()
    w = torch.randn(3, 7, generator=g)
    (categorical_log_prob(x, t, chunk_size=5) * w).sum().backward()
    (torch.log_softmax(y, -1).gather(-1, t[..., None])[..., 0] * w).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)
    masked = torch.tensor([[0.0, float("-inf"), 1.0]])
    assert categorical_log_prob(masked, torch.tensor([1])).item() == float("-inf")


def test_categorical_log_prob_bad_args():
    with pytest.raises(ValueError, match=r"index must have shape logits.shape\[:-1\] = \(2,\)"):
        categorical_log_prob(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class ids"):
        categorical_log_prob(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="at least one class"):
        categorical_log_prob(torch.zeros(2, 0), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size"):
        categorical_log_prob(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), chunk_size=0)


def test_categorical_entropy_uniform_and_masked():
    assert categorical_entropy(torch.zeros(10)).item() == pytest.approx(math.log(10))
    logits = torch.tensor(
        [[0.0, 0.0, float("-inf"), float("-inf")], [1.0, float("-inf"), 2.0, 3.0]]
    )
    ours = categorical_entropy(logits)
    assert ours[0].item() == pytest.approx(math.log(2))
    torch.testing.assert_close(ours, Categorical(logits=logits).entropy())


def test_categorical_entropy_chunked_equals_unchunked():
    logits = torch.randn(3, 7, 50) * 4
    full = categorical_entropy(logits)
    for chunk in (1, 4, 21, 100):
        torch.testing.assert_close(categorical_entropy(logits, chunk_size=chunk), full)
    assert categorical_entropy(torch.randn(0, 5), chunk_size=2).shape == (0,)


def test_categorical_entropy_bf16_computed_in_fp32():
    logits = (torch.randn(4, 6, 1000) * 3).bfloat16()
    ref = Categorical(logits=logits.float()).entropy()
    for chunk in (None, 5):
        ours = categorical_entropy(logits, chunk_size=chunk)
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_categorical_entropy_gradient():
    logits = torch.randn(2, 5, requires_grad=True)
    ref_logits = logits.detach().clone().requires_grad_()
    categorical_entropy(logits, chunk_size=1).sum().backward()
    Categorical(logits=ref_logits).entropy().sum().backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad)


def test_categorical_entropy_bad_args():
    with pytest.raises(ValueError, match="chunk_size"):
        categorical_entropy(torch.zeros(2, 3), chunk_size=0)
    with pytest.raises(ValueError, match="0-dim"):
        categorical_entropy(torch.tensor(1.0))


# --------------------------------------------------------------------------- Gaussian mixtures
# Active Diffusion Subsampling (Nolan et al., TMLR 2025) scores locations by the entropy of the
# particles' predicted measurements, a Gaussian mixture.

from maxent.entropy import ads_entropy_score, gaussian_mixture_entropy


def mixture_entropy_monte_carlo(means, sigma, n_samples=200_000, seed=0):
    """H = -E log p(y) for y from the equal-weight mixture, with its exact log-density; the
    estimate and its standard error."""
    g = torch.Generator().manual_seed(seed)
    n, d = means.shape
    comp = torch.randint(0, n, (n_samples,), generator=g)
    y = means[comp] + sigma * torch.randn(n_samples, d, generator=g, dtype=means.dtype)
    log_comp = Normal(means, sigma).log_prob(y[:, None, :]).sum(-1)  # (S, N)
    log_p = torch.logsumexp(log_comp, -1) - math.log(n)
    return -log_p.mean().item(), log_p.std().item() / math.sqrt(n_samples)


@pytest.mark.parametrize("spread", [0.05, 0.5, 1.0, 2.0, 20.0])
def test_gaussian_mixture_entropy_brackets_monte_carlo(spread):
    g = torch.Generator().manual_seed(1)
    means = spread * torch.randn(6, 2, generator=g, dtype=torch.float64)
    sigma = 0.7
    mc, se = mixture_entropy_monte_carlo(means, sigma)
    upper = gaussian_mixture_entropy(means, sigma).item()
    lower = gaussian_mixture_entropy(means, sigma, bound="bhattacharyya").item()
    assert lower - 4 * se <= mc <= upper + 4 * se
    if spread in (0.05, 20.0):  # collapsed or separated components: the estimate is exact
        assert upper == pytest.approx(mc, rel=0.01)
        assert lower == pytest.approx(mc, rel=0.01)


def test_gaussian_mixture_entropy_limits_and_batching():
    gauss = 0.5 * 3 * (1 + math.log(2 * math.pi * 0.25))
    same = torch.zeros(5, 3, dtype=torch.float64)
    assert gaussian_mixture_entropy(same, 0.5).item() == pytest.approx(gauss)
    far = torch.arange(5, dtype=torch.float64)[:, None].repeat(1, 3) * 100
    assert gaussian_mixture_entropy(far, 0.5).item() == pytest.approx(gauss + math.log(5))
    batch = torch.randn(4, 7, 5, 3, dtype=torch.float64)
    out = gaussian_mixture_entropy(batch, 0.5)
    assert out.shape == (4, 7)
    torch.testing.assert_close(out[2, 3], gaussian_mixture_entropy(batch[2, 3], 0.5))


def test_ads_entropy_score_is_the_papers_formula():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)  # (locations, N, d)
    sigma = 0.8
    ours = ads_entropy_score(y, sigma)
    for j in range(3):
        by_hand = sum(
            math.log(sum(math.exp(((y[j, i] - y[j, k]) ** 2).sum().item() / (2 * sigma**2))
                         for k in range(5)))
            for i in range(5))
        assert ours[j].item() == pytest.approx(by_hand, rel=1e-12)
    assert ads_entropy_score(torch.zeros(4, 1), 1.0).item() == pytest.approx(4 * math.log(4))
    perm = torch.randperm(5, generator=g)
    torch.testing.assert_close(ads_entropy_score(y[:, perm], sigma), ours)


def test_ads_score_agrees_with_mixture_entropy_for_wide_kernels_only():
    """S / N - log N and H_KL - H_gauss share the first-order term mean_ik ||.||^2 / 2 sigma^2,
    so for large sigma both rank locations alike; for small sigma H saturates and S does not."""
    g = torch.Generator().manual_seed(3)
    y = torch.rand(64, 16, 1, generator=g, dtype=torch.float64) * torch.rand(
        64, 1, 1, generator=g, dtype=torch.float64)
    n = y.shape[1]
    sigma = 10.0
    s = ads_entropy_score(y, sigma) / n - math.log(n)
    h = gaussian_mixture_entropy(y, sigma) - 0.5 * (1 + math.log(2 * math.pi * sigma**2))
    torch.testing.assert_close(s, h, rtol=2e-3, atol=0.0)
    assert torch.equal(s.argsort(), h.argsort())
    # Narrow kernel: two far-apart clusters give H = H_gauss + log 2 whatever the gap; S grows.
    two = torch.tensor([[0.0], [0.0], [1.0], [1.0]], dtype=torch.float64)
    h1, h2 = (gaussian_mixture_entropy(two * c, 0.01).item() for c in (1.0, 2.0))
    s1, s2 = (ads_entropy_score(two * c, 0.01).item() for c in (1.0, 2.0))
    assert h1 == pytest.approx(h2)
    assert s2 > 3 * s1


def test_gaussian_mixture_bad_args():
    with pytest.raises(ValueError, match="sigma must be a positive finite number, got 0"):
        gaussian_mixture_entropy(torch.zeros(3, 1), 0.0)
    with pytest.raises(ValueError, match="sigma must be a positive finite number, got -1"):
        ads_entropy_score(torch.zeros(3, 1), -1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n_components, dim\), got shape \(3,\)"):
        ads_entropy_score(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="at least one component"):
        gaussian_mixture_entropy(torch.zeros(0, 2), 1.0)
    with pytest.raises(ValueError, match="bound must be 'kl' or 'bhattacharyya', got 'x'"):
        gaussian_mixture_entropy(torch.zeros(3, 1), 1.0, bound="x")


def test_hypothesis_runs_derandomized_under_ci(monkeypatch):
    """CI draws the same examples every run (tests/conftest.py); locally they are fresh."""
    import conftest

    if conftest._profile() == "ci":  # this very run
        assert settings.default.derandomize
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    for value, profile in (("true", "ci"), ("1", "ci"), ("", "dev"), ("false", "dev")):
        monkeypatch.setenv("CI", value)
        assert conftest._profile() == profile
    assert settings.get_profile("ci").derandomize and not settings.get_profile("dev").derandomize
