"""Tests for envs/homeostatic.py (the homeostatic bandit with concept shift) and
agents/homeostatic.py (the homeostatic learner and its constant / random-effect baselines)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import maxent.envs  # noqa: F401  (registers the maxent/... ids)
from maxent.agents.homeostatic import HomeostaticConfig, HomeostaticLearner
from maxent.training.checkpoint import CheckpointError
from maxent.envs.concept_shift import ConceptShiftClassification
from maxent.envs.homeostatic import (
    HomeostaticBandit,
    HomeostaticBanditVector,
    RateSchedule,
    drive,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum)")

# --------------------------------------------------------------------------- the bandit


def test_drive_matches_hand_computation():
    # |3-1|^4 + |5-2|^4 = 16 + 81 = 97; D = 97^(1/3)
    assert drive(np.array([1.0, 2.0]), np.array([3.0, 5.0])) == pytest.approx(97 ** (1 / 3))
    # other exponents, and a batch of states
    h = np.array([[1.0, 2.0], [3.0, 5.0], [4.0, 4.0]])
    expected = [(2 ** 2 + 3 ** 2) ** 0.5, 0.0, (1 + 1) ** 0.5]
    np.testing.assert_allclose(drive(h, np.array([3.0, 5.0]), m=2, n=2), expected)


def test_step_reward_and_state_match_hand_computation():
    env = HomeostaticBandit(outcomes=[[2.0, 0.0], [0.0, 1.0]], set_point=[4.0, 3.0],
                            absorption=[0.5, 1.0], degradation=[0.1, 0.2], floor=[1.0, 0.0],
                            initial_state=[2.0, 1.0])
    obs, info = env.reset(seed=0)
    np.testing.assert_allclose(obs, [2.0, 1.0])
    d0 = (2.0 ** 4 + 2.0 ** 4) ** (1 / 3)
    assert info["drive"] == pytest.approx(d0)
    obs, reward, terminated, truncated, info = env.step(0)
    # h1 = h0 + absorption * outcome - degradation * (h0 - floor)
    h1 = np.array([2.0 + 0.5 * 2.0 - 0.1 * (2.0 - 1.0), 1.0 + 0.0 - 0.2 * 1.0])  # [2.9, 0.8]
    np.testing.assert_allclose(obs, h1, rtol=1e-6)
    d1 = ((4.0 - 2.9) ** 4 + (3.0 - 0.8) ** 4) ** (1 / 3)
    assert reward == pytest.approx(d0 - d1)
    assert info["drive"] == pytest.approx(d1)
    np.testing.assert_allclose(info["outcome"], [2.0, 0.0])
    assert not terminated and not truncated


def test_state_decays_geometrically_to_the_floor_without_intake():
    env = HomeostaticBandit(outcomes=[[0.0, 0.0]], set_point=[5.0, 5.0], degradation=0.25,
                            floor=[1.0, -2.0], initial_state=[9.0, 6.0])
    env.reset(seed=0)
    for t in range(1, 20):
        obs, *_ = env.step(0)
        np.testing.assert_allclose(obs, np.array([1.0, -2.0]) + 0.75 ** t * np.array([8.0, 8.0]),
                                   rtol=1e-5)


def test_alternating_foods_beats_a_single_food():
    """Drive reduction rewards balance: alternating A and B holds h near the set-point."""
    def total(policy):
        env = HomeostaticBandit(initial_state=[5.0, 5.0], horizon=200)
        env.reset(seed=0)
        return sum(env.step(policy(t))[1] for t in range(200))

    assert total(lambda t: t % 2) > total(lambda t: 0) + 1.0
    assert total(lambda t: t % 2) > total(lambda t: 2) + 1.0


def test_concept_shift_permutes_at_the_configured_rate():
    T, rate = 6000, 0.2
    env = HomeostaticBandit(shift_rate=rate, horizon=T, outcomes=np.eye(4), set_point=np.ones(4))
    env.reset(seed=3)
    shifts = 0
    for t in range(T):
        before = env.arm_outcomes()
        arm = t % 4
        _, _, _, _, info = env.step(arm)
        np.testing.assert_allclose(info["outcome"], before[arm])  # delivered before the shift
        assert sorted(info["arm_map"]) == [0, 1, 2, 3]
        if info["shifted"]:
            shifts += 1
            assert np.sum(info["arm_map"] != np.argmax(before, axis=1)) == 2  # a swap of two
    sd = np.sqrt(T * rate * (1 - rate))
    assert abs(shifts - T * rate) < 4 * sd


def test_shift_rate_can_change_over_time():
    env = HomeostaticBandit(shift_rate=[(0, 0.0), (1000, 0.5)], horizon=2000)
    env.reset(seed=1)
    shifted = np.array([env.step(0)[4]["shifted"] for _ in range(2000)])
    assert not shifted[:1000].any()
    assert abs(shifted[1000:].mean() - 0.5) < 4 * np.sqrt(0.25 / 1000)

    env = HomeostaticBandit(shift_rate=lambda t: 1.0 if t % 3 == 0 else 0.0, horizon=30,
                            shift_mode="permute")
    env.reset(seed=1)
    shifted = np.array([env.step(1)[4]["shifted"] for _ in range(30)])
    np.testing.assert_array_equal(shifted, np.arange(30) % 3 == 0)
    assert RateSchedule(0.3)(10**9) == 0.3


def test_both_checkers_pass_and_registered_id_makes():
    for env in (HomeostaticBandit(), HomeostaticBandit(shift_rate=0.1, outcome_noise=0.2)):
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    env = gym.make("maxent/HomeostaticBandit-v0")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    venv = gym.make_vec("maxent/HomeostaticBandit-v0", num_envs=3,
                        vectorization_mode="vector_entry_point")
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, 2)


def test_vector_equals_single_under_the_same_seeds():
    kwargs = {"shift_rate": 0.3, "outcome_noise": 0.5, "horizon": 7}
    n, steps, seed = 3, 25, 11
    venv = HomeostaticBanditVector(num_envs=n, **kwargs)
    singles = [HomeostaticBandit(**kwargs) for _ in range(n)]
    vobs, _ = venv.reset(seed=seed)
    sobs = [e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]
    np.testing.assert_array_equal(vobs, np.stack(sobs))
    rng = np.random.default_rng(0)
    done = np.zeros(n, dtype=bool)
    for _ in range(steps):
        actions = rng.integers(0, 3, n)
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        for i, e in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: this step resets copy i
                obs, _ = e.reset()
                rew, trunc = 0.0, False
            else:
                obs, rew, _, trunc, info = e.step(actions[i])
                np.testing.assert_array_equal(vinfo["arm_map"][i], info["arm_map"])
            np.testing.assert_allclose(vobs[i], obs, rtol=1e-6)
            assert vrew[i] == pytest.approx(rew)
            assert vtrunc[i] == trunc
            done[i] = trunc
        assert not vterm.any()


@pytest.mark.parametrize("kwargs, match", [
    ({"outcomes": np.zeros((0, 2))}, "K must be >= 1, got K = 0"),
    ({"degradation": -0.1}, "degradation must be in"),
    ({"shift_rate": -0.2}, "shift_rate must be a probability"),
    ({"shift_rate": [(0, 0.1), (10, 1.5)]}, "shift_rate from step 10"),
    ({"set_point": [1.0, 2.0, 3.0]}, r"set_point has shape \(3,\).*d = 2"),
    ({"outcomes": [[1.0, 0.0]], "absorption": [1.0, 1.0, 1.0]}, r"absorption must be a scalar"),
    ({"outcome_noise": -1.0}, "outcome_noise"),
    ({"horizon": 0}, "horizon"),
    ({"shift_mode": "shuffle"}, "shift_mode"),
])
def test_bad_bandit_arguments_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HomeostaticBandit(**kwargs)


def test_bad_actions_and_callable_rates_raise():
    env = HomeostaticBandit()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"arm in \[0, 3\), got 3"):
        env.step(3)
    with pytest.raises(ValueError, match="integer arm index.*1.5"):
        env.step(1.5)
    venv = HomeostaticBanditVector(num_envs=2)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="integer arm indices"):
        venv.step(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"got \[0, -1\]"):
        venv.step(np.array([0, -1]))
    env = HomeostaticBandit(shift_rate=lambda t: 2.0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shift_rate\(0\) must be a probability.*2.0"):
        env.step(0)


# --------------------------------------------------------------------------- the learner


def digits_env(k: int = 0, epochs: int | None = None) -> ConceptShiftClassification:
    return ConceptShiftClassification(swaps_per_epoch=k, epochs=epochs)


def test_learner_improves_well_above_chance_on_stationary_digits():
    env = digits_env()
    agent = HomeostaticLearner(env, HomeostaticConfig(lr=1e-2), seed=0)
    agent.learn(3 * env.data.n)
    x, y = env.evaluation_set()
    acc = agent.accuracy(x, y)
    assert acc > 0.8  # chance is 0.1
    online = np.asarray(agent.correct)
    assert online[-env.data.n:].mean() > online[:env.data.n // 4].mean() + 0.3


def test_random_regulation_moves_eta_by_the_true_label_and_floors_it():
    env = digits_env()
    cfg = HomeostaticConfig(lr=1e-3, regulation="random", coin=1.0)
    agent = HomeostaticLearner(env, cfg, seed=0)
    x = np.zeros(64)
    agent.num_timesteps = 10  # a decision point
    agent.observe(x, guess=0, label=7)  # excites: +lr/10 (the guess does not matter)
    assert agent.eta == pytest.approx(1.1e-3)
    for _ in range(30):
        agent.observe(x, guess=9, label=1)  # inhibits, whatever the guess
    assert agent.eta == 1e-8  # floored, never negative
    agent.observe(x, guess=9, label=5)
    assert agent.eta == pytest.approx(1e-4 + 1e-8)


def test_homeostatic_take_it_applies_the_true_labels_effect():
    """With the loss criterion and a memory of the batch's own sample, a bigger step along the
    gradient lowers the memory loss: 'take it' wins when the *predicted* label excites, and then
    the *true* label's effect is applied (here an inhibition: a misperception costs η)."""
    env = digits_env()
    agent = HomeostaticLearner(env, HomeostaticConfig(lr=1e-3, criterion="loss"), seed=0)
    x = env.data.images[0].astype(np.float64)
    agent.num_timesteps = 1  # not a decision point while the memory fills
    for _ in range(20):
        agent.observe(x, guess=2, label=2)
    eta = agent.eta
    agent.num_timesteps = 20
    agent.observe(x, guess=7, label=2)  # predicted 7 (excite) -> take it -> true 2 inhibits
    assert agent.eta == pytest.approx(eta - 1e-4)
    assert (agent.decisions, agent.taken) == (1, 1)
    agent.num_timesteps = 30
    agent.observe(x, guess=2, label=7)  # predicted 2 (inhibit) -> smaller step loses -> leave
    assert agent.eta == pytest.approx(eta - 1e-4)
    assert (agent.decisions, agent.taken) == (2, 1)


@pytest.mark.parametrize("regulation", ["homeostatic", "random", "constant"])
def test_eta_moves_only_in_steps_and_stays_above_the_floor(regulation):
    env = digits_env(k=20)
    cfg = HomeostaticConfig(lr=1e-2, regulation=regulation, criterion="loss")
    agent = HomeostaticLearner(env, cfg, seed=1)
    agent.learn(3000)
    lr = np.asarray(agent.lr_history)
    assert lr.min() >= 1e-8
    steps = np.diff(np.concatenate([[1e-2], lr])) / 1e-3  # in units of lr/10
    on_grid = np.isclose(steps, np.round(steps), atol=1e-6) | np.isclose(lr, 1e-8)
    assert on_grid.all()
    if regulation == "constant":
        assert np.all(lr == 1e-2) and agent.decisions == 0
    else:
        assert agent.taken > 0 and lr.std() > 0
        assert np.abs(np.round(steps)).max() <= 1  # at most one effect per mini-batch


def test_save_load_round_trip_and_learning_continues(tmp_path):
    env = digits_env()
    agent = HomeostaticLearner(env, HomeostaticConfig(lr=1e-2, regulation="random"), seed=2)
    agent.learn(1005)  # mid-batch
    xt, yt = env.data.test_images, env.data.test_labels  # no shift: the original labels
    acc_at_save = agent.accuracy(xt, yt)
    agent.save(tmp_path / "ck")
    loaded = HomeostaticLearner.load(tmp_path / "ck", env=digits_env())
    for a, b in zip(agent.params, loaded.params):
        np.testing.assert_array_equal(a, b)
    assert loaded.eta == agent.eta and loaded.num_timesteps == 1005
    assert loaded._batch_n == agent._batch_n == 5
    assert loaded.np_rng.random() == agent.np_rng.random()
    np.testing.assert_array_equal(loaded.correct, agent.correct)
    np.testing.assert_array_equal(loaded.lr_history, agent.lr_history)
    x = env.data.images[:50]
    np.testing.assert_array_equal(loaded.predict(x), agent.predict(x))
    loaded.learn(2000)
    assert loaded.num_timesteps == 3005
    assert loaded.accuracy(xt, yt) > max(acc_at_save + 0.05, 0.6)
    with pytest.raises(CheckpointError, match="HomeostaticLearner"):
        from maxent.agents.causal import UCBAgent
        UCBAgent.load(tmp_path / "ck", env="maxent/ConfoundedCausalBandit-v0")


def test_load_from_registered_id_with_override(tmp_path):
    agent = HomeostaticLearner("maxent/ConceptShiftDigits-v0", seed=0)
    agent.learn(30)
    agent.save(tmp_path / "ck")
    loaded = HomeostaticLearner.load(tmp_path / "ck", regulation="constant")
    assert loaded.config.regulation == "constant" and loaded.config.hidden == (80, 60)
    assert loaded.sizes == (64, 80, 60, 10)


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -1e-3}, "lr must be >= min_lr"),
    ({"regulation": "adaptive"}, "regulation must be one of"),
    ({"criterion": "f1"}, "criterion must be one of"),
    ({"hidden": (80, 0)}, "hidden must be positive integers"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"memory": 2.5}, "memory must be an integer"),
    ({"coin": 1.5}, "coin must be a probability"),
    ({"lr_step": -1.0}, "lr_step must be >= 0"),
])
def test_bad_config_raises_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HomeostaticConfig(**kwargs)


def test_bad_learner_inputs_raise():
    agent = HomeostaticLearner(digits_env(), seed=0)
    for steps in (0, -5, 2.5):
        with pytest.raises(ValueError, match="total_steps must be a positive integer"):
            agent.learn(steps)
    with pytest.raises(ValueError, match="64 features"):
        agent.predict(np.zeros(10))
    with pytest.raises(KeyError, match="info\\['label'\\]"):
        HomeostaticLearner(gym.make("maxent/HomeostaticBandit-v0"), seed=0).learn(1)
    assert agent.predict(np.zeros((4, 64))).shape == (4,)
    assert 0 <= agent.predict(np.zeros(64), deterministic=False) < 10
