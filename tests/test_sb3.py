"""maxent.sb3, the Stable-Baselines3 front: SB3 code runs on maxent's SAC unchanged but for the
import line; SB3's callbacks, evaluate_policy and zoo entries work; what maxent cannot honour raises."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3
import torch
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv

from maxent.agents import SACConfig
from maxent.sb3 import SAC, UnsupportedArgument, from_zoo, parse_python_value
from maxent.training.agent import Callback

REPO = Path(__file__).resolve().parents[1]
# Small and quick: what the behaviour checks need, not what learning needs.
SMALL = dict(learning_starts=50, batch_size=32, buffer_size=5_000, policy_kwargs=dict(net_arch=[32, 32]),
             seed=0)


def small(**kwargs):
    return SAC("MlpPolicy", "Pendulum-v1", **{**SMALL, **kwargs})


# ---------------------------------------------------------------------------- SB3's own code


def test_sb3s_documented_example_runs_with_the_import_changed(tmp_path):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import sb3_pendulum
    finally:
        sys.path.pop(0)
    total = sb3_pendulum.main(["--total-timesteps", "300", "--path", str(tmp_path / "sac_pendulum"),
                               "--play-steps", "200"])
    assert (tmp_path / "sac_pendulum.zip").is_file()  # SB3's save adds .zip
    assert np.isfinite(total) and total < 0  # Pendulum's rewards are never positive


def test_the_example_answers_help_without_training():
    done = subprocess.run([sys.executable, str(REPO / "examples/sb3_pendulum.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--total-timesteps" in done.stdout
    assert not Path("sac_pendulum.zip").exists()


def test_defaults_are_sb3s_and_reach_the_engine():
    sb3 = inspect.signature(stable_baselines3.SAC.__init__).parameters
    ours = inspect.signature(SAC.__init__).parameters
    for name, param in sb3.items():
        if name in ("self", "policy", "env"):
            continue
        assert name in ours, name
        assert ours[name].default == param.default, name
    model = SAC("MlpPolicy", "Pendulum-v1", seed=0, device="cpu")
    cfg, native = model.engine.config, SACConfig()
    for field in ("learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma",
                  "train_freq", "gradient_steps", "hidden_sizes", "n_critics", "alpha", "auto_alpha",
                  "target_entropy"):
        assert getattr(cfg, field) == getattr(native, field), field
    assert model.target_entropy == -1.0 and model.ent_coef == "auto"


def test_the_front_trains_exactly_as_the_engine_called_natively():
    from maxent.agents import SAC as Native

    front = small().learn(150)
    native = Native("Pendulum-v1", seed=0, learning_starts=50, batch_size=32, buffer_size=5_000,
                    hidden_sizes=(32, 32)).learn(150)
    for name, tensor in native.actor.state_dict().items():
        assert torch.equal(front.engine.actor.state_dict()[name], tensor), name
    obs = np.array([0.3, -0.2, 0.5], np.float32)
    np.testing.assert_array_equal(front.predict(obs, deterministic=True)[0], native.predict(obs))


def test_ent_coef_and_target_entropy_translate():
    auto = small(ent_coef="auto_0.1", target_entropy=-2.5)
    assert auto.engine.config.auto_alpha and auto.engine.config.alpha == pytest.approx(0.1)
    assert float(auto.engine.temperature.value) == pytest.approx(0.1)
    assert auto.engine.target_entropy == -2.5 and auto.ent_coef == "auto_0.1"
    fixed = small(ent_coef=0.05)
    assert not fixed.engine.config.auto_alpha and fixed.ent_coef == pytest.approx(0.05)
    assert small(train_freq=(4, "step"), gradient_steps=-1).engine.config.gradient_steps == 4
    with pytest.raises(ValueError, match="ent_coef"):
        small(ent_coef="auto_x")


def test_save_load_round_trip_predicts_identically(tmp_path):
    model = small().learn(120)
    obs = np.random.default_rng(1).uniform(-1, 1, (10, 3)).astype(np.float32)
    before, state = model.predict(obs, deterministic=True)
    assert state is None and before.shape == (10, 1)
    model.save(tmp_path / "m")
    loaded = SAC.load(tmp_path / "m")
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, after)
    assert loaded.num_timesteps == 120 and loaded.batch_size == 32
    assert loaded.policy_kwargs["net_arch"] == [32, 32]
    # SB3's load keywords: hyperparameters to change and the device.
    changed = SAC.load(tmp_path / "m.zip", learning_starts=0, device="cpu")
    assert changed.learning_starts == 0 and changed.device == torch.device("cpu")
    loaded.learn(60)  # and it trains on
    assert loaded.num_timesteps == 60  # SB3's reset_num_timesteps=True counts this call alone


def test_force_reset_chooses_between_a_new_episode_and_the_saved_one(tmp_path):
    model = small().learn(120)  # saved 120 steps into a 200-step episode
    model.save(tmp_path / "m")
    fresh = SAC.load(tmp_path / "m")  # SB3's default force_reset=True: a new episode
    fresh.learn(200)
    assert [e["l"] for e in fresh.ep_info_buffer] == [200]
    continued = SAC.load(tmp_path / "m", force_reset=False)
    ends = []
    continued.learn(80, callback=lambda locals_, _: ends.append(
        (bool(locals_["dones"][0]), "episode" in locals_["infos"][0])) or True)
    # The saved episode ends after its last 80 steps; its first 120 were not seen: no record.
    assert ends[-1] == (True, False) and not any(done for done, _ in ends[:-1])
    assert len(continued.ep_info_buffer) == 0


def test_a_native_checkpoint_directory_loads_into_the_front(tmp_path):
    model = small().learn(60)
    model.engine.save(tmp_path / "native")
    front = SAC.load(tmp_path / "native")
    obs = np.zeros(3, np.float32)
    np.testing.assert_array_equal(front.predict(obs, deterministic=True)[0],
                                  model.predict(obs, deterministic=True)[0])


def test_reset_num_timesteps_counts_like_sb3():
    model = small()
    model.learn(60)
    model.learn(40, reset_num_timesteps=False)
    assert model.num_timesteps == 100
    model.learn(30)
    assert model.num_timesteps == 30 and model.engine.num_timesteps == 130


# ---------------------------------------------------------------------------- callbacks


class Recorder(BaseCallback):
    """Keeps what SB3 hands a callback, and stops training at ``stop_at`` calls."""

    def __init__(self, stop_at: int):
        super().__init__()
        self.stop_at = stop_at
        self.events: list[str] = []
        self.rewards: list[float] = []
        self.episodes: list[dict] = []
        self.seen_timesteps: list[int] = []

    def _on_training_start(self) -> None:
        self.events.append("training_start")
        self.start_locals = dict(self.locals)

    def _on_rollout_start(self) -> None:
        self.events.append("rollout_start")

    def _on_rollout_end(self) -> None:
        self.events.append("rollout_end")

    def _on_step(self) -> bool:
        assert self.locals["new_obs"].shape == (1, 3) and self.locals["dones"].shape == (1,)
        assert self.locals["actions"].shape == (1, 1) and self.locals["self"] is self.model
        assert np.all(np.abs(self.locals["buffer_actions"]) <= 1.0)
        self.rewards.append(float(self.locals["rewards"][0]))
        self.seen_timesteps.append(self.num_timesteps)
        if self.locals["dones"][0]:
            self.episodes.append(self.locals["infos"][0]["episode"])
            assert "terminal_observation" in self.locals["infos"][0]
        return self.n_calls < self.stop_at

    def _on_training_end(self) -> None:
        self.events.append("training_end")


def test_a_base_callback_sees_sb3s_locals_and_stops_training():
    model = small(train_freq=2)
    callback = Recorder(stop_at=230)
    model.learn(1000, callback=callback)
    assert model.num_timesteps == 230  # stopped by the callback, not the budget
    assert callback.seen_timesteps == list(range(1, 231))
    assert callback.model is model and callback.training_env is model.get_env()
    assert callback.start_locals["total_timesteps"] == 1000
    # Monitor's episode record: the rewards the callback saw over the 200-step episode.
    assert len(callback.episodes) == 1 and callback.episodes[0]["l"] == 200
    assert callback.episodes[0]["r"] == pytest.approx(sum(callback.rewards[:200]), abs=1e-4)
    assert model.ep_info_buffer[0] == callback.episodes[0]
    events = callback.events
    assert events[0] == "training_start" and events[-1] == "training_end"
    # A rollout every train_freq=2 steps; as in SB3, the one the stop cuts short has no end.
    assert events.count("rollout_start") == 115 and events.count("rollout_end") == 114


def test_a_function_callback_and_a_maxent_callback_run_too():
    calls = []

    class Native(Callback):
        def on_step(self, agent):
            calls.append(("native", agent.num_timesteps))
            return True

    def old_style(locals_, globals_):
        calls.append(("function", locals_["self"].num_timesteps))
        return locals_["self"].num_timesteps < 10

    model = small()
    model.learn(100, callback=[old_style, Native()])
    assert model.num_timesteps == 10  # the function stopped it at its 10th call
    assert ("native", 10) in calls and ("function", 10) in calls


def test_a_logger_set_by_the_user_is_kept(tmp_path):
    from stable_baselines3.common.logger import configure

    model = small()
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(210, log_interval=1)
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    assert "rollout/ep_rew_mean" in rows[0] and len(rows) == 2  # header and the one episode's row


def test_the_training_env_view_refuses_to_be_stepped():
    env = small().get_env()
    assert env.num_envs == 1 and env.get_attr("spec")[0].id == "Pendulum-v1"
    with pytest.raises(RuntimeError, match="training on"):
        env.reset()


def test_eval_and_checkpoint_callbacks_write_their_files(tmp_path):
    model = small()
    eval_cb = EvalCallback(Monitor(gym.make("Pendulum-v1")), eval_freq=100, n_eval_episodes=1,
                           best_model_save_path=str(tmp_path / "best"), log_path=str(tmp_path / "eval"))
    ckpt_cb = CheckpointCallback(save_freq=100, save_path=str(tmp_path / "ckpt"), name_prefix="rl_model",
                                 save_replay_buffer=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "not of the same type" warning
        model.learn(200, callback=CallbackList([eval_cb, ckpt_cb]))
    assert (tmp_path / "best" / "best_model.zip").is_file()
    evaluations = np.load(tmp_path / "eval" / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [100, 200]
    assert eval_cb.last_mean_reward == pytest.approx(float(evaluations["results"][-1].mean()))
    for steps in (100, 200):
        assert (tmp_path / "ckpt" / f"rl_model_{steps}_steps.zip").is_file()
        assert (tmp_path / "ckpt" / f"rl_model_replay_buffer_{steps}_steps.pkl").is_file()
    assert SAC.load(tmp_path / "ckpt" / "rl_model_100_steps.zip").num_timesteps == 100
    restored = small()
    restored.load_replay_buffer(tmp_path / "ckpt" / "rl_model_replay_buffer_200_steps.pkl")
    assert len(restored.replay_buffer) == 200


def test_stop_training_on_reward_threshold_through_eval_callback():
    model = small()
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1e9, verbose=0)
    model.learn(1000, callback=EvalCallback(Monitor(gym.make("Pendulum-v1")), eval_freq=80,
                                            n_eval_episodes=1, callback_on_new_best=stop))
    assert model.num_timesteps == 80


def test_evaluate_policy_matches_maxents_evaluate_on_the_same_seeds():
    model = small().learn(150)
    for seed in (0, 1, 2):
        env = DummyVecEnv([lambda: Monitor(gym.make("Pendulum-v1"))])
        env.seed(seed)
        mean, _ = evaluate_policy(model, env, n_eval_episodes=1, deterministic=True)
        assert mean == pytest.approx(model.engine.evaluate(1, seed=seed)[0], abs=1e-6)


def test_tensorboard_runs_are_named_as_sb3_names_them(tmp_path, capsys):
    model = small(tensorboard_log=str(tmp_path), verbose=1)
    model.learn(210, tb_log_name="run", log_interval=1)
    out = capsys.readouterr().out  # verbose=1 prints SB3's table after each episode here
    assert "ep_rew_mean" in out and "| 200 " in out and "n_updates" in out
    model.learn(20, tb_log_name="run")
    runs = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))  # not run locks
    assert runs == ["run_1", "run_2"]
    assert list((tmp_path / "run_1").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_learning_improves_the_return_on_pendulum():
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=500, policy_kwargs=dict(net_arch=[64, 64]),
                seed=0, device="cpu")
    before = model.engine.evaluate(5, seed=100).mean()
    model.learn(6000)
    after = model.engine.evaluate(5, seed=100).mean()
    assert after > before + 300, (before, after)


# ---------------------------------------------------------------------------- zoo


def test_a_zoo_mujoco_entry_loads():
    # rl-baselines3-zoo's hyperparams/sac.yml entry for the MuJoCo tasks.
    model, n_timesteps = from_zoo({"n_timesteps": 1e6, "policy": "MlpPolicy", "learning_starts": 10000},
                                  "HalfCheetah-v4", seed=0, device="cpu")
    assert n_timesteps == 1_000_000
    assert model.engine.config.learning_starts == 10_000 and model.observation_space.shape == (17,)
    assert model.engine.env_id == "HalfCheetah-v4"


def test_a_zoo_yaml_file_with_python_strings_loads(tmp_path):
    (tmp_path / "sac.yml").write_text(
        "Pendulum-v1: &defaults\n"
        "  n_timesteps: !!float 2e4\n"
        "  policy: 'MlpPolicy'\n"
        "  learning_rate: !!float 1e-3\n"
        "  train_freq: [4, 'step']\n"
        "  policy_kwargs: \"dict(net_arch=dict(pi=[64, 64], qf=[64, 64]), log_std_init=-3,"
        " activation_fn=nn.ReLU)\"\n"
        "MountainCarContinuous-v0:\n"
        "  <<: *defaults\n"
        "  use_sde: True\n")
    model, n = from_zoo(tmp_path / "sac.yml", "Pendulum-v1", seed=0)
    cfg = model.engine.config
    assert n == 20_000 and cfg.hidden_sizes == (64, 64) and cfg.learning_rate == 1e-3
    assert cfg.train_freq == 4
    with pytest.raises(UnsupportedArgument, match="use_sde"):
        from_zoo(tmp_path / "sac.yml", "MountainCarContinuous-v0")
    with pytest.raises(KeyError, match="Pendulum-v1"):
        from_zoo(tmp_path / "sac.yml", "Pendulum-v0")


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo pwned')",
    "dict(net_arch=[64] * 2)",
    "dict(activation_fn=os.system)",
    "dict(**kwargs)",
    "open('x')",
])
def test_zoo_strings_are_never_executed(text):
    with pytest.raises(ValueError, match="without running code|not a literal"):
        parse_python_value(text, "policy_kwargs")


def test_zoo_refusals_name_the_key():
    with pytest.raises(UnsupportedArgument, match="normalize"):
        from_zoo({"n_timesteps": 1000, "normalize": True}, "Pendulum-v1")
    with pytest.raises(UnsupportedArgument, match="learning_rate"):
        from_zoo({"n_timesteps": 1000, "learning_rate": "lin_7.3e-4"}, "Pendulum-v1")
    with pytest.raises(ValueError, match="'gamma'"):
        from_zoo({"n_timesteps": 1000, "gama": 0.9}, "Pendulum-v1")


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name,value", [
    ("use_sde", True),
    ("sde_sample_freq", 4),
    ("use_sde_at_warmup", True),
    ("action_noise", NormalActionNoise(np.zeros(1), np.ones(1))),
    ("replay_buffer_class", stable_baselines3.HerReplayBuffer),
    ("replay_buffer_kwargs", {"n_sampled_goal": 4}),
    ("optimize_memory_usage", True),
    ("n_steps", 3),
    ("target_update_interval", 2),
    ("learning_rate", lambda progress: 3e-4 * progress),
    ("train_freq", (1, "episode")),
    ("_init_setup_model", False),
])
def test_every_unhonoured_argument_raises_naming_it(name, value):
    with pytest.raises(UnsupportedArgument, match=name):
        SAC("MlpPolicy", "Pendulum-v1", **{name: value})


@pytest.mark.parametrize("name,value", [
    ("activation_fn", torch.nn.Tanh),
    ("net_arch", dict(pi=[64, 64], qf=[400, 300])),
    ("optimizer_class", torch.optim.RMSprop),
    ("optimizer_kwargs", dict(eps=1e-5)),
    ("use_expln", True),
    ("use_sde", True),
    ("share_features_extractor", True),
])
def test_every_unhonoured_policy_kwarg_raises_naming_it(name, value):
    with pytest.raises(UnsupportedArgument, match=name):
        SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={name: value})


@pytest.mark.parametrize("policy", ["CnnPolicy", "MultiInputPolicy", stable_baselines3.sac.CnnPolicy])
def test_image_and_dict_policies_are_refused_by_name(policy):
    with pytest.raises(UnsupportedArgument, match="CnnPolicy|MultiInputPolicy"):
        SAC(policy, "Pendulum-v1")


def test_sb3s_policy_classes_are_taken_by_name():
    assert SAC(stable_baselines3.sac.MlpPolicy, "Pendulum-v1", **SMALL).policy_class == "MlpPolicy"


def test_unknown_names_raise_with_the_closest():
    with pytest.raises(TypeError, match="'learning_rte'.*did you mean 'learning_rate'"):
        SAC("MlpPolicy", "Pendulum-v1", learning_rte=1e-3)
    with pytest.raises(TypeError, match="did you mean 'net_arch'"):
        SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_archh=[64]))
    with pytest.raises(ValueError, match="did you mean 'MlpPolicy'"):
        SAC("MlpPolicie", "Pendulum-v1")
    with pytest.raises(TypeError, match="did you mean 'learning_starts'"):
        SAC.load("nowhere", learning_start=0)


def test_vec_envs_and_partial_saves_are_refused(tmp_path):
    with pytest.raises(UnsupportedArgument, match="DummyVecEnv"):
        SAC("MlpPolicy", DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    with pytest.raises(UnsupportedArgument, match="exclude"):
        small().save(tmp_path / "m", exclude=["replay_buffer"])
    with pytest.raises(UnsupportedArgument, match="custom_objects"):
        SAC.load(tmp_path / "m", custom_objects={"learning_rate": 0.0})
    with pytest.raises(UnsupportedArgument, match="seed"):
        SAC.load(tmp_path / "m", seed=3)
    with pytest.raises(UnsupportedArgument, match="use_sde"):
        SAC.load(tmp_path / "m", use_sde=True)
