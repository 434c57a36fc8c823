"""Tests for maxent/entropy/law.py: log-prob/advantage covariance and the entropy-performance law fit."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from maxent.entropy.law import EntropyPerformanceLaw, logprob_advantage_covariance


def test_covariance_is_the_masked_mean_of_centred_products():
    lp = torch.tensor([[0.0, -1.0, -2.0, 5.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean A = 1/3, mean logp = -1 -> products 2/3, 0, 4/3; mean = 2/3 (padding ignored).
    assert logprob_advantage_covariance(lp, adv, mask).item() == pytest.approx(2 / 3)
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(5, 7, generator=g, dtype=torch.float64)
    adv = torch.randn(5, generator=g, dtype=torch.float64)
    full = torch.ones(5, 7)
    x, y = lp.flatten(), adv[:, None].expand(5, 7).flatten()
    np_cov = np.cov(x.numpy(), y.numpy(), bias=True)[0, 1]
    assert logprob_advantage_covariance(lp, adv, full).item() == pytest.approx(np_cov)


def synthetic(n, a=0.8, b=0.9, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.05, 1.5, n)
    r = -a * np.exp(h) + b + noise * rng.standard_normal(n)
    return h, r


def test_recovers_a_b_and_ceiling_from_noisy_data():
    law = EntropyPerformanceLaw()
    h, r = synthetic(200)
    assert law.fit() is None
    for hi, ri in zip(h, r):
        law.update(hi, ri)
    f = law.fit()
    assert f.n_points == 200
    assert f.a == pytest.approx(0.8, abs=0.01) and f.b == pytest.approx(0.9, abs=0.02)
    assert f.ceiling == pytest.approx(0.1, abs=0.01)
    assert abs(f.ceiling - 0.1) < 4 * f.ceiling_std  # the error bar covers the truth
    assert f.r2 > 0.99
    # Cross-check the closed form against numpy's least squares.
    X = np.stack([np.ones_like(h), np.exp(h)], 1)
    coef, *_ = np.linalg.lstsq(X, r, rcond=None)
    assert f.b == pytest.approx(coef[0]) and f.a == pytest.approx(-coef[1])


def test_standard_error_matches_ols_and_shrinks_with_more_points():
    stds = []
    for n in (20, 80, 320, 1280):
        law = EntropyPerformanceLaw()
        for hi, ri in zip(*synthetic(n, noise=0.05, seed=n)):
            law.update(hi, ri)
        stds.append(law.fit().ceiling_std)
    assert all(s1 > s2 for s1, s2 in itertools.pairwise(stds))
    assert stds[0] / stds[-1] == pytest.approx(8.0, rel=0.35)  # ~ 1/sqrt(n)
    # Against the textbook formula sigma^2 c^T (X^T X)^-1 c with c = (1, 1).
    h, r = synthetic(50, noise=0.05, seed=3)
    law = EntropyPerformanceLaw()
    for hi, ri in zip(h, r):
        law.update(hi, ri)
    X = np.stack([np.ones_like(h), np.exp(h)], 1)
    coef, *_ = np.linalg.lstsq(X, r, rcond=None)
    sigma2 = ((r - X @ coef) ** 2).sum() / (len(r) - 2)
    c = np.array([1.0, 1.0])
    assert law.fit().ceiling_std == pytest.approx(math.sqrt(sigma2 * c @ np.linalg.inv(X.T @ X) @ c))


def test_state_dict_round_trip_through_json_and_window():
    law = EntropyPerformanceLaw(window=30)
    for hi, ri in zip(*synthetic(50)):
        law.update(hi, ri)
    assert len(law) == 30
    state = json.loads(json.dumps(law.state_dict()))
    other = EntropyPerformanceLaw()
    other.load_state_dict(state)
    assert other.fit() == law.fit() and other.window == 30
    other.update(0.3, -0.5)
    assert len(other) == 30


def test_degenerate_and_bad_input():
    law = EntropyPerformanceLaw()
    for _ in range(5):
        law.update(0.5, 0.1)
    assert law.fit() is None  # constant entropy: slope not identified
    with pytest.raises(ValueError, match="must be finite"):
        law.update(float("nan"), 0.0)
    with pytest.raises(ValueError, match="min_points must be an int >= 3"):
        EntropyPerformanceLaw(min_points=2)
    with pytest.raises(ValueError, match="window must be None or an int"):
        EntropyPerformanceLaw(window=2)
    with pytest.raises(KeyError, match="missing"):
        law.load_state_dict({"entropy": []})
