"""Tests for envs/__init__.py's registry: every ``maxent/`` id takes its class's constructor
arguments through ``gymnasium.make`` (and ``gymnasium.make_vec`` where it has a vector entry
point), and every default env passes Gymnasium's and Stable-Baselines3's checkers."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import maxent.envs
from maxent.envs.causal import SMOKING_JOINT

from maxent.envs.uncertainty import DR_ID_PREFIX, UNCERTAINTY_SETS, set_of_domain_randomized_id

# The domain-randomised twins of the MuJoCo tasks (one per uncertainty set) have their own tests.
DR_IDS = sorted(k for k in gym.registry if k.startswith(DR_ID_PREFIX))
IDS = sorted(k for k in gym.registry if k.startswith("maxent/") and k not in DR_IDS)

# A (3, 2, 2) joint over (S, T, C) with full support: a three-armed front-door world.
JOINT3 = np.arange(1.0, 13.0).reshape(3, 2, 2) / 78.0
MECHANISMS = {"p_u": [0.5, 0.5], "p_s_given_u": [[0.9, 0.1], [0.2, 0.8]],
              "p_t_given_s": [[0.7, 0.3], [0.1, 0.9]],
              "p_c_given_t_u": [[[0.6, 0.4], [0.3, 0.7]], [[0.5, 0.5], [0.2, 0.8]]]}


def _horizon(env) -> int:
    """Steps until the first truncation or termination under action 0 (or a valid text)."""
    env.reset(seed=0)
    action = "Action: Button 1" if isinstance(env.action_space, spaces.Text) else 0
    for t in range(1, 100):
        *_, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            return t
    return -1


# id -> list of (non-default constructor arguments, check on env.unwrapped). Small arguments keep
# the whole file fast.
CASES = {
    "maxent/ConfoundedCausalBandit-v0": [
        ({"joint": JOINT3}, lambda e: e.action_space == spaces.Discrete(3)
         and np.allclose(e.joint, JOINT3)),
        ({"horizon": 4, "reward_table": np.ones((2, 2, 2))},
         lambda e: _horizon(e) == 4 and e.reward_range == (1.0, 1.0)),
        (MECHANISMS, lambda e: e.mechanisms is not None
         and not np.allclose(e.joint, SMOKING_JOINT)),
    ],
    "maxent/LSDBandit-v0": [
        ({"d": 3, "horizon": 5}, lambda e: e.d == 3 and e.observation_space.high.max() == 3
         and _horizon(e) == 5),
        ({"form": "recharging", "d": 4}, lambda e: e.form == "recharging"
         and e.observation_space.low.min() == 1),
    ],
    "maxent/RechargingBandit-v0": [
        ({"d": 3, "horizon": 5}, lambda e: e.form == "recharging" and e.d == 3
         and _horizon(e) == 5),
        ({"payoff": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]},
         lambda e: e.action_space == spaces.Discrete(3)),
    ],
    "maxent/HomeostaticBandit-v0": [
        ({"outcomes": [[1.0, 0.0], [0.0, 1.0]], "horizon": 6},
         lambda e: e.action_space == spaces.Discrete(2) and _horizon(e) == 6),
        ({"set_point": (2.0, 3.0, 4.0), "outcomes": [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]},
         lambda e: e.observation_space.shape == (3,) and list(e.set_point) == [2.0, 3.0, 4.0]),
    ],
    "maxent/ConceptShiftDigits-v0": [
        ({"n_classes": 12, "epochs": 1, "swaps_per_epoch": 2},
         lambda e: e.action_space == spaces.Discrete(12) and e.data.epochs == 1
         and e.data.swaps(0) == 2),
        ({"test_fraction": 0.5}, lambda e: len(e.data.test_labels) == round(0.5 * 1797)),
    ],
    "maxent/MeasurementAcquisition-v0": [
        ({"mode": "line", "budget": 3},
         lambda e: e.action_space == spaces.Discrete(8) and _horizon(e) == 3),
        ({"reconstructor": "mean", "images": np.random.default_rng(0).random((10, 4, 5))},
         lambda e: e.action_space == spaces.Discrete(20)),
    ],
    "maxent/TextArithmetic-v0": [
        ({"difficulty": 3, "max_completion_chars": 64},
         lambda e: e.task.difficulty == 3 and e.action_space.max_length == 64),
    ],
    "maxent/TextCountdown-v0": [
        ({"n_numbers": 4, "max_prompt_chars": 300},
         lambda e: e.task.n_numbers == 4 and e.observation_space.max_length == 300),
    ],
    "maxent/TextSequence-v0": [
        ({"n_shown": 7, "prompt_template": "Q: {question}"},
         lambda e: e.task.n_shown == 7 and e.reset(seed=0)[0].startswith("Q: What number")),
    ],
    "maxent/TextBandit-v0": [
        ({"means": (1.0, 2.0, 3.0), "horizon": 3},
         lambda e: e.n_arms == 3 and _horizon(e) == 3),
        ({"button_names": ("red", "blue"), "max_completion_chars": 16},
         lambda e: e.names == ("red", "blue") and e.action_space.max_length == 16),
    ],
    "maxent/TextBanditChat-v0": [
        ({"means": (1.0, 2.0, 3.0), "horizon": 3}, lambda e: e.n_arms == 3 and _horizon(e) == 3),
    ],
    "maxent/TextRechargingBandit-v0": [
        ({"invalid_action": "random", "horizon": 3},
         lambda e: e.invalid_action == "random" and _horizon(e) == 3),
    ],
    "maxent/ToolArithmetic-v0": [
        ({"difficulty": 4, "max_tool_calls": 1},
         lambda e: e.task.difficulty == 4 and e.max_tool_calls == 1),
    ],
}

# Observation spaces SB3 does not support: it needs numpy arrays (Box, Discrete, MultiDiscrete,
# MultiBinary, or a Dict of those); a Text observation is a str.
SB3_UNSUPPORTED = (spaces.Text,)


def test_every_registered_id_has_cases():
    assert set(IDS) == set(maxent.envs._ENVIRONMENTS)
    assert [set_of_domain_randomized_id(i).name for i in DR_IDS] == sorted(UNCERTAINTY_SETS)
    missing = sorted(set(IDS) - set(CASES))
    assert not missing, f"add constructor-argument cases to CASES for {missing}"


def _cases(vector: bool = False) -> list:
    """(id, kwargs, check) of every case; (id, kwargs) of those with a vector entry point."""
    return [pytest.param(i, kw, *(() if vector else (c,)), id=f"{i[7:]}[{','.join(kw)}]")
            for i in sorted(CASES) for kw, c in CASES[i]
            if not vector or gym.spec(i).vector_entry_point is not None]


@pytest.mark.parametrize("env_id, kwargs, check", _cases())
def test_make_forwards_constructor_arguments(env_id, kwargs, check):
    env = gym.make(env_id, **kwargs)
    default = gym.make(env_id)
    assert check(env.unwrapped), f"{env_id} ignored {sorted(kwargs)}"
    assert not check(default.unwrapped), "the case must differ from the default env"


def _vector_signature(vec) -> tuple:
    """Spaces of one copy, steps until copy 0 first ends (under action 0 or a valid text; -1
    after 100) and the first observation after ``reset(seed=0)``."""
    text = isinstance(vec.single_action_space, spaces.Text)
    action = "Action: Button 1" if text else 0
    obs, _ = vec.reset(seed=0)
    first = tuple(obs) if text else np.asarray(obs).tobytes()
    horizon = -1
    for t in range(1, 101):
        *_, terminated, truncated, _ = vec.step([action] * vec.num_envs if text
                                                else np.full(vec.num_envs, action))
        if terminated[0] or truncated[0]:
            horizon = t
            break
    return vec.single_action_space, vec.single_observation_space, horizon, first


@pytest.mark.parametrize("env_id, kwargs", _cases(vector=True))
def test_make_vec_forwards_constructor_arguments(env_id, kwargs):
    single = gym.make(env_id, **kwargs).unwrapped
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    default = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    assert vec.num_envs == 2
    space_a, space_o, horizon, first = _vector_signature(vec)
    assert (space_a, space_o) == (single.action_space, single.observation_space)
    if "horizon" in kwargs:
        assert horizon == kwargs["horizon"] == _horizon(single)
    default_signature = _vector_signature(default)
    assert (space_a, space_o, horizon) != default_signature[:3] or first != default_signature[3], \
        f"{env_id}'s vector entry point ignored {sorted(kwargs)}"


def test_confounded_bandit_default_is_the_smoking_world():
    env = gym.make("maxent/ConfoundedCausalBandit-v0").unwrapped
    np.testing.assert_allclose(env.joint, SMOKING_JOINT)
    np.testing.assert_allclose(env.arm_values(), [0.7465, 0.4577], atol=1e-4)
    with pytest.raises(ValueError, match="not both"):
        gym.make("maxent/ConfoundedCausalBandit-v0", joint=JOINT3, **MECHANISMS)
    with pytest.raises(ValueError, match="missing"):
        gym.make("maxent/ConfoundedCausalBandit-v0", p_u=[0.5, 0.5])


@pytest.mark.parametrize("env_id", IDS)
def test_default_env_passes_gymnasium_checker(env_id):
    gym_check_env(gym.make(env_id).unwrapped)


@pytest.mark.parametrize("env_id", IDS)
def test_default_env_passes_sb3_checker(env_id):
    env = gym.make(env_id)
    if isinstance(env.observation_space, SB3_UNSUPPORTED):
        pytest.skip(f"SB3's check_env needs array observations; {env_id} observes "
                    f"{type(env.observation_space).__name__} (strings), which SB3 does not support")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SB3's advice (e.g. unbounded Box)
        sb3_check_env(env, warn=True)


@pytest.mark.parametrize("env_id", DR_IDS)
def test_domain_randomized_ids_take_arguments_and_pass_the_checkers(env_id):
    uset = set_of_domain_randomized_id(env_id)
    env = gym.make(env_id, max_episode_steps=3)
    assert env.get_wrapper_attr("uncertainty").name == uset.name
    env.reset(seed=0)
    for t in range(1, 10):
        *_, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    assert t <= 3  # the time limit reached the task
    _, info = env.reset(seed=1)
    for name, low, high in uset.ranges:
        assert low <= info["params"][name] <= high
    # Rendering is Gymnasium's own MuJoCo code (headless here: GLFW would abort), not ours.
    gym_check_env(gym.make(env_id), skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sb3_check_env(gym.make(env_id))
