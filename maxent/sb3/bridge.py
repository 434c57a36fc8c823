"""What lets Stable-Baselines3's callbacks and logs run on maxent's SAC: a recorder of each env step
(SB3's ``locals``: actions, new_obs, rewards, dones, infos with Monitor's ``episode``), a VecEnv
view of the training env, and one maxent callback that drives SB3's callback protocol."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from maxent.training.agent import Callback


class StepRecorder(gym.vector.VectorWrapper):
    """Passes every call through to the engine's vector env and keeps what SB3's off-policy loop
    has in hand after ``env.step``: the step's results, with each finished copy's observation
    replaced by its reset one (SB3's auto-reset) and Monitor's ``episode`` record in its info."""

    def __init__(self, env: gym.vector.VectorEnv, episodes: deque):
        super().__init__(env)
        self.episodes = episodes  # the model's ep_info_buffer
        self.episode_count = 0
        self.actions = self.new_obs = self.rewards = self.dones = None
        self.infos: list[dict[str, Any]] = []
        self._return = np.zeros(self.num_envs)
        self._length = np.zeros(self.num_envs, dtype=np.int64)
        # An episode the engine began before this recorder saw its reset (one replayed at load)
        # has no whole record: it gets no Monitor entry.
        self._whole = np.zeros(self.num_envs, dtype=bool)
        self._start = time.time()

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.actions = np.asarray(actions)
        self.new_obs = np.array(obs)
        self.rewards = np.asarray(reward, dtype=np.float32)
        self.dones = np.logical_or(terminated, truncated)
        self._return += reward
        self._length += 1
        self.infos = per_env_infos(info, self.num_envs)
        for i in np.flatnonzero(self.dones):
            self.infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            self.infos[i]["terminal_observation"] = self.new_obs[i].copy()
            if self._whole[i]:
                episode = {"r": round(float(self._return[i]), 6), "l": int(self._length[i]),
                           "t": round(time.time() - self._start, 6)}
                self.infos[i]["episode"] = episode
                self.episodes.append(episode)
            self.episode_count += 1
            self._return[i], self._length[i] = 0.0, 0
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        mask = (options or {}).get("reset_mask")
        if mask is None:
            self._return[:], self._length[:] = 0.0, 0
            self._whole[:] = True
        else:
            self._whole[mask] = True
            if self.new_obs is not None:
                self.new_obs[mask] = np.asarray(obs)[mask]
        return obs, info


def per_env_infos(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (arrays with ``_key`` masks) as SB3's list of per-env dicts."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get("_" + key)
        for i in range(n):
            if mask is None or mask[i]:
                out[i][key] = per_env_infos(value, n)[i] if isinstance(value, dict) else value[i]
    return out


class TrainingEnvView(DummyVecEnv):
    """``model.get_env()``: the engine's training envs seen as SB3's DummyVecEnv, so callbacks can
    read spaces and attributes (``get_attr``, ``env_method``, ``env_is_wrapped``). Stepping or
    resetting it is refused: the engine owns the episodes in flight."""

    def __init__(self, envs: list[gym.Env], observation_space: gym.Space, action_space: gym.Space):
        # DummyVecEnv.__init__ would build new envs from factories; these exist already.
        self.envs = envs
        self.num_envs = len(envs)
        self.observation_space, self.action_space = observation_space, action_space
        self.render_mode = getattr(envs[0], "render_mode", None)
        self.metadata = getattr(envs[0], "metadata", {})
        self.reset_infos = [{} for _ in envs]
        self._seeds = [None] * self.num_envs
        self._options = [{} for _ in envs]

    def _refuse(self, what: str):
        raise RuntimeError(f"model.get_env() is the env maxent's SAC is training on; {what} it from "
                           "outside would break the episodes in flight. Make a separate env instead")

    def step_async(self, actions):
        self._refuse("stepping")

    def step_wait(self):
        self._refuse("stepping")

    def reset(self):
        self._refuse("resetting")

    def close(self) -> None:
        pass  # the model closes its envs


def learning_rows(model: Any, logger: Any, start_time: float, start_steps: int) -> None:
    """Record and dump SB3's off-policy log row (rollout, time and train keys) into ``logger``."""
    engine = model._engine
    elapsed = max(time.time() - start_time, 1e-9)
    if model.ep_info_buffer:
        logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in model.ep_info_buffer])))
        logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in model.ep_info_buffer])))
    logger.record("time/episodes", model._recorder.episode_count, exclude="tensorboard")
    logger.record("time/fps", int((engine.num_timesteps - start_steps) / elapsed))
    logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
    logger.record("time/total_timesteps", model.num_timesteps, exclude="tensorboard")
    # The losses go to TensorBoard through the engine's own logger (tensorboard_log); its running
    # means of them are not readable from here.
    logger.record("train/ent_coef", float(engine.temperature.value))
    logger.record("train/learning_rate", engine.config.learning_rate)
    logger.record("train/n_updates", engine.n_updates, exclude="tensorboard")
    logger.dump(step=model.num_timesteps)


class SB3Bridge(Callback):
    """The maxent callback behind ``learn``: after every engine step it hands SB3's callback the
    step's ``locals`` and calls ``on_step``; it marks rollouts every ``train_freq`` env steps
    (``on_rollout_start``/``_end``) and writes SB3's log row every ``log_interval`` episodes.

    One engine step is the env step and the updates due after it, so ``_on_step`` sees the
    updates of that step done (SB3 runs them after the rollout ends)."""

    def __init__(self, model: Any, callback: BaseCallback | None, log_interval: int | None,
                 end: int, learn_locals: dict[str, Any]):
        self.model, self.callback = model, callback
        self.log_interval, self.end = log_interval, end
        self.learn_locals = learn_locals
        self.collected_steps = self.collected_episodes = self.steps = 0

    def on_training_start(self, agent: Any) -> None:
        self.start_time, self.start_steps = time.time(), agent.num_timesteps
        self.episodes_at_start = self.model._recorder.episode_count
        if self.callback is not None:
            self.callback.init_callback(self.model)
            self.callback.on_training_start(self.learn_locals, globals())
            self.callback.on_rollout_start()

    def on_step(self, agent: Any) -> bool:
        recorder = self.model._recorder
        self.steps += 1
        self.collected_steps += 1
        ended = int(recorder.dones.sum())
        self.collected_episodes += ended
        keep_going = True
        if self.callback is not None:
            actions = recorder.actions.reshape(recorder.num_envs, -1)
            space = self.model.action_space
            low, high = space.low.reshape(-1), space.high.reshape(-1)
            self.callback.update_locals({
                "self": self.model, "env": self.model.get_env(), "callback": self.callback,
                "actions": recorder.actions, "buffer_actions": 2.0 * (actions - low) / (high - low) - 1.0,
                "new_obs": recorder.new_obs, "rewards": recorder.rewards, "dones": recorder.dones,
                "infos": recorder.infos, "num_collected_steps": self.collected_steps,
                "num_collected_episodes": self.collected_episodes,
                "learning_starts": self.model.learning_starts, "log_interval": self.log_interval,
                "train_freq": self.model.train_freq, "replay_buffer": self.model.replay_buffer,
                "action_noise": None,
            })
            keep_going = self.callback.on_step()
        if not keep_going:
            return False
        if ended and self.log_interval:
            done_here = recorder.episode_count - self.episodes_at_start
            if any((done_here - k) % self.log_interval == 0 for k in range(ended)):
                learning_rows(self.model, self.model.logger, self.start_time, self.start_steps)
        if self.steps % self.model._train_every == 0:
            self.collected_steps = self.collected_episodes = 0
            if self.callback is not None:
                self.callback.on_rollout_end()
                if agent.num_timesteps < self.end:
                    self.callback.on_rollout_start()
        return True

    def on_training_end(self, agent: Any) -> None:
        if self.callback is not None:
            self.callback.on_training_end()
