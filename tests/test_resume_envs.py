"""A resumed SAC ends bit for bit where an uninterrupted run does however its env was given (an id,
an id with gymnasium.make keywords, a partial, a wrapped instance, a vector env, or nothing: rebuilt
from the checkpoint's description), and says at load why it cannot when the env differs or cannot
be compared (no spec, a wrapper without recorded arguments, another time limit, other n_envs)."""

from __future__ import annotations

import functools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from maxent.agents import SAC, SACConfig
from maxent.training.agent import Agent
from maxent.training.env_identity import InexactResumeWarning, describe_env, difference
from maxent.training.vector import make_env, make_vector_env

SMALL = dict(hidden_sizes=(16, 16), batch_size=16, buffer_size=500, learning_starts=20,
             compile=False, log_interval=1000)
HALF = 46  # even (two copies step together), not a multiple of the time limit (30): cuts episodes


def pendulum30() -> gym.Env:
    return gym.make("Pendulum-v1", max_episode_steps=30)


def everything(agent: SAC) -> dict[str, np.ndarray]:
    """Every tensor a checkpoint holds (weights, optimiser, RNGs, the episodes in flight), the
    replay buffer and the episode statistics."""
    tensors, state, arrays = agent._checkpoint()
    out = {name: t.numpy() for name, t in tensors.items()}
    out.update({f"replay.{k}": v for k, v in arrays.items()})
    out.update({key: np.asarray(state[key])
                for key in ("episode_seeds", "episode_return", "episode_length", "n_updates")})
    out["returns"] = np.asarray(agent.episode_returns)
    return out


def assert_same_run(a: SAC, b: SAC) -> None:
    ours, theirs = everything(a), everything(b)
    assert sorted(ours) == sorted(theirs)
    for name, value in ours.items():
        np.testing.assert_array_equal(value, theirs[name], err_msg=name)


def resumed_and_whole(tmp_path, build, load_env=None, n_envs: int = 1, **load: object) -> tuple:
    """(resumed, uninterrupted): one run saved at HALF and continued after ``load`` with
    ``env=load_env(...)`` (None: rebuilt), one run of 2 * HALF steps; no warning may be raised."""
    first = SAC(build(), seed=3, n_envs=n_envs, **SMALL).learn(HALF)
    path = first.save(tmp_path / "ckpt")
    assert max(first._episode_length) > 0  # an episode is in flight
    with warnings.catch_warnings():
        warnings.simplefilter("error", InexactResumeWarning)
        resumed = SAC.load(path, env=None if load_env is None else load_env(), **load)
    resumed.learn(HALF)
    whole = SAC(build(), seed=3, n_envs=n_envs, **SMALL).learn(2 * HALF)
    return resumed, whole


@pytest.mark.parametrize("way", ["id", "id+kwargs", "partial", "lambda", "rebuilt"])
def test_every_way_of_naming_an_env_resumes_exactly(tmp_path, way):
    build = {"id": lambda: "Pendulum-v1",
             "id+kwargs": lambda: functools.partial(gym.make, "Pendulum-v1", max_episode_steps=30),
             "partial": lambda: functools.partial(make_env, "Pendulum-v1", max_episode_steps=30),
             "lambda": lambda: pendulum30,
             "rebuilt": lambda: functools.partial(make_env, "Pendulum-v1", max_episode_steps=30)}[way]
    resumed, whole = resumed_and_whole(tmp_path, build, None if way == "rebuilt" else build)
    assert_same_run(resumed, whole)


def test_a_wrapped_instance_resumes_exactly_on_an_equal_one(tmp_path):
    def build():
        return gym.wrappers.ClipReward(gym.wrappers.RescaleAction(pendulum30(), -0.5, 0.5), -5.0, 0.0)

    resumed, whole = resumed_and_whole(tmp_path, build, build)
    assert_same_run(resumed, whole)
    # The wrappers and their arguments are recorded, so env=None rebuilds the same env.
    rebuilt = SAC.load(tmp_path / "ckpt")
    assert describe_env(rebuilt.envs) == describe_env(resumed.envs)
    assert rebuilt.action_space.high.tolist() == [0.5]


def test_a_vector_env_resumes_exactly(tmp_path):
    def build():
        return gym.make_vec("Pendulum-v1", 2, vectorization_mode="sync", max_episode_steps=30,
                            vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED})

    resumed, whole = resumed_and_whole(tmp_path, build, build, n_envs=2)
    assert_same_run(resumed, whole)
    # The agent's own copies of the same env are the same env: they resume it exactly too.
    again = SAC.load(tmp_path / "ckpt", env=functools.partial(make_env, "Pendulum-v1", max_episode_steps=30),
                     n_envs=2)
    again.learn(HALF)
    assert_same_run(again, whole)


def test_copies_in_subprocesses_are_described_as_in_this_one():
    sync = make_vector_env("Pendulum-v1", 2, "sync")
    spawned = make_vector_env("Pendulum-v1", 2, "async")
    try:
        one = describe_env(gym.make("Pendulum-v1"))["copies"]
        assert describe_env(spawned) == describe_env(sync) == {"copies": one * 2}
    finally:
        spawned.close()
        sync.close()


class Drift(gym.Env):
    """A 1-d env built without gymnasium.make (so without a spec)."""

    observation_space = gym.spaces.Box(-10, 10, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = self.np_random.uniform(-1, 1, 1).astype(np.float32), 0
        return self.x, {}

    def step(self, action):
        self.x = np.clip(self.x + 0.1 * np.asarray(action, np.float32), -10, 10)
        self.t += 1
        return self.x, float(-abs(self.x[0])), False, self.t >= 30, {}


class Unrecorded(gym.Wrapper):
    """A wrapper that does not record its arguments (no RecordConstructorArgs)."""


def saved_then_loaded(tmp_path, env_at_save, env_at_load, **load):
    agent = SAC(env_at_save, seed=1, **SMALL).learn(HALF)
    path = agent.save(tmp_path / "ckpt")
    with pytest.warns(InexactResumeWarning) as caught:
        loaded = SAC.load(path, env=env_at_load, **load)
    caught = [w for w in caught if issubclass(w.category, InexactResumeWarning)]
    assert len(caught) == 1 and str(tmp_path / "ckpt") in str(caught[0].message)
    assert loaded._obs is None  # fresh episodes at the next learn
    loaded.learn(10)  # and it trains on
    return str(caught[0].message)


def test_an_env_without_a_spec_is_said_to_be_incomparable(tmp_path):
    message = saved_then_loaded(tmp_path, Drift(), Drift())
    assert "the checkpoint's env cannot be compared: it is a Drift with no spec" in message
    assert "register a custom class with gymnasium.register" in message
    with pytest.raises(ValueError, match="trained on a custom env instance; pass env=..."):
        SAC.load(tmp_path / "ckpt")  # nothing to rebuild it from


def test_a_wrapper_without_recorded_arguments_is_named(tmp_path):
    message = saved_then_loaded(tmp_path, lambda: Unrecorded(pendulum30()), lambda: Unrecorded(pendulum30()))
    assert "its wrapper Unrecorded does not record its arguments" in message


def test_a_wrapper_with_statistics_across_episodes_is_named(tmp_path):
    def build():
        return gym.wrappers.NormalizeObservation(pendulum30())

    message = saved_then_loaded(tmp_path, build, build)
    assert "its wrapper NormalizeObservation keeps running statistics across episodes" in message


def test_an_argument_a_checkpoint_cannot_record_is_named(tmp_path):
    def build():
        return gym.wrappers.TransformReward(pendulum30(), lambda r: 0.5 * r)

    message = saved_then_loaded(tmp_path, build, build)
    assert "argument func of wrapper TransformReward is a function" in message


@pytest.mark.parametrize("given, reason", [
    ("Pendulum-v1", "max_episode_steps is 30 there, 200 here"),
    (lambda: gym.make("Pendulum-v1", max_episode_steps=30, g=9.0),
     "gymnasium.make's keyword g is none there, 9.0 here"),
    (lambda: gym.wrappers.ClipReward(pendulum30(), -5.0, 0.0), "the wrappers are none there, ['ClipReward'] here"),
])
def test_another_env_is_named_with_what_differs_and_what_to_pass(tmp_path, given, reason):
    message = saved_then_loaded(tmp_path, pendulum30, given)
    assert f"not replayed because {reason}" in message
    assert "load it with env=None (the env is rebuilt from the checkpoint's description)" in message


def test_other_n_envs_is_named(tmp_path):
    message = saved_then_loaded(tmp_path, "Pendulum-v1", "Pendulum-v1", n_envs=2)
    assert "because n_envs (env copies) is 1 there, 2 here" in message


def test_an_exact_resume_can_be_required(tmp_path):
    path = SAC(pendulum30, seed=1, **SMALL).learn(HALF).save(tmp_path / "ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InexactResumeWarning)
        with pytest.raises(InexactResumeWarning, match="max_episode_steps is 30 there, 200 here"):
            SAC.load(path, env="Pendulum-v1")
        SAC.load(path)  # the same env: no warning, no error


def test_a_checkpoint_without_a_description_still_resumes_on_its_id(tmp_path, monkeypatch):
    monkeypatch.setattr(Agent, "_env_description", lambda self: None)  # as an older maxent saved
    first = SAC("Pendulum-v1", seed=2, **SMALL).learn(HALF)
    path = first.save(tmp_path / "ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InexactResumeWarning)
        resumed = SAC.load(path)
    resumed.learn(HALF)
    assert_same_run(resumed, SAC("Pendulum-v1", seed=2, **SMALL).learn(2 * HALF))
    assert "older maxent" in difference(None, describe_env(gym.make("Pendulum-v1")))


def test_descriptions_compare_the_make_keywords_and_wrappers():
    plain = describe_env(gym.make("Pendulum-v1"))
    assert difference(plain, describe_env(gym.make("Pendulum-v1"))) is None
    assert difference(plain, describe_env(gym.make("Pendulum-v1", g=9.0))) == (
        "gymnasium.make's keyword g is none there, 9.0 here")
    clipped = describe_env(gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0))
    other = describe_env(gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -0.5, 0.5))
    assert difference(clipped, other).startswith("wrapper RescaleAction's arguments are ")
    assert difference(plain, describe_env(gym.make("MountainCarContinuous-v0"))).startswith(
        "id is 'Pendulum-v1' there, 'MountainCarContinuous-v0' here")
    assert describe_env(object()) is None


def test_a_vector_wrapper_is_named_and_wrapping_after_building_changes_nothing():
    agent = SAC("Pendulum-v1", **SMALL)
    built = agent._env_description()
    wrapped = gym.vector.VectorWrapper(agent.envs)  # as a front's step recorder wraps them
    assert describe_env(wrapped) == {"copies": [{"unknown": "it is wrapped in the vector wrapper "
                                                 "VectorWrapper, which records neither its arguments "
                                                 "nor its state"}]}
    agent.envs = wrapped
    assert agent._env_description() == built == describe_env(gym.make("Pendulum-v1"))


@pytest.mark.parametrize("saved", [{}, {"copies": []}, {"copies": ["x"]}, {"copies": [{"id": 1}]},
                                   {"copies": [{**describe_env(gym.make("Pendulum-v1"))["copies"][0],
                                                "wrappers": [{"name": "W"}]}]}])
def test_a_malformed_description_is_neither_compared_nor_rebuilt(saved):
    from maxent.training.env_identity import rebuild_factory

    assert difference(saved, describe_env(gym.make("Pendulum-v1"))) == (
        "the checkpoint's description of its env is malformed")
    assert rebuild_factory(saved) is None


def test_a_description_imports_and_calls_nothing_but_loaded_wrapper_classes():
    from maxent.training.env_identity import rebuild_factory

    saved = describe_env(gym.wrappers.ClipReward(gym.make("Pendulum-v1"), -1.0, 0.0))
    assert rebuild_factory(saved)().spec.additional_wrappers[0].name == "ClipReward"
    for entry_point in ("os:system", "builtins:exec", "not_imported_module:Wrapper"):
        wrapper = {**saved["copies"][0]["wrappers"][0], "entry_point": entry_point}
        assert rebuild_factory({"copies": [{**saved["copies"][0], "wrappers": [wrapper]}]}) is None


@pytest.mark.parametrize("description", [{"copies": "Pendulum-v1"}, {"copies": []}, [1, 2],
                                         {"copies": [{"id": 3}]}])
def test_a_malformed_env_description_is_refused_naming_the_field(tmp_path, description):
    import json

    from maxent.training.checkpoint import CheckpointError

    SAC("Pendulum-v1", config=SACConfig(**SMALL), seed=0).save(tmp_path / "m")
    state_file = tmp_path / "m" / "state.json"
    state = json.loads(state_file.read_text())
    state["env_description"] = description
    state_file.write_text(json.dumps(state))
    _rehash(tmp_path / "m")
    with pytest.raises(CheckpointError, match="state.json field 'env_description'"):
        SAC.load(tmp_path / "m", env="Pendulum-v1")


def _rehash(directory):
    """Recompute a checkpoint's checksums after an edit, as someone editing on purpose would."""
    import hashlib
    import json

    config_file = directory / "config.json"
    header = json.loads(config_file.read_text())
    for name in header["files"]:
        header["files"][name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    config_file.write_text(json.dumps(header))
