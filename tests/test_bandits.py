"""Tests for agents/bandits.py, agents/lsd.py and agents/planners.py: UCB1, Thompson, Boltzmann
(temperature from the layer), the LSD planners (exact, LP rounding, greedy) and online learners
(ISI-CombUCB1, CombUCB1, optimistic)."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest

import maxent.envs  # noqa: F401  (registers the ids)
from maxent.agents.bandits import (
    UCB1,
    Boltzmann,
    BoltzmannConfig,
    Thompson,
    ThompsonConfig,
    UCB1Config,
)
from maxent.agents.lsd import (
    CombUCB1,
    CombUCBConfig,
    ExactPlanner,
    GreedyOracle,
    ISICombUCB1,
    LPConfig,
    LPPlanner,
    OptimisticConfig,
    OptimisticPlanner,
)
from maxent.agents.planners import (
    BlockOracle,
    StateGraph,
    exact_block_plan,
    finite_horizon_values,
    recharging_lp,
    solve_long_run,
)
from maxent.training.checkpoint import CheckpointError
from maxent.envs.lsd import LSDBandit

# --------------------------------------------------------------------------- brute force


def periodic_average(model, start, seq):
    """Long-run average of repeating ``seq`` forever from ``start`` (cycle detection)."""
    idx, seen, per_period = start.copy(), {}, []
    while tuple(idx) not in seen:
        seen[tuple(idx)] = len(per_period)
        total = 0.0
        for a in seq:
            total += model.payoff(idx, a)
            idx = model.step_indices(idx, a)
        per_period.append(total / len(seq))
    return float(np.mean(per_period[seen[tuple(idx)]:]))


def brute_force_long_run(model, start, max_period):
    return max(periodic_average(model, start, seq) for p in range(1, max_period + 1)
               for seq in itertools.product(range(model.n_arms), repeat=p))


def brute_force_finite(model, start, horizon):
    best = -np.inf
    for seq in itertools.product(range(model.n_arms), repeat=horizon):
        idx, total = start.copy(), 0.0
        for a in seq:
            total += model.payoff(idx, a)
            idx = model.step_indices(idx, a)
        best = max(best, total)
    return best


# --------------------------------------------------------------------------- exact planning


@pytest.mark.parametrize("form", ["recharging", "lsd"])
def test_exact_planner_matches_brute_force_over_periodic_schedules(form):
    rng = np.random.default_rng(0)
    for _ in range(4):
        env = LSDBandit.random_recharging(2, 3, rng) if form == "recharging" \
            else LSDBandit.random_lsd(2, 2, rng, satiation_rate=1.0, recovery_rate=1.0)
        start = env.initial_index
        n_states = len(StateGraph(env.model, start))
        plan = solve_long_run(env.model, start)
        # every optimal cycle of the state graph has length <= its number of states
        assert plan.gain == pytest.approx(brute_force_long_run(env.model, start, n_states),
                                          abs=1e-12)
        # the policy realises the gain
        idx = start.copy()
        payoffs = []
        for _ in range(200):
            a = plan.policy[tuple(idx)]
            payoffs.append(env.model.payoff(idx, a))
            idx = env.model.step_indices(idx, a)
        cycle_len = len(plan.cycle)
        assert np.mean(payoffs[-cycle_len * 10:]) == pytest.approx(plan.gain, abs=1e-12)


def test_finite_horizon_values_match_brute_force():
    rng = np.random.default_rng(1)
    for env in (LSDBandit.random_recharging(2, 3, rng), LSDBandit.random_lsd(2, 2, rng),
                LSDBandit.random_recharging(3, 2, rng)):
        values = finite_horizon_values(env.model, env.initial_index, 6)
        for t in (1, 4, 6):
            assert values[t - 1] == pytest.approx(
                brute_force_finite(env.model, env.initial_index, t), abs=1e-12)


def test_reference_instance_optimum_alternates_and_greedy_is_trapped():
    env = LSDBandit.reference(form="recharging", horizon=200)
    planner = ExactPlanner(env)
    assert planner.plan.gain == pytest.approx(0.5)
    planner.learn(200)
    assert np.mean(planner.expected_rewards[2:]) == pytest.approx(0.5)
    greedy = GreedyOracle(LSDBandit.reference(form="recharging", horizon=200)).learn(200)
    assert np.mean(greedy.expected_rewards) == pytest.approx(0.06)


def test_exact_planner_refuses_huge_graphs_with_advice():
    env = LSDBandit.random_recharging(5, 6, 0)
    with pytest.raises(ValueError, match="max_states=50.*LPPlanner"):
        solve_long_run(env.model, env.initial_index, max_states=50)


# --------------------------------------------------------------------------- LP planning


def test_lp_planner_is_within_one_minus_one_over_e_of_the_exact_optimum():
    rng = np.random.default_rng(2)
    bound = 1 - 1 / math.e
    worst = np.inf
    for i in range(20):
        env = LSDBandit.random_recharging(int(rng.integers(2, 4)), int(rng.integers(2, 5)), rng)
        exact = solve_long_run(env.model, env.initial_index).gain
        planner = LPPlanner(env, config=LPConfig(n_samples=8), seed=i)
        assert planner.lp_value >= exact - 1e-9  # the LP is a relaxation
        assert max(planner.sample_averages) == planner.long_run_average
        worst = min(worst, planner.long_run_average / exact)
        # the average rounding, not only the best, clears the bound
        assert np.mean(planner.sample_averages) >= bound * exact
    assert worst >= bound


def test_lp_planner_plays_its_long_run_average():
    env = LSDBandit.random_recharging(3, 3, 4, horizon=3000)
    planner = LPPlanner(env, seed=0).learn(3000)
    assert np.mean(planner.expected_rewards[1000:]) == pytest.approx(planner.long_run_average,
                                                                    abs=0.01)


def test_recharging_lp_solution_is_feasible():
    table = np.sort(np.random.default_rng(5).random((3, 4)), axis=1)
    value, x = recharging_lp(table)
    assert x.sum() == pytest.approx(1.0)
    assert np.all(x @ np.arange(1, 5) <= 1 + 1e-9)
    assert value == pytest.approx(float((table * x).sum()))


def test_block_lp_oracle_matches_exact_block_dp():
    rng = np.random.default_rng(3)
    for k, length, d in [(2, 4, 3), (3, 5, 4), (2, 6, 5)]:
        oracle = BlockOracle(k, length, d)
        for _ in range(6):
            value, first = rng.random((k, d)), rng.random((k, length))
            for f in (None, first):
                seq = oracle.plan(value, f)
                z = oracle.encode(seq)
                assert np.all(oracle.a_ub @ z <= oracle.b_ub + 1e-9)
                got = _block_value(seq, value, f)
                best, _ = exact_block_plan(value, length, f)
                assert got >= 0.9 * best - 1e-9


def _block_value(seq, value, first):
    last, total = {}, 0.0
    for t, a in enumerate(seq):
        total += (0.0 if first is None else first[a, t]) if a not in last \
            else value[a, t - last[a] - 1]
        last[a] = t
    return total


# --------------------------------------------------------------------------- online LSD learners


def test_lsd_aware_learners_beat_unaware_ones_on_the_reference_instance():
    horizon = 660
    totals = {}
    for cls, cfg in ((ISICombUCB1, CombUCBConfig(oracle="exact")),
                     (CombUCB1, CombUCBConfig(oracle="exact")), (OptimisticPlanner, None),
                     (UCB1, None), (GreedyOracle, None)):
        env = LSDBandit.reference(form="recharging", horizon=horizon)
        totals[cls.__name__] = sum(cls(env, config=cfg, seed=0).learn(horizon).expected_rewards)
    unaware = max(totals["UCB1"], totals["GreedyOracle"])
    for name in ("ISICombUCB1", "CombUCB1", "OptimisticPlanner"):
        assert totals[name] > 1.3 * unaware, totals
    assert totals["OptimisticPlanner"] > 0.75 * 0.5 * horizon, totals


def test_isi_combucb1_with_the_lp_oracle_runs_and_learns_block_statistics():
    env = LSDBandit.reference(form="recharging", horizon=10**6)
    agent = ISICombUCB1(env, seed=0).learn(110)
    assert agent.oracle.lp_solves >= 10
    # ISI ignores first pulls: 10 blocks of 11 pulls with at most 2 first pulls each
    assert agent.counts.sum() >= 110 - 2 * 10


def test_optimistic_planner_works_in_lsd_form():
    env = LSDBandit.random_lsd(2, 3, 0, horizon=3000)
    exact = solve_long_run(env.model, env.initial_index).gain
    agent = OptimisticPlanner(env, seed=0).learn(3000)
    assert np.mean(agent.expected_rewards[-1000:]) > 0.85 * exact


def test_block_learners_and_lp_planner_refuse_the_lsd_form():
    env = LSDBandit()
    for cls in (ISICombUCB1, CombUCB1, LPPlanner):
        with pytest.raises(ValueError, match="form='recharging'.*got form='lsd'"):
            cls(env)


def test_lsd_agents_need_an_lsd_env():
    with pytest.raises(TypeError, match="LSD bandit"):
        OptimisticPlanner("CartPole-v1")


# --------------------------------------------------------------------------- generic bandits


def stationary(values, reward="bernoulli", horizon=10**6):
    """A stationary K-armed bandit: a recharging bandit with d = 1."""
    return LSDBandit(np.asarray(values, dtype=float)[:, None], form="recharging",
                     reward=reward, horizon=horizon)


@pytest.mark.parametrize("cls,cfg", [(UCB1, None), (Thompson, None),
                                     (Thompson, ThompsonConfig(likelihood="gaussian",
                                                               noise_std=0.5))])
def test_ucb_and_thompson_learn_the_stationary_best_arm(cls, cfg):
    env = stationary([0.2, 0.5, 0.7], reward="gaussian" if cfg else "bernoulli")
    agent = cls(env, config=cfg, seed=0).learn(1500)
    assert agent.predict(np.array([1, 1, 1])) == 2
    assert agent.arm_counts[2] > 0.6 * 1500
    late = np.mean(agent.expected_rewards[-500:])
    assert late > 0.65


def test_generic_agents_run_on_any_discrete_env():
    for cls in (UCB1, Thompson, Boltzmann):
        agent = cls("CartPole-v1", seed=0).learn(60)
        obs, _ = gym.make("CartPole-v1").reset(seed=0)
        assert agent.predict(obs) in (0, 1)
        assert agent.predict(np.stack([obs, obs])).shape == (2,)
    assert Thompson("CartPole-v1").likelihood == "gaussian"


def test_boltzmann_auto_temperature_holds_policy_entropy_within_ten_percent():
    env = stationary([0.1, 0.4, 0.5, 0.9])
    target = 0.8  # nats; ln 4 = 1.386
    agent = Boltzmann(env, config=BoltzmannConfig(target_entropy=target, alpha=0.01, lr=0.05),
                      seed=0).learn(3000)
    h = np.array(agent.entropy_history)
    assert h[:200].min() < 0.9 * target  # alpha = 0.01 starts far below: it had to rise
    assert agent.alpha_history[-1] > 0.01
    late = h[1000:]
    assert abs(late.mean() - target) < 0.1 * target
    assert np.mean(np.abs(late - target) < 0.1 * target) > 0.95


def test_boltzmann_fixed_and_scheduled_temperatures():
    env = stationary([0.1, 0.9])
    hot = Boltzmann(env, config=BoltzmannConfig(temperature="fixed", alpha=100.0)).learn(400)
    assert abs(hot.arm_counts[0] - 200) < 60  # near uniform
    sched = Boltzmann(env, config=BoltzmannConfig(temperature="scheduled", alpha=1.0,
                                                  alpha_end=0.01, schedule_steps=300)).learn(600)
    assert sched.alpha == pytest.approx(0.01)
    assert sched.entropy_history[-1] < sched.entropy_history[10]
    assert sched.predict(None) == 1


# --------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("cls,cfg,env_kind", [
    (UCB1, UCB1Config(c=1.0), "id"),
    (Thompson, None, "id"),
    (Boltzmann, BoltzmannConfig(target_entropy=0.4), "id"),
    (ISICombUCB1, CombUCBConfig(oracle="exact"), "id"),
    (OptimisticPlanner, OptimisticConfig(replan_every=5), "lsd"),
    (LPPlanner, LPConfig(n_samples=2), "id"),
])
def test_save_load_round_trip_and_learning_continues(cls, cfg, env_kind, tmp_path):
    env = "maxent/RechargingBandit-v0" if env_kind == "id" else LSDBandit.random_lsd(2, 2, 0)
    agent = cls(env, config=cfg, seed=3).learn(80)
    agent.save(tmp_path / "a")
    loaded = cls.load(tmp_path / "a", env=None if env_kind == "id" else env)
    assert loaded.config == agent.config and loaded.num_timesteps == 80
    np.testing.assert_array_equal(loaded.arm_counts, agent.arm_counts)
    assert loaded.rewards == agent.rewards
    for name in ("reward_sums", "counts", "sums", "successes"):
        if hasattr(agent, name):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(agent, name))
    if cls is Boltzmann:
        assert loaded.alpha == pytest.approx(agent.alpha)
    obs = np.array([1, 2]) if env_kind == "id" else np.array([-1, 1])
    assert loaded.predict(obs) == agent.predict(obs)
    loaded.learn(40)
    assert loaded.num_timesteps == 120 and loaded.arm_counts.sum() == 120


def test_load_errors(tmp_path):
    UCB1("maxent/RechargingBandit-v0").learn(5).save(tmp_path / "u")
    with pytest.raises(CheckpointError):
        Thompson.load(tmp_path / "u")
    with pytest.raises(CheckpointError, match="arms"):
        UCB1.load(tmp_path / "u", env=stationary([0.1, 0.2, 0.3]))
    with pytest.raises(CheckpointError, match="c must be"):
        UCB1.load(tmp_path / "u", c=-1.0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make,match", [
    (lambda: UCB1Config(c=-1), "c must be.*-1"),
    (lambda: ThompsonConfig(likelihood="poisson"), "poisson"),
    (lambda: ThompsonConfig(prior_alpha=0), "prior_alpha.*0"),
    (lambda: BoltzmannConfig(temperature="hot"), "hot"),
    (lambda: BoltzmannConfig(alpha=-1.0), "alpha.*-1.0"),
    (lambda: BoltzmannConfig(target_entropy=-0.5), "target_entropy.*-0.5"),
    (lambda: BoltzmannConfig(schedule_steps=0), "schedule_steps.*0"),
    (lambda: CombUCBConfig(oracle="milp"), "milp"),
    (lambda: OptimisticConfig(replan_every=0), "replan_every.*0"),
    (lambda: LPConfig(n_samples=0), "n_samples.*0"),
    (lambda: Boltzmann(stationary([0.1, 0.2]), config=BoltzmannConfig(target_entropy=0.9)),
     r"ln K = 0.6931"),
])
def test_bad_configs_raise_naming_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_total_steps_rejected(steps):
    with pytest.raises(ValueError, match="total_steps"):
        UCB1("maxent/RechargingBandit-v0").learn(steps)


def test_non_discrete_env_rejected():
    with pytest.raises(TypeError, match="Discrete"):
        UCB1("Pendulum-v1")


# --------------------------------------------------------------------------- moved names


@pytest.mark.parametrize("name,home", [("ExactPlanner", "lsd"), ("CombUCBConfig", "lsd"),
                                       ("solve_long_run", "planners"), ("StateGraph", "planners")])
def test_moved_names_still_import_from_bandits_with_a_warning(name, home):
    import importlib

    from maxent.agents import bandits

    with pytest.warns(DeprecationWarning, match=f"moved to maxent.agents.{home}"):
        value = getattr(bandits, name)
    assert value is getattr(importlib.import_module(f"maxent.agents.{home}"), name)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        bandits.NoSuchName  # noqa: B018


def test_every_agent_and_config_imports_from_the_package_without_a_warning():
    import warnings

    import maxent.agents

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in ("UCB1", "Thompson", "Boltzmann", "GreedyOracle", "ExactPlanner", "LPPlanner",
                     "ISICombUCB1", "CombUCB1", "OptimisticPlanner"):
            assert getattr(maxent.agents, name).__name__ == name
