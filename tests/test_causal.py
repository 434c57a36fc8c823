"""Tests for envs/causal.py (the confounded front-door bandit) and agents/causal.py (surgery,
naive and UCB agents)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import maxent.envs  # noqa: F401  (registers maxent/ConfoundedCausalBandit-v0)
from maxent.agents.causal import (
    NaiveAgent,
    SurgeryAgent,
    SurgeryConfig,
    UCBAgent,
    UCBConfig,
)
from maxent.training.checkpoint import CheckpointError
from maxent.envs.causal import SMOKING_JOINT, ConfoundedCausalBandit


def front_door_by_hand(joint: np.ndarray) -> np.ndarray:
    """P(c | do(s)) = Σ_t P(t|s) Σ_s' P(c|s',t) P(s'), written out with loops, shape (S, C)."""
    n_s, n_t, n_c = joint.shape
    p_s = joint.sum(axis=(1, 2))
    p_st = joint.sum(axis=2)
    out = np.zeros((n_s, n_c))
    for s in range(n_s):
        for c in range(n_c):
            for t in range(n_t):
                inner = sum(joint[s2, t, c] / p_st[s2, t] * p_s[s2] for s2 in range(n_s))
                out[s, c] += p_st[s, t] / p_s[s] * inner
    return out


def random_mechanisms(rng: np.random.Generator, n_u=2, n_s=2, n_t=2, n_c=2):
    return {"p_u": rng.dirichlet(np.ones(n_u)),
            "p_s_given_u": rng.dirichlet(np.ones(n_s), n_u),
            "p_t_given_s": rng.dirichlet(np.ones(n_t), n_s),
            "p_c_given_t_u": rng.dirichlet(np.ones(n_c), (n_t, n_u))}


# --------------------------------------------------------------------------- env


@pytest.mark.parametrize("make", [
    ConfoundedCausalBandit.smoking,
    lambda: ConfoundedCausalBandit.random(3, n_s=3, n_t=2, n_c=3, n_u=4),
])
def test_env_passes_both_checkers(make):
    gym_check_env(make(), skip_render_check=True)
    sb3_check_env(make(), warn=True)


def test_registered_id_is_the_smoking_world():
    env = gym.make("maxent/ConfoundedCausalBandit-v0")
    gym_check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    np.testing.assert_allclose(env.unwrapped.arm_values(), [0.7465, 0.4577], atol=1e-4)


def test_smoking_arm_values_are_the_papers():
    env = ConfoundedCausalBandit.smoking()
    # P(C=1 | do(S=1)) ≈ 0.5423, P(C=1 | do(S=0)) ≈ 0.2535; reward is 1[C == 0].
    np.testing.assert_allclose(env.arm_values(), [1 - 0.2535, 1 - 0.5423], atol=1e-4)
    np.testing.assert_allclose(env.arm_values(), 1 - front_door_by_hand(SMOKING_JOINT)[:, 1],
                               atol=1e-12)
    # The confounded conditional is different: P(C=1 | S=1) ≈ 0.6757.
    assert env.observational_values()[1] == pytest.approx(1 - 0.6757, abs=1e-4)


def test_joint_world_matches_mechanism_world():
    """For a front-door world, surgery on the observational joint recovers the true effect."""
    rng = np.random.default_rng(7)
    for _ in range(5):
        mech = random_mechanisms(rng, n_u=3, n_s=3, n_t=2, n_c=3)
        truth = ConfoundedCausalBandit(**mech)
        from_joint = ConfoundedCausalBandit(truth.joint)
        np.testing.assert_allclose(from_joint.interventional, truth.interventional, atol=1e-12)
        # truth computed independently of the env: E[R | do(s)] = Σ_u p(u) Σ_t p(t|s) p(C=0|t,u)
        direct = np.einsum("u,st,tu->s", mech["p_u"], mech["p_t_given_s"],
                           mech["p_c_given_t_u"][:, :, 0])
        np.testing.assert_allclose(truth.arm_values(), direct, atol=1e-12)


def test_interventional_frequencies_match_arm_values():
    env = ConfoundedCausalBandit.smoking()
    env.reset(seed=123)
    n = 20_000
    for s in range(2):
        outcomes = np.zeros((2, 2))
        rewards = 0.0
        for _ in range(n):
            _, r, _, _, info = env.step(s)
            outcomes[info["mediator"], info["effect"]] += 1
            rewards += r
        p = env.interventional[s].ravel()
        freq = outcomes.ravel() / n
        assert np.all(np.abs(freq - p) < 4.5 * np.sqrt(p * (1 - p) / n)), (s, freq, p)
        v = env.arm_values()[s]
        assert abs(rewards / n - v) < 4.5 * np.sqrt(v * (1 - v) / n)


def test_observational_samples_match_joint_and_observations_are_observational():
    env = ConfoundedCausalBandit.smoking()
    env.reset(seed=5)
    n = 100_000
    samples = env.observational_samples(n)
    assert samples.shape == (n, 3) and samples.dtype == np.int64
    freq = np.zeros((2, 2, 2))
    np.add.at(freq, tuple(samples.T), 1.0 / n)
    p = SMOKING_JOINT
    assert np.all(np.abs(freq - p) < 4.5 * np.sqrt(p * (1 - p) / n))
    # The per-step observation is a draw from the same joint, whatever arm is pulled.
    m = 20_000
    obs_freq = np.zeros((2, 2, 2))
    for _ in range(m):
        obs, *_ = env.step(1)
        obs_freq[tuple(obs)] += 1.0 / m
    assert np.all(np.abs(obs_freq - p) < 4.5 * np.sqrt(p * (1 - p) / m))


def test_seeding_is_reproducible():
    a, b = ConfoundedCausalBandit.smoking(), ConfoundedCausalBandit.smoking()
    oa, _ = a.reset(seed=42)
    ob, _ = b.reset(seed=42)
    np.testing.assert_array_equal(oa, ob)
    steps_a = [a.step(i % 2)[:2] for i in range(50)]
    steps_b = [b.step(i % 2)[:2] for i in range(50)]
    for (x, rx), (y, ry) in zip(steps_a, steps_b):
        np.testing.assert_array_equal(x, y)
        assert rx == ry


def test_truncates_at_horizon():
    env = ConfoundedCausalBandit.smoking(horizon=3)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_random_misleading_worlds_rank_arms_wrongly():
    for seed in range(10):
        env = ConfoundedCausalBandit.random(seed, misleading=True, n_s=2 + seed % 2)
        mech = env.mechanisms
        # Recompute both rankings here, not through the env's own helpers.
        joint = np.einsum("u,us,st,tuc->stc", mech["p_u"], mech["p_s_given_u"],
                          mech["p_t_given_s"], mech["p_c_given_t_u"])
        naive = joint[:, :, 0].sum(1) / joint.sum(axis=(1, 2))  # P(C=0 | S=s)
        true = np.einsum("u,st,tu->s", mech["p_u"], mech["p_t_given_s"],
                         mech["p_c_given_t_u"][:, :, 0])  # P(C=0 | do(S=s))
        assert np.argmax(naive) != np.argmax(true)
        assert true.max() - true[np.argmax(naive)] >= 0.05


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        ConfoundedCausalBandit(SMOKING_JOINT * 2)
    negative = SMOKING_JOINT.copy()
    negative[0, 0, 0], negative[0, 0, 1] = -0.1, 0.7
    with pytest.raises(ValueError, match="non-negative"):
        ConfoundedCausalBandit(negative)
    with pytest.raises(ValueError, match="3 axes"):
        ConfoundedCausalBandit(SMOKING_JOINT.ravel())
    with pytest.raises(ValueError, match="reward_table"):
        ConfoundedCausalBandit(SMOKING_JOINT, reward_table=np.ones((2, 2)))
    no_smokers = np.zeros((2, 2, 2))
    no_smokers[0] = 0.25
    with pytest.raises(ValueError, match="positivity"):
        ConfoundedCausalBandit(no_smokers)
    mech = random_mechanisms(np.random.default_rng(0))
    with pytest.raises(ValueError, match="not both"):
        ConfoundedCausalBandit(SMOKING_JOINT, **mech)
    with pytest.raises(ValueError, match="missing"):
        ConfoundedCausalBandit(p_u=mech["p_u"])
    with pytest.raises(ValueError, match="shapes disagree"):
        ConfoundedCausalBandit(**{**mech, "p_t_given_s": np.full((3, 2), 0.5)})
    with pytest.raises(ValueError, match="horizon"):
        ConfoundedCausalBandit(SMOKING_JOINT, horizon=0)
    env = ConfoundedCausalBandit.smoking()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(2)
    with pytest.raises(ValueError, match="SurgeryConfig.prior"):
        SurgeryConfig(prior=0.0)
    with pytest.raises(ValueError, match="SurgeryConfig.warmup_samples"):
        SurgeryConfig(warmup_samples=-1)
    with pytest.raises(ValueError, match="UCBConfig.c"):
        UCBConfig(c=-1.0)


# --------------------------------------------------------------------------- agents


def estimation_error(agent_cls, env: ConfoundedCausalBandit, n: int, seed: int) -> float:
    agent = agent_cls(env, seed=seed)
    env.reset(seed=seed)
    agent.observe(env.observational_samples(n))
    return float(np.abs(agent.estimated_values() - env.arm_values()).max())


def test_surgery_estimates_converge_at_root_n():
    worlds = [ConfoundedCausalBandit.smoking()] + [ConfoundedCausalBandit.random(i) for i in range(3)]
    small = np.mean([estimation_error(SurgeryAgent, w, 400, s)
                     for w in worlds for s in range(10)])
    large = np.mean([estimation_error(SurgeryAgent, w, 40_000, s)
                     for w in worlds for s in range(10)])
    assert large < small / 4  # 1/sqrt(N) predicts a factor 10
    assert large < 0.01
    # The naive conditional converges too, but to the wrong numbers.
    assert estimation_error(NaiveAgent, worlds[0], 40_000, 0) > 0.05


def test_greedy_ties_go_to_the_lowest_arm():
    # No data: the smoothed joint is uniform, every arm looks the same.
    assert SurgeryAgent(ConfoundedCausalBandit.smoking()).predict(None) == 0
    assert NaiveAgent(ConfoundedCausalBandit.smoking()).predict(None) == 0


def test_warmup_samples_are_free_and_counted():
    env = ConfoundedCausalBandit.smoking()
    agent = SurgeryAgent(env, SurgeryConfig(warmup_samples=500), seed=0).learn(10)
    assert agent.counts.sum() == 500 + 1 + 10  # warmup, the reset's observation, 10 steps
    assert agent.num_timesteps == 10
    assert agent.predict(None) == 0 and agent.regret == 0.0


def test_surgery_beats_naive_on_misleading_worlds():
    surgery = naive = 0.0
    for seed in range(4):
        env = ConfoundedCausalBandit.random(100 + seed, misleading=True)
        surgery += SurgeryAgent(env, seed=seed).learn(400).regret
        naive += NaiveAgent(env, seed=seed).learn(400).regret
    assert surgery < 0.5 * naive


def test_surgery_beats_ucb_over_a_short_horizon():
    surgery = ucb = 0.0
    worlds = [ConfoundedCausalBandit.smoking()] + [ConfoundedCausalBandit.random(200 + i)
                                                   for i in range(4)]
    for seed, env in enumerate(worlds):
        surgery += SurgeryAgent(env, SurgeryConfig(warmup_samples=200), seed=seed).learn(300).regret
        ucb += UCBAgent(env, seed=seed).learn(300).regret
    assert surgery < ucb


def test_ucb_finds_the_best_arm():
    env = ConfoundedCausalBandit.smoking()
    agent = UCBAgent(env, seed=0).learn(2000)
    assert agent.predict(None) == 0
    assert agent.arm_counts[0] > agent.arm_counts[1]
    assert len(agent.episode_returns) == 2 and len(agent.regret_curve) == 2000


@pytest.mark.parametrize("cls", [SurgeryAgent, NaiveAgent, UCBAgent])
def test_save_load_round_trip(cls, tmp_path):
    env = ConfoundedCausalBandit.random(11, n_s=3)
    agent = cls(env, seed=3).learn(250)
    path = agent.save(tmp_path / "agent")
    loaded = cls.load(path, env=env)
    obs = np.zeros((4, 3), dtype=np.int64)
    assert loaded.predict(obs[0]) == agent.predict(obs[0])
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    assert loaded.num_timesteps == agent.num_timesteps == 250
    assert loaded.regret == agent.regret
    np.testing.assert_array_equal(loaded.arm_counts, agent.arm_counts)
    if cls is not UCBAgent:
        np.testing.assert_array_equal(loaded.counts, agent.counts)
        np.testing.assert_allclose(loaded.estimated_values(), agent.estimated_values())
    loaded.learn(10)
    assert loaded.num_timesteps == 260
    other = UCBAgent if cls is not UCBAgent else SurgeryAgent
    with pytest.raises(CheckpointError):
        other.load(path, env=env)
    with pytest.raises(ValueError, match="env="):
        cls.load(path)


def test_load_from_registered_id(tmp_path):
    agent = SurgeryAgent("maxent/ConfoundedCausalBandit-v0", seed=1).learn(50)
    loaded = SurgeryAgent.load(agent.save(tmp_path / "a"))
    assert loaded.env_id == "maxent/ConfoundedCausalBandit-v0"
    assert loaded.predict(None) == agent.predict(None)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_total_steps_rejected(steps):
    agent = SurgeryAgent(ConfoundedCausalBandit.smoking())
    with pytest.raises(ValueError, match="total_steps"):
        agent.learn(steps)
