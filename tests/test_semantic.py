"""Tests for maxent/entropy/semantic.py: semantic entropy of answer groups and SEED-GRPO's advantage
scaling."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from maxent.entropy.semantic import (
    SEED_MODES,
    cluster_answers,
    seed_advantages,
    seed_scale,
    semantic_entropy,
)


def test_uniform_clusters_give_log_g_and_one_cluster_gives_zero():
    for g in (2, 4, 8):
        assert semantic_entropy(list(range(g))) == pytest.approx(math.log(g))
        assert semantic_entropy(["42"] * g) == 0.0
        assert semantic_entropy(list(range(g)), estimator="monte_carlo") == pytest.approx(
            math.log(g))
    # Two equal clusters of two: log 2 whatever G.
    assert semantic_entropy([1, 1, 2, 2]) == pytest.approx(math.log(2))


def test_unparsable_answers_are_singletons():
    assert cluster_answers([None, 3, None, 3]) == [0, 1, 2, 1]
    # {None}, {None}, {3, 3}: p = (1/4, 1/4, 1/2)
    expected = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert semantic_entropy([None, 3, None, 3]) == pytest.approx(expected)
    assert semantic_entropy([None] * 4) == pytest.approx(math.log(4))


def test_weights_are_respected_and_renormalised():
    # Clusters {a, a} and {b, b} with sequence probabilities 0.1, 0.1, 0.4, 0.4 -> p = (0.2, 0.8).
    expected = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    se = semantic_entropy(["a", "a", "b", "b"], [0.1, 0.1, 0.4, 0.4])
    assert se == pytest.approx(expected)
    assert semantic_entropy(["a", "a", "b", "b"], [1, 1, 4, 4]) == pytest.approx(expected)
    logw = torch.log(torch.tensor([1e-30, 1e-30, 4e-30, 4e-30], dtype=torch.float64))
    assert semantic_entropy(["a", "a", "b", "b"], logw, log_weights=True) == pytest.approx(expected)
    # Uniform weights equal frequencies; monte_carlo differs for uneven clusters.
    assert semantic_entropy([1, 1, 1, 2], [1, 1, 1, 1]) == pytest.approx(semantic_entropy([1, 1, 1, 2]))
    mc = semantic_entropy(["a", "a", "b", "b"], [0.1, 0.1, 0.4, 0.4], estimator="monte_carlo")
    assert mc == pytest.approx(-(math.log(0.2) + math.log(0.8)) / 2)


def test_custom_equivalence():
    def same_mod_10(a, b):
        return a % 10 == b % 10

    assert cluster_answers([1, 11, 2, 21, 12], same_mod_10) == [0, 0, 1, 0, 1]
    assert semantic_entropy([1, 11, 21, 31], equivalent=same_mod_10) == 0.0


def test_seed_leaves_confident_prompts_unchanged_and_shrinks_uncertain_ones():
    # Same rewards, different agreement among the answers.
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3)
    answers = [[7, 7, 7, 7],     # SE = 0 (e.g. reward from formatting, answer identical)
               [3, 4, 4, 4],     # low SE
               [3, 4, 5, 6]]     # SE = log 4 (maximal)
    plain = rewards - rewards.mean(1, keepdim=True)
    plain = plain / (rewards.std(1, keepdim=True) + 1e-6)
    for mode in SEED_MODES:
        adv, se = seed_advantages(rewards, answers, alpha=0.5, mode=mode)
        assert se[0] == 0.0 and se[2].item() == pytest.approx(math.log(4))
        torch.testing.assert_close(adv[0], plain[0])                 # confident: unchanged
        f = seed_scale(0.5 * se / math.log(4), mode)
        torch.testing.assert_close(adv, plain * f[:, None])
        assert 0 < f[2] < f[1] < f[0] == 1.0                          # more doubt, smaller step
    adv, _ = seed_advantages(rewards, answers, alpha=0.5, mode="linear")
    torch.testing.assert_close(adv[2], plain[2] * 0.5)  # f = 1 - 0.5 * log4 / log4
    adv, _ = seed_advantages(rewards, answers, alpha=0.5, mode="exponential")
    torch.testing.assert_close(adv[2], plain[2] * math.exp(-0.5))
    adv, _ = seed_advantages(rewards, answers, alpha=0.5, mode="focal")
    torch.testing.assert_close(adv[2], plain[2] * 0.25)
    adv, _ = seed_advantages(rewards, answers, alpha=0.5, mode="inverse")
    torch.testing.assert_close(adv[2], plain[2] / 1.5)
    # alpha = 0 is plain GRPO; scale_std=False is r - mean (the paper's / Dr.GRPO's form).
    adv, _ = seed_advantages(rewards, answers, alpha=0.0)
    torch.testing.assert_close(adv, plain)
    adv, _ = seed_advantages(rewards, answers, alpha=1.0, scale_std=False)
    torch.testing.assert_close(adv[2], torch.zeros(4))
    torch.testing.assert_close(adv[0], rewards[0] - 0.25)


def test_seed_with_sequence_probabilities():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    answers = [[3, 4, 5, 6]]
    # The model puts almost all its mass on answer 3: low SE, little shrinkage.
    w = torch.tensor([[0.97, 0.01, 0.01, 0.01]])
    adv_w, se_w = seed_advantages(rewards, answers, weights=w)
    adv_u, se_u = seed_advantages(rewards, answers)
    assert se_w[0] < 0.2 < se_u[0]
    assert adv_w[0, 0] > adv_u[0, 0] > 0


def test_bad_input():
    with pytest.raises(ValueError, match="unknown SEED mode 'cubic'.*'linear'"):
        seed_advantages(torch.zeros(1, 2), [[1, 2]], mode="cubic")
    with pytest.raises(ValueError, match="answers must be 1 sequences of 2"):
        seed_advantages(torch.zeros(1, 2), [[1, 2, 3]])
    with pytest.raises(ValueError, match="alpha must be"):
        seed_advantages(torch.zeros(1, 2), [[1, 2]], alpha=-1)
    with pytest.raises(ValueError, match="rewards must be a"):
        seed_advantages(torch.zeros(4), [[1, 2]])
    with pytest.raises(ValueError, match="weights must have one entry per answer"):
        semantic_entropy([1, 2], [0.5])
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        semantic_entropy([1, 2], [0.5, -0.5])
    with pytest.raises(ValueError, match="answers is empty"):
        semantic_entropy([])
    with pytest.raises(ValueError, match="unknown estimator"):
        semantic_entropy([1], estimator="kde")
    with pytest.raises(ValueError, match="log_weights must be < \\+inf"):
        semantic_entropy([1, 2], [0.0, math.inf], log_weights=True)


def mp_semantic_entropy(ids, log_w, estimator):
    """Plug-in or Monte-Carlo SE of clusters ``ids`` with log-weights ``log_w``, to 40 digits."""
    spread = max(log_w) - min(x for x in log_w if x > -math.inf)
    mpmath.mp.dps = 40 + int(spread / 2.3)  # 1 + R keeps 40 digits of R
    mass = {}
    for cid, lw in zip(ids, log_w):
        if lw > -math.inf:
            mass[cid] = mass.get(cid, 0) + mpmath.exp(mpmath.mpf(lw) - max(log_w))
    total = mpmath.fsum(mass.values())
    log_p = [mpmath.log(m / total) for m in mass.values()]
    if estimator == "plugin":
        return float(-mpmath.fsum(mpmath.exp(lp) * lp for lp in log_p))
    return float(-mpmath.fsum(log_p) / len(log_p))


def se_error_bound(log_w):
    """SE = log1p(R) + sum of non-negative terms, each with relative error <= (2 D + G + 8) u
    in float64: the log-weights are shifted by their maximum (error <= u D, D their spread),
    each cluster's log-mass below the largest, s_k, is then a logsumexp of those and a
    difference (another u D), and exp(s_k) carries that absolute error as a relative one; the
    G-term sums and log1p add a few u. Doubled for safety."""
    finite = [x for x in log_w if x > -math.inf]
    return 2 * (2 * (max(finite) - min(finite)) + len(log_w) + 8) * 2.0**-53


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.integers(0, 3), min_size=1, max_size=8),
    log_w=st.lists(st.floats(-700.0, 0.0) | st.just(-math.inf), min_size=8, max_size=8),
    estimator=st.sampled_from(["plugin", "monte_carlo"]),
)
# Near collapse: one cluster holds all but e^-40 / 3 of the mass, below float64's resolution of
# 1, so a float64 -sum p log p drops the certain cluster's own term (2.4 % of SE).
@example(ids=[0, 0, 0, 1], log_w=[0.0, 0.0, 0.0, -40.0] + [0.0] * 4, estimator="plugin")
def test_semantic_entropy_matches_40_digit_reference(ids, log_w, estimator):
    log_w = log_w[:len(ids)]
    if all(x == -math.inf for x in log_w):
        log_w[0] = 0.0
    answers = [f"answer {i}" for i in ids]
    got = semantic_entropy(answers, torch.tensor(log_w, dtype=torch.float64), log_weights=True,
                           estimator=estimator)
    ref = mp_semantic_entropy(ids, log_w, estimator)
    assert abs(got - ref) <= se_error_bound(log_w) * ref, (got, ref)
    # The same distribution as linear weights (where they do not underflow).
    if estimator == "plugin" and min(x for x in log_w if x > -math.inf) > -700:
        lin = semantic_entropy(answers, [math.exp(x) for x in log_w], estimator=estimator)
        assert abs(lin - ref) <= se_error_bound(log_w) * ref + 1e-15, (lin, ref)


def test_semantic_entropy_keeps_its_digits_near_collapse():
    answers = ["a", "a", "a", "b"]
    for d in (5.0, 36.0, 40.0, 100.0, 699.0):
        logw = torch.tensor([0.0, 0.0, 0.0, -d], dtype=torch.float64)
        for estimator in ("plugin", "monte_carlo"):
            ref = mp_semantic_entropy([0, 0, 0, 1], logw.tolist(), estimator)
            got = semantic_entropy(answers, logw, log_weights=True, estimator=estimator)
            assert got == pytest.approx(ref, rel=1e-13, abs=0), (d, estimator)
