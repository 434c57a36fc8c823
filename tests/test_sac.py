"""SAC: it learns, it is deterministic, it resumes exactly, and every bad input gets a clear error."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from maxent.training.agent import (CheckpointCallback, EvalCallback, FunctionCallback, StopOnRewardThreshold,
                          evaluate)
from maxent.agents import SAC, SACConfig
from maxent.training.checkpoint import CheckpointError

TINY = {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 50,
        "buffer_size": 10_000, "log_interval": 100}


def weights(agent: SAC) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in agent._tensors().items()}


def assert_same_weights(a: SAC, b: SAC) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# --------------------------------------------------------------------------- learning


def test_sac_learns_pendulum():
    """A broken update (wrong sign, no target, frozen actor) stays near -1200 on this budget."""
    agent = SAC("Pendulum-v1", seed=0, learning_starts=500, log_interval=1000)
    before = evaluate(agent, "Pendulum-v1", n_episodes=5, seed=100).mean()
    agent.learn(7_000)
    after = evaluate(agent, "Pendulum-v1", n_episodes=5, seed=100).mean()
    assert before < -900
    assert after > -400, f"evaluation return after 7k steps: {after:.1f}"


def test_temperature_falls_while_entropy_is_above_target():
    # Early on the policy is near-uniform (entropy well above -dim(A) = -1): alpha must shrink.
    agent = SAC("Pendulum-v1", seed=1, **TINY)
    agent.learn(400)
    assert agent.temperature.value.item() < 1.0
    fixed = SAC("Pendulum-v1", seed=1, auto_alpha=False, alpha=0.3, **TINY)
    fixed.learn(200)
    assert fixed.temperature.value.item() == pytest.approx(0.3)


def test_same_seed_same_run_and_other_seed_differs():
    a = SAC("Pendulum-v1", seed=3, **TINY).learn(250)
    b = SAC("Pendulum-v1", seed=3, **TINY).learn(250)
    c = SAC("Pendulum-v1", seed=4, **TINY).learn(250)
    assert_same_weights(a, b)
    assert not torch.equal(weights(a)["actor.net.0.weight"], weights(c)["actor.net.0.weight"])


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("n_envs", [1, 3])
def test_resume_equals_uninterrupted_run(tmp_path, n_envs):
    # 330 steps ends mid-episode (Pendulum episodes are 200 steps): the in-flight episodes must be
    # replayed on load for the resumed run to match bit for bit.
    steps, more = 330, 270
    whole = SAC("Pendulum-v1", seed=7, n_envs=n_envs, **TINY).learn(steps + more)

    first = SAC("Pendulum-v1", seed=7, n_envs=n_envs, **TINY).learn(steps)
    first.save(tmp_path / "ckpt")
    resumed = SAC.load(tmp_path / "ckpt")
    assert resumed.num_timesteps == first.num_timesteps
    resumed.learn(more)
    assert resumed.num_timesteps == whole.num_timesteps
    assert_same_weights(resumed, whole)
    assert list(resumed.episode_returns) == list(whole.episode_returns)


def test_checkpoint_layout_and_predict_roundtrip(tmp_path):
    agent = SAC("Pendulum-v1", seed=0, **TINY).learn(120)
    path = agent.save(tmp_path / "run")
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "weights.safetensors", "state.json", "replay.npz"} <= names
    header = json.loads((path / "config.json").read_text())
    assert header["kind"] == "SAC" and header["config"]["hidden_sizes"] == [32, 32]
    obs = np.array([0.5, -0.5, 0.1], dtype=np.float32)
    loaded = SAC.load(path)
    np.testing.assert_array_equal(agent.predict(obs), loaded.predict(obs))
    no_buffer = agent.save(tmp_path / "small", include_replay_buffer=False)
    assert not (no_buffer / "replay.npz").exists()
    assert len(SAC.load(no_buffer).buffer) == 0


def test_checkpoint_callback_saves_periodically(tmp_path):
    saves = []
    agent = SAC("Pendulum-v1", seed=0, **TINY)
    original = agent.save
    agent.save = lambda path, **kw: saves.append(agent.num_timesteps) or original(path, **kw)
    agent.learn(250, callback=CheckpointCallback(100, tmp_path / "ck"))
    assert saves == [100, 200, 250]
    assert SAC.load(tmp_path / "ck").num_timesteps == 250


def test_eval_callback_and_reward_threshold_stop_training(capsys):
    agent = SAC("Pendulum-v1", seed=0, **TINY)
    stop = EvalCallback("Pendulum-v1", eval_freq=100, n_episodes=1, stop_above=-1e9)
    agent.learn(1000, callback=stop)
    assert agent.num_timesteps == 100 and stop.last_mean is not None
    # The stop is said, with the step, the planned end and the reason.
    said = capsys.readouterr().err
    assert "stopped by a callback at step 100 of 1,000" in said and "stop_above=-1e+09" in said
    agent2 = SAC("Pendulum-v1", seed=0, **TINY)
    agent2.learn(1000, callback=[FunctionCallback(lambda agent: True),
                                 StopOnRewardThreshold(-1e9, n_episodes=1)])
    assert agent2.num_timesteps == 200  # the first episode ends at step 200
    assert "StopOnRewardThreshold" in capsys.readouterr().err


def test_logs_tensorboard_and_csv(tmp_path):
    SAC("Pendulum-v1", seed=0, log_dir=tmp_path, **TINY).learn(400)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [100, 200, 300, 400]
    for name in ("train/critic_loss", "train/actor_loss", "entropy/policy", "temperature/alpha",
                 "time/fps", "rollout/ep_return"):
        assert rows[-1][name] not in ("", None), name
    assert list(tmp_path.glob("events.out.tfevents.*"))


# --------------------------------------------------------------------------- envs and spaces


class ShiftedBounds(gym.Wrapper):
    """Pendulum with the action box moved to [0, 10]."""

    def __init__(self):
        super().__init__(gym.make("Pendulum-v1"))
        self.action_space = gym.spaces.Box(0.0, 10.0, (1,), np.float32)

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, np.float32)), action
        return self.env.step(np.asarray(action) * 0.4 - 2.0)


def test_any_action_bounds_are_respected():
    agent = SAC(ShiftedBounds, seed=0, **TINY).learn(120)
    actions = agent.predict(np.zeros((64, 3), np.float32), deterministic=False)
    assert actions.shape == (64, 1) and actions.min() >= 0.0 and actions.max() <= 10.0


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_parallel_envs(vectorization):
    agent = SAC("Pendulum-v1", seed=0, n_envs=2, vectorization=vectorization, **TINY)
    agent.learn(800)
    assert agent.num_timesteps == 800
    assert len(agent.buffer) == 800
    assert len(agent.episode_returns) == 4  # two copies x two 200-step episodes
    agent.close()


# --------------------------------------------------------------------------- bad input


def test_unknown_env_id_lists_close_matches():
    with pytest.raises(ValueError, match="Pendulum-v1"):
        SAC("Pendulum-v0")


def test_discrete_actions_rejected():
    with pytest.raises(ValueError, match="Box action"):
        SAC("CartPole-v1")


def test_dict_observations_rejected():
    class DictObs(gym.ObservationWrapper):
        def __init__(self):
            super().__init__(gym.make("Pendulum-v1"))
            self.observation_space = gym.spaces.Dict({"x": self.env.observation_space})

        def observation(self, obs):
            return {"x": obs}

    with pytest.raises(ValueError, match="FlattenObservation"):
        SAC(DictObs)


@pytest.mark.parametrize("field,value", [
    ("batch_size", 0), ("tau", 1.5), ("gamma", -0.1), ("learning_rate", -1.0),
    ("vectorization", "threads"), ("hidden_sizes", ()), ("alpha", 0.0),
])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SACConfig(**{field: value})


def test_batch_larger_than_buffer_rejected():
    with pytest.raises(ValueError, match="buffer_size"):
        SACConfig(batch_size=512, buffer_size=100)


@pytest.mark.parametrize("steps", [0, -5, 1.5])
def test_bad_total_steps(steps):
    agent = SAC("Pendulum-v1", **TINY)
    with pytest.raises(ValueError, match="total_steps"):
        agent.learn(steps)


def test_predict_wrong_shape():
    agent = SAC("Pendulum-v1", **TINY)
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        agent.predict(np.zeros(4))


class NaNAfter(gym.Wrapper):
    def __init__(self, where: str, after: int = 150):
        super().__init__(gym.make("Pendulum-v1"))
        self.where, self.after, self.count = where, after, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        if self.count > self.after:
            if self.where == "obs":
                obs = obs * np.nan
            else:
                reward = float("inf")
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("where,match", [("obs", "observation at env step 151"), ("reward", "reward at env step 151")])
def test_non_finite_env_output_stops_and_keeps_checkpoint(tmp_path, where, match):
    agent = SAC(lambda: NaNAfter(where), seed=0, **TINY)
    with pytest.raises(FloatingPointError, match=match):
        agent.learn(400, callback=CheckpointCallback(100, tmp_path / "ck", save_at_end=False))
    kept = SAC.load(tmp_path / "ck", env=lambda: NaNAfter(where))
    assert kept.num_timesteps == 100


def test_nan_loss_is_reported_and_weights_are_not_saved(tmp_path):
    class HugeReward(gym.RewardWrapper):
        def __init__(self):
            super().__init__(gym.make("Pendulum-v1"))

        def reward(self, reward):
            return 1e38

    agent = SAC(HugeReward, seed=0, **TINY)
    with pytest.raises(FloatingPointError, match="train/critic_loss became inf by step 100"):
        agent.learn(300)
    good = SAC("Pendulum-v1", seed=0, **TINY)
    good.save(tmp_path / "ck")
    with torch.no_grad():
        good.actor.net[0].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        good.save(tmp_path / "ck")
    assert torch.isfinite(SAC.load(tmp_path / "ck").actor.net[0].weight).all()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    path = SAC("Pendulum-v1", **TINY).learn(60).save(tmp_path / "ck")
    weights_file = path / "weights.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="weights.safetensors"):
        SAC.load(path)


def test_foreign_directory_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="config.json"):
        SAC.load(tmp_path)


def test_incompatible_config_override_is_rejected(tmp_path):
    path = SAC("Pendulum-v1", **TINY).learn(60).save(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="hidden_sizes"):
        SAC.load(path, hidden_sizes=(64, 64))


def test_checkpoint_for_other_env_is_rejected(tmp_path):
    path = SAC("Pendulum-v1", **TINY).learn(60).save(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="trained with observations"):
        SAC.load(path, env="MountainCarContinuous-v0")


# --------------------------------------------------------------------------- speed options


def test_whole_step_matches_eager_step():
    """The step written for one compiled graph (torch.func gradients, Adam as tensor ops, run
    here without compiling) moves weights, optimiser state and alpha exactly as the eager step
    with backward() and torch.optim.Adam."""
    eager = SAC("Pendulum-v1", seed=3, **TINY).learn(100)
    whole = SAC("Pendulum-v1", seed=3, **TINY).learn(100)
    for _ in range(20):
        rows = eager.buffer.sample_rows(32, eager.generator)
        noise = torch.randn((2, 32, eager.action_dim), generator=eager.generator)
        eager._eager_step(rows, noise)
        whole._pure_step(*whole._step_tensors, rows, noise)
    for key, value in weights(eager).items():
        torch.testing.assert_close(weights(whole)[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert eager.temperature.value.item() == pytest.approx(whole.temperature.value.item(), rel=1e-6)
    state_e, state_w = eager.optimizer.state_dict()["state"], whole.optimizer.state_dict()["state"]
    for i in state_e:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(state_w[i][name], state_e[i][name], rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_compiled_update_matches_eager():
    """The whole step compiled as one graph (CPU inductor, ~5-25 s to compile) trains like eager."""
    eager = SAC("Pendulum-v1", seed=5, **TINY).learn(150)
    compiled = SAC("Pendulum-v1", seed=5, compile=True, **TINY).learn(150)
    for key, value in weights(eager).items():
        torch.testing.assert_close(weights(compiled)[key], value, rtol=1e-4, atol=1e-5)


def test_compiled_steps_keep_value_tensor_and_global_guards_only():
    """The structure of the step's own arguments is not re-checked on every call; values,
    tensors, global state and any guard type the filter does not know are."""
    from types import SimpleNamespace

    from maxent.training.fastpath import STRUCTURE_GUARDS, keep_value_guards, prepare_compile

    kept = ["CONSTANT_MATCH", "EQUALS_MATCH", "TENSOR_MATCH", "GRAD_MODE", "GLOBAL_STATE",
            "FUNCTORCH_STACK_MATCH", "SHAPE_ENV", "A_GUARD_TYPE_OF_A_LATER_TORCH"]
    entries = [SimpleNamespace(guard_type=t) for t in [*kept, *sorted(STRUCTURE_GUARDS)]]
    assert keep_value_guards(entries) == [True] * len(kept) + [False] * len(STRUCTURE_GUARDS)
    assert prepare_compile(torch.device("cpu"))["options"]["guard_filter_fn"] is keep_value_guards


@pytest.mark.slow
def test_compiled_step_follows_a_learning_rate_changed_after_compiling():
    """A learning rate is a constant of the compiled graph; its guard is kept, so a schedule that
    changes it gets a graph with the new value rather than the stale one."""
    agent = SAC("Pendulum-v1", seed=5, compile=True, **TINY).learn(80)
    assert agent._compiled_step is not None
    for group in agent.optimizer.param_groups:
        group["lr"] = 0.0
    before = {k: v.clone() for k, v in weights(agent).items()}
    agent.learn(20)
    after = weights(agent)
    trained = [k for k in before if k.startswith(("actor.", "critic."))]
    assert trained and all(torch.equal(before[k], after[k]) for k in trained)


@pytest.mark.slow
@pytest.mark.parametrize("background", [True, False])
def test_auto_compile_switches_to_the_compiled_step_and_trains_like_eager(monkeypatch, background):
    """compile="auto" compiles on a background thread while training runs eagerly (many cores),
    or before training (few); here the first update waits for it so that the switch happens at a
    known step. The graph built on stand-in tensors is the one the real tensors run: dynamo may
    not compile it a second time."""
    import torch._dynamo

    import maxent.agents.sac as sac_module
    from maxent.training.agent import FunctionCallback

    monkeypatch.setattr(sac_module, "AUTO_COMPILE_MIN_UPDATES", 100)
    monkeypatch.setattr(sac_module, "BACKGROUND_MIN_CORES", 1 if background else 10**6)
    torch._dynamo.reset()  # other tests' agents compiled the same method
    auto = SAC("Pendulum-v1", seed=5, precision="float32", **TINY)
    assert auto.config.compile == "auto"

    def wait_for_the_compile(agent):
        if agent.num_timesteps == 1:
            assert agent._compile_job is not None and agent._compiled_step is None
            agent._compile_job.wait()

    with torch._dynamo.config.patch(error_on_recompile=True):
        auto.learn(200, callback=FunctionCallback(wait_for_the_compile))
    assert auto.compiled_from_update == 0 and auto._compile_job is None
    eager = SAC("Pendulum-v1", seed=5, precision="float32", compile=False, **TINY).learn(200)
    for key, value in weights(eager).items():
        torch.testing.assert_close(weights(auto)[key], value, rtol=1e-4, atol=1e-5)


def test_auto_compile_is_skipped_for_short_runs():
    agent = SAC("Pendulum-v1", seed=0, **TINY).learn(300)
    assert agent._compile_job is None and agent._compiled_step is None


def test_without_a_compiler_auto_stays_eager_and_says_so_once(monkeypatch):
    import maxent.agents.sac as sac_module

    monkeypatch.setattr(sac_module, "AUTO_COMPILE_MIN_UPDATES", 10)
    monkeypatch.setattr(sac_module, "compile_unavailable_reason",
                        lambda device: "no C++ compiler was found (CXX, g++, c++, clang++)")
    agent = SAC("Pendulum-v1", seed=0, **TINY)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*eager update") as record:
        agent.learn(200)
        agent.learn(200)  # a later learn call does not try (or warn) again
    assert len([w for w in record if "compiler" in str(w.message)]) == 1
    assert agent._compiled_step is None and agent.num_timesteps == 400


def test_a_failed_background_compile_stays_eager_and_says_so(monkeypatch):
    import maxent.agents.sac as sac_module
    import maxent.training.fastpath as fastpath

    def broken_compile(fn, **kwargs):
        raise RuntimeError("inductor exploded")

    monkeypatch.setattr(sac_module, "AUTO_COMPILE_MIN_UPDATES", 10)
    monkeypatch.setattr(fastpath.torch, "compile", broken_compile)
    agent = SAC("Pendulum-v1", seed=0, **TINY)
    agent._on_learn_start(200)
    agent._compile_job.wait(60)
    with pytest.warns(RuntimeWarning, match="compiling the update failed.*inductor exploded"):
        agent.learn(200)
    assert agent._compiled_step is None and agent.num_timesteps == 200


def test_precision_auto_picks_bf16_only_where_native(monkeypatch):
    import maxent.training.fastpath as fastpath

    monkeypatch.setattr(fastpath, "_cpu_flags", lambda: frozenset({"avx512f"}))
    assert SAC("Pendulum-v1", **TINY).precision == "float32"
    monkeypatch.setattr(fastpath, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert SAC("Pendulum-v1", **TINY).precision == "bfloat16"
    assert SAC("Pendulum-v1", precision="float32", **TINY).precision == "float32"


def test_bfloat16_update_keeps_heads_in_float32():
    agent = SAC("Pendulum-v1", seed=0, precision="bfloat16", **TINY).learn(200)
    rows = agent.buffer.sample_rows(8, agent.generator)
    obs, action, *_ = agent.buffer.split(rows)
    with agent._autocast():
        q = agent.critic(obs, action)
        mean, log_std = agent.actor(obs)
    assert q.dtype == mean.dtype == log_std.dtype == torch.float32
    assert all(torch.isfinite(t).all() for t in weights(agent).values())


def test_endless_episode_history_is_bounded_and_resume_restarts_it(tmp_path, monkeypatch):
    import maxent.agents.sac as sac_module

    monkeypatch.setattr(sac_module, "MAX_REPLAY_STEPS", 50)
    agent = SAC("Pendulum-v1", seed=0, **TINY).learn(120)  # 120 steps into a 200-step episode
    assert agent._episode_actions == [None]
    resumed = SAC.load(agent.save(tmp_path / "ck"))
    assert resumed._episode_length.tolist() == [0] and resumed._episode_actions == [[]]
    resumed.learn(100)
    assert resumed.num_timesteps == 220


def test_loading_onto_another_env_starts_fresh_episodes(tmp_path):
    """A domain-randomised agent loaded onto the nominal task (what a robustness evaluation does)
    must not replay its in-flight episode there: the dynamics differ and the replay would run the
    episode past its end."""
    agent = SAC("maxent/DomainRandomized-invertedpendulum-2d-v0", seed=0, **TINY)
    agent.learn(150)
    path = agent.save(tmp_path / "dr")
    loaded = SAC.load(path, env="InvertedPendulum-v5")
    assert loaded.num_timesteps == 150 and loaded._obs is None
    loaded.learn(60)  # trains on, from fresh episodes
    assert loaded.num_timesteps == 210
    same = SAC.load(path)  # on its own env the episode in flight is replayed as before
    assert same._obs is not None


def test_a_replay_that_ends_its_episode_early_is_caught():
    from maxent.agents.sac import _ReplayDiverged

    agent = SAC("InvertedPendulum-v5", seed=0, **TINY)
    push = np.full((200, 1), 3.0, dtype=np.float32)  # full force one way: the pole falls
    with pytest.raises(_ReplayDiverged, match="ended its saved episode early"):
        agent._replay_episodes(np.array([0]), [push])
