"""Tests for agents/channels.py: exact states and channels, and front-door surgery (Jacobs,
Kissinger & Zanasi 2019) against the paper's numbers, the textbook formula and the truth."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maxent.channels import (
    Channel,
    State,
    comb_disintegrate,
    front_door_formula,
    interventional_from_mechanisms,
    surgery_front_door,
    surgery_front_door_joint,
)

# The paper's smoking example: ω over (S, T, C) in order 000 ... 111.
PAPER = [0.5, 0.1, 0.01, 0.02, 0.1, 0.05, 0.02, 0.2]


def paper_joint() -> State:
    return State(PAPER, ("S", "T", "C"), (2, 2, 2))


def random_simplex(rng, shape):
    """Rows of the last axis drawn uniformly from the simplex; strictly positive."""
    a = rng.dirichlet(np.ones(shape[-1]), size=int(np.prod(shape[:-1], dtype=int)))
    return a.reshape(shape)


def random_channel(rng, inputs, in_dims, outputs, out_dims):
    m = random_simplex(rng, (*in_dims, int(np.prod(out_dims)))).reshape(*in_dims, *out_dims)
    return Channel(m, inputs, outputs)


def random_state(rng, names, dims):
    return State(random_simplex(rng, (int(np.prod(dims)),)).reshape(dims), names)


dims3 = st.tuples(*[st.integers(2, 4)] * 3)
seeds = st.integers(0, 2**32 - 1)


# --- the paper's worked example ---


def test_paper_interventional_numbers():
    do = surgery_front_door(paper_joint(), "S", "T", "C")
    assert do.inputs == ("S",) and do.outputs == ("C",)
    assert do(S=1).prob(C=1) == pytest.approx(0.5423, abs=1e-4)
    assert do(S=0).prob(C=1) == pytest.approx(0.2535, abs=1e-4)
    np.testing.assert_allclose(do.matrix, front_door_formula(paper_joint().probs), atol=1e-15)


def test_paper_observational_differs_from_interventional():
    obs = paper_joint().conditional("C", "S")
    assert obs(S=1).prob(C=1) == pytest.approx(0.6757, abs=1e-4)
    do = surgery_front_door(paper_joint(), "S", "T", "C")
    assert abs(obs(S=1).prob(C=1) - do(S=1).prob(C=1)) > 0.1


def test_paper_joint_channel_and_comb():
    w = paper_joint()
    joint = surgery_front_door_joint(w, "S", "T", "C")
    assert joint.outputs == ("T", "C")
    np.testing.assert_allclose(
        joint.marginal("C").matrix, surgery_front_door(w, "S", "T", "C").matrix, atol=1e-15
    )
    # T is not confounded with S: P(t | do(s)) = P(t | s).
    np.testing.assert_allclose(
        joint.marginal("T").matrix, w.conditional("T", "S").matrix, atol=1e-15
    )
    comb = comb_disintegrate(w, "S", "T", "C")
    np.testing.assert_allclose(comb.prior.probs, [0.63, 0.37], atol=1e-15)
    np.testing.assert_allclose(comb.reassemble().probs, w.probs, atol=1e-15)
    np.testing.assert_allclose(comb.surgery().matrix, joint.matrix, atol=1e-15)


def test_variable_order_and_extra_variables_do_not_matter():
    w = paper_joint()
    rng = np.random.default_rng(0)
    extra = random_state(rng, ("X",), (3,))
    big = (extra @ w).marginal("C", "X", "T", "S")  # axes shuffled, one irrelevant variable
    np.testing.assert_allclose(
        surgery_front_door(big, "S", "T", "C").matrix,
        surgery_front_door(w, "S", "T", "C").matrix,
        atol=1e-15,
    )


# --- surgery against the textbook formula and the ground truth ---


@settings(max_examples=60, deadline=None)
@given(dims=dims3, seed=seeds)
def test_surgery_equals_front_door_formula(dims, seed):
    w = random_state(np.random.default_rng(seed), ("S", "T", "C"), dims)
    do = surgery_front_door(w, "S", "T", "C")
    assert do.matrix.shape == (dims[0], dims[2])
    np.testing.assert_allclose(do.matrix, front_door_formula(w.probs), rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(dims=dims3, n_u=st.integers(2, 4), seed=seeds)
def test_surgery_recovers_true_interventional(dims, n_u, seed):
    ns, nt, nc = dims
    rng = np.random.default_rng(seed)
    p_u = random_simplex(rng, (n_u,))
    p_su = random_simplex(rng, (n_u, ns))
    p_ts = random_simplex(rng, (ns, nt))
    p_ctu = random_simplex(rng, (nt, n_u, nc))
    joint, true_do = interventional_from_mechanisms(p_u, p_su, p_ts, p_ctu)
    assert joint.shape == true_do.shape == (ns, nt, nc)
    w = State(joint, ("S", "T", "C"))
    np.testing.assert_allclose(
        surgery_front_door_joint(w, "S", "T", "C").matrix, true_do, rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        surgery_front_door(w, "S", "T", "C").matrix, true_do.sum(1), rtol=0, atol=1e-12
    )


def test_mechanisms_ground_truth_by_hand():
    # One confounder value per S value: S = U exactly; C = T xor U.
    p_u = np.array([0.3, 0.7])
    p_su = np.eye(2)
    p_ts = np.array([[0.9, 0.1], [0.2, 0.8]])
    p_ctu = np.zeros((2, 2, 2))
    for t in range(2):
        for u in range(2):
            p_ctu[t, u, t ^ u] = 1.0
    joint, do = interventional_from_mechanisms(p_u, p_su, p_ts, p_ctu)
    assert joint[1, 1, 0] == pytest.approx(0.7 * 0.8)  # u=1, s=1, t=1, c=0
    # do(S=0): T ~ (0.9, 0.1), U ~ (0.3, 0.7) independently; C = 1 iff T != U.
    assert do[0, :, 1].sum() == pytest.approx(0.9 * 0.7 + 0.1 * 0.3)
    # Without confounding the interventional equals the observational conditional.
    joint, do = interventional_from_mechanisms(p_u, np.full((2, 2), 0.5), p_ts, p_ctu)
    np.testing.assert_allclose(do, joint / joint.sum((1, 2), keepdims=True), atol=1e-15)


def test_zero_mediator_value_is_still_identified():
    rng = np.random.default_rng(3)
    w = random_simplex(rng, (2 * 3 * 2,)).reshape(2, 3, 2)
    w[:, 1, :] = 0.0  # T=1 never happens: its terms carry no weight
    w /= w.sum()
    do = surgery_front_door(State(w, ("S", "T", "C")), "S", "T", "C")
    np.testing.assert_allclose(do.matrix, front_door_formula(w), atol=1e-12)


# --- composition laws ---


def test_then_is_associative_and_matches_matrix_product():
    rng = np.random.default_rng(1)
    f = random_channel(rng, ("A",), (2,), ("B",), (3,))
    g = random_channel(rng, ("B",), (3,), ("C", "D"), (2, 2))
    h = random_channel(rng, ("D", "C"), (2, 2), ("E",), (4,))
    np.testing.assert_allclose((f >> g >> h).matrix, f.then(g.then(h)).matrix, atol=1e-15)
    gm = g.matrix.reshape(3, 4)
    hm = h.matrix.transpose(1, 0, 2).reshape(4, 4)  # h's inputs are (D, C): reorder to (C, D)
    np.testing.assert_allclose((f >> g >> h).matrix, f.matrix @ gm @ hm, atol=1e-15)


def test_parallel_composition_marginals():
    rng = np.random.default_rng(2)
    f = random_channel(rng, ("A",), (2,), ("B",), (3,))
    g = random_channel(rng, ("X", "Y"), (2, 3), ("Z",), (4,))
    s1, s2 = random_state(rng, ("A",), (2,)), random_state(rng, ("X", "Y"), (2, 3))
    fg = f.parallel(g)
    assert fg.inputs == ("A", "X", "Y") and fg.outputs == ("B", "Z")
    out = fg.push(s1 @ s2)
    np.testing.assert_allclose(out.marginal("B").probs, f.push(s1).probs, atol=1e-15)
    np.testing.assert_allclose(out.marginal("Z").probs, g.push(s2).probs, atol=1e-15)
    np.testing.assert_allclose(out.probs, (f.push(s1) @ g.push(s2)).probs, atol=1e-15)
    np.testing.assert_allclose(fg.marginal("Z").matrix[0], g.matrix, atol=1e-15)


def test_copy_then_marginal_is_the_state():
    rng = np.random.default_rng(4)
    s = random_state(rng, ("A", "B"), (3, 2))
    copied = Channel.copier("A", 3, ("A1", "A2")).push(s)
    np.testing.assert_allclose(copied.marginal("A1").probs, s.marginal("A").probs, atol=1e-15)
    np.testing.assert_allclose(copied.marginal("A2").probs, s.marginal("A").probs, atol=1e-15)
    np.testing.assert_allclose(copied.probs, np.diag(s.marginal("A").probs), atol=1e-15)
    c = s.copy("A", "A'")
    assert c.names == ("A", "B", "A'")
    np.testing.assert_allclose(c.marginal("A'", "B").probs, s.probs, atol=1e-15)
    assert c.prob(A=0, **{"A'": 1}) == 0.0
    np.testing.assert_allclose((s >> Channel.identity("B", 2, "B2")).probs, s.marginal("B").probs)


@settings(max_examples=30, deadline=None)
@given(dims=dims3, seed=seeds)
def test_conditional_round_trip(dims, seed):
    w = random_state(np.random.default_rng(seed), ("S", "T", "C"), dims)
    cond = w.conditional(("C", "S"), "T")
    back = cond.joint_with(w.marginal("T")).marginal("S", "T", "C")
    np.testing.assert_allclose(back.probs, w.probs, atol=1e-15)
    assert cond(T=1).prob(S=0) == pytest.approx(w.prob(S=0, T=1) / w.prob(T=1), rel=1e-12)


def test_marginal_keeps_requested_order():
    w = paper_joint()
    np.testing.assert_allclose(w.marginal("C", "S").probs, w.probs.sum(1).T, atol=1e-15)
    assert w.prob(S=1) == pytest.approx(0.37)


# --- errors name the problem ---


def test_state_validation_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        State([0.5, 0.4], ("A",))
    with pytest.raises(ValueError, match="negative"):
        State([1.5, -0.5], ("A",))
    with pytest.raises(ValueError, match="does not match dims"):
        State(PAPER, ("S", "T", "C"), (2, 2, 3))
    with pytest.raises(ValueError, match="3 names"):
        State([0.5, 0.5], ("A", "B", "C"))
    with pytest.raises(ValueError, match="duplicate"):
        State(np.full((2, 2), 0.25), ("A", "A"))
    with pytest.raises(ValueError, match="disjoint"):
        paper_joint() @ paper_joint()


def test_channel_validation_errors():
    with pytest.raises(ValueError, match="sum to 1 for each input"):
        Channel([[0.5, 0.5], [0.5, 0.4]], ("A",), ("B",))
    with pytest.raises(ValueError, match="negative"):
        Channel([[1.5, -0.5], [0.5, 0.5]], ("A",), ("B",))
    with pytest.raises(ValueError, match="axes"):
        Channel(np.full((2, 2), 0.5), ("A", "B"), ("C",))
    f = Channel(np.eye(2), ("A",), ("B",))
    with pytest.raises(ValueError, match="inputs"):
        f.then(Channel(np.eye(2), ("C",), ("D",)))
    with pytest.raises(ValueError, match="unknown variable"):
        f.push(State([0.5, 0.5], ("Z",)))
    with pytest.raises(ValueError, match="exactly the inputs"):
        f(B=0)


def test_unknown_name_is_named_with_the_existing_ones():
    with pytest.raises(ValueError, match=r"unknown variable\(s\) \['X'\].*'S', 'T', 'C'"):
        surgery_front_door(paper_joint(), "X", "T", "C")
    with pytest.raises(ValueError, match="unknown variable"):
        paper_joint().marginal("S", "Q")
    with pytest.raises(ValueError, match="distinct"):
        surgery_front_door(paper_joint(), "S", "S", "C")


def test_conditional_on_zero():
    w = State([[0.5, 0.5], [0.0, 0.0]], ("A", "B"))
    with pytest.raises(ValueError, match=r"P\(A=1\) = 0"):
        w.conditional("B", "A")
    np.testing.assert_allclose(w.conditional("B", "A", on_zero="uniform").matrix, 0.5)


def test_non_identified_cases_raise():
    w = np.array(PAPER).reshape(2, 2, 2)
    gap = w.copy()
    gap[0, 1, :] = 0.0  # P(S=0, T=1) = 0 but P(T=1) > 0: P(c | S=0, T=1) is needed
    gap /= gap.sum()
    for fn in (
        lambda: surgery_front_door(State(gap, ("S", "T", "C")), "S", "T", "C"),
        lambda: surgery_front_door_joint(State(gap, ("S", "T", "C")), "S", "T", "C"),
        lambda: front_door_formula(gap),
    ):
        with pytest.raises(ValueError, match=r"S=0, T=1\) = 0.*not identified"):
            fn()
    no_s = w.copy()
    no_s[1] = 0.0  # do(S=1) is never observed
    no_s /= no_s.sum()
    with pytest.raises(ValueError, match=r"P\(S=1\) = 0.*not identified"):
        surgery_front_door(State(no_s, ("S", "T", "C")), "S", "T", "C")
    with pytest.raises(ValueError, match="sum to 1"):
        front_door_formula(w * 2)
    with pytest.raises(ValueError, match="shape"):
        front_door_formula(w.reshape(2, 4))


def test_mechanism_validation_errors():
    ok = (np.full(2, 0.5), np.full((2, 2), 0.5), np.full((2, 2), 0.5), np.full((2, 2, 2), 0.5))
    with pytest.raises(ValueError, match="p_t_given_s must sum to 1"):
        interventional_from_mechanisms(ok[0], ok[1], np.full((2, 2), 0.4), ok[3])
    with pytest.raises(ValueError, match="shapes disagree"):
        interventional_from_mechanisms(ok[0], ok[1], ok[2], np.full((2, 3, 2), 0.5))
    with pytest.raises(ValueError, match="p_u must have 1 axes"):
        interventional_from_mechanisms(ok[1], *ok[1:])
