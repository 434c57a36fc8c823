"""``maxent.sb3.SAC``: Stable-Baselines3's SAC class (constructor, ``learn``, ``predict``, ``save``,
``load``, callbacks, logger) over maxent's SAC engine (:class:`maxent.agents.SAC`): each SB3
argument becomes a :class:`maxent.agents.SACConfig` field, or is refused by name."""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import warnings
import zipfile
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.logger import HumanOutputFormat, Logger
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import configure_logger, get_system_info
from stable_baselines3.common.vec_env import VecEnv

from maxent.agents.sac import SAC as Engine
from maxent.training.agent import Callback
from maxent.training.checkpoint import load_checkpoint
from maxent.training.env_identity import InexactResumeWarning
from maxent.sb3.bridge import SB3Bridge, StepRecorder, TrainingEnvView
from maxent.sb3.translate import (
    SB3_SAC_DEFAULTS,
    UnsupportedArgument,
    config_overrides,
    policy_name,
    reject_unknown,
    resolve_device,
)

FRONT_FILE = "sb3.json"  # the front's own settings, beside the engine's checkpoint in the zip
ENGINE_DIR = "maxent"    # the engine's checkpoint directory inside the zip
_FRONT_ARGS = ("verbose", "tensorboard_log", "stats_window_size", "seed")


class SACPolicyView:
    """``model.policy``: SB3's ``predict`` signature and the engine's networks (``actor``,
    ``critic``, ``critic_target``) for code that reaches for them."""

    def __init__(self, model: SAC):
        self._model = model

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        return self._model.predict(observation, state, episode_start, deterministic)

    def set_training_mode(self, mode: bool) -> None:
        for module in (self.actor, self.critic):
            module.train(mode)

    def __getattr__(self, name: str) -> Any:
        if name == "_model":  # not built yet (copy, unpickling): no recursion through this method
            raise AttributeError(name)
        if name in ("actor", "critic", "critic_target", "observation_space", "action_space", "device"):
            return getattr(self._model._engine, name)
        raise AttributeError(f"maxent's SAC policy view has no {name!r}; it offers predict, "
                             "set_training_mode, actor, critic, critic_target and the spaces")


class SAC:
    """Stable-Baselines3's ``SAC`` with SB3's signature and defaults, trained by maxent's engine.

    Arguments maxent cannot honour (gSDE, action noise, custom replay buffers, learning-rate
    schedules, a non-ReLU or pi/qf-split network...) raise :class:`UnsupportedArgument` naming
    them; unknown keywords raise ``TypeError`` naming the closest. ``docs/sb3.md`` has the table.
    """

    def __init__(self, policy: Any, env: Any, learning_rate: Any = 3e-4, buffer_size: int = 1_000_000,
                 learning_starts: int = 100, batch_size: int = 256, tau: float = 0.005,
                 gamma: float = 0.99, train_freq: Any = 1, gradient_steps: int = 1,
                 action_noise: Any = None, replay_buffer_class: Any = None,
                 replay_buffer_kwargs: dict | None = None, optimize_memory_usage: bool = False,
                 n_steps: int = 1, ent_coef: str | float = "auto", target_update_interval: int = 1,
                 target_entropy: str | float = "auto", use_sde: bool = False,
                 sde_sample_freq: int = -1, use_sde_at_warmup: bool = False,
                 stats_window_size: int = 100, tensorboard_log: str | None = None,
                 policy_kwargs: dict | None = None, verbose: int = 0, seed: int | None = None,
                 device: Any = "auto", _init_setup_model: bool = True, **unknown: Any):
        reject_unknown(unknown, list(SB3_SAC_DEFAULTS), "SAC")
        args = {k: v for k, v in locals().items() if k in SB3_SAC_DEFAULTS}
        policy = policy_name(policy)
        overrides = config_overrides({k: v for k, v in args.items() if k not in _FRONT_ARGS})
        seed = secrets.randbelow(2**31 - 1) if seed is None else int(seed)  # SB3: None = unseeded
        engine = Engine(_engine_env(env), seed=seed, **overrides)
        self._attach(engine, policy, verbose, tensorboard_log, stats_window_size)

    # ------------------------------------------------------------------ wiring the engine in

    def _attach(self, engine: Engine, policy: str, verbose: int, tensorboard_log: str | None,
                stats_window_size: int) -> None:
        self._engine = engine
        self.policy_class = policy
        self.verbose = int(verbose)
        self.tensorboard_log = tensorboard_log
        self.stats_window_size = int(stats_window_size)
        self.ep_info_buffer: deque = deque(maxlen=self.stats_window_size)
        self._recorder = StepRecorder(engine.envs, self.ep_info_buffer)
        engine.envs = self._recorder  # every step the engine takes passes the recorder
        sub_envs = getattr(self._recorder.env, "envs", None)
        if sub_envs is None:
            raise TypeError("maxent's SB3 front needs the engine's envs in this process "
                            "(vectorization='sync')")
        self._env_view = TrainingEnvView(list(sub_envs), engine.observation_space, engine.action_space)
        self._logger: Logger = _sb3_logger(self.verbose, None, "", True)
        self._custom_logger = False
        self._timestep_offset = 0
        self.policy = SACPolicyView(self)

    # ------------------------------------------------------------------ SB3's attributes

    @property
    def num_timesteps(self) -> int:
        return self._engine.num_timesteps - self._timestep_offset

    @property
    def seed(self) -> int:
        return self._engine.seed

    @property
    def env(self) -> TrainingEnvView:
        return self._env_view

    def get_env(self) -> TrainingEnvView:
        return self._env_view

    def get_vec_normalize_env(self) -> None:
        return None  # the front trains on plain envs, never a VecNormalize

    @property
    def logger(self) -> Logger:
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Use ``logger`` from now on; ``learn`` then no longer makes its own (as in SB3)."""
        self._logger = logger
        self._custom_logger = True

    @property
    def observation_space(self) -> gym.spaces.Box:
        return self._engine.observation_space

    @property
    def action_space(self) -> gym.spaces.Box:
        return self._engine.action_space

    @property
    def n_envs(self) -> int:
        return self._engine.n_envs

    @property
    def device(self) -> torch.device:
        return self._engine.device

    @property
    def replay_buffer(self) -> Any:
        return self._engine.buffer

    @property
    def engine(self) -> Engine:
        """The maxent agent doing the work (for maxent's own API: ``evaluate``, native callbacks)."""
        return self._engine

    def __getattr__(self, name: str) -> Any:
        # SB3's hyperparameter attributes (model.gamma, model.batch_size...), read from the config.
        if name.startswith("_") or "_engine" not in self.__dict__:
            raise AttributeError(name)
        cfg = self._engine.config
        derived = {
            "learning_rate": cfg.learning_rate, "buffer_size": cfg.buffer_size,
            "learning_starts": cfg.learning_starts, "batch_size": cfg.batch_size, "tau": cfg.tau,
            "gamma": cfg.gamma, "gradient_steps": cfg.gradient_steps,
            "train_freq": TrainFreq(cfg.train_freq, TrainFrequencyUnit.STEP),
            "ent_coef": (("auto" if cfg.alpha == 1.0 else f"auto_{cfg.alpha:g}") if cfg.auto_alpha
                         else cfg.alpha),
            "target_entropy": self._engine.target_entropy, "target_update_interval": 1,
            "policy_kwargs": {"net_arch": list(cfg.hidden_sizes), "n_critics": cfg.n_critics},
            "use_sde": False, "action_noise": None, "n_updates": self._engine.n_updates,
        }
        if name in derived:
            return derived[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def _train_every(self) -> int:
        return self._engine.config.train_freq

    # ------------------------------------------------------------------ learn and act

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 4,
              tb_log_name: str = "SAC", reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> SAC:
        """Train for ``total_timesteps`` more env steps, running SB3 callbacks (and maxent ones)."""
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer, float)) \
                or total_timesteps != int(total_timesteps) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        learn_locals = dict(locals())
        sb3_callback, native = _split_callbacks(callback)
        if reset_num_timesteps:
            self._timestep_offset = self._engine.num_timesteps
        if not self._custom_logger:
            self._logger = _sb3_logger(self.verbose, self.tensorboard_log, tb_log_name,
                                       reset_num_timesteps)
        run_dir = self._logger.get_dir() if self.tensorboard_log is not None else None
        if run_dir is not None and str(self._engine.log_dir) != run_dir:
            self._engine.log_dir = Path(run_dir)  # maxent's own TensorBoard and CSV go there too
            if self._engine.logger is not None:
                self._engine.logger.close()
        end = self._engine.num_timesteps + int(total_timesteps)
        bridge = SB3Bridge(self, sb3_callback, log_interval, end, learn_locals)
        self._engine.learn(int(total_timesteps), callback=[bridge, *native], progress_bar=progress_bar)
        return self

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """``(action, state)`` as SB3 returns it; ``state`` passes through (no recurrent policy)."""
        return self._engine.predict(observation, deterministic=deterministic), state

    # ------------------------------------------------------------------ save and load

    def save(self, path: str | os.PathLike, exclude: Any = None, include: Any = None) -> None:
        """Write one zip file (SB3's ``.zip`` suffix added when ``path`` has none) holding the
        engine's checkpoint without the replay buffer, as SB3's ``save`` leaves it out."""
        for name, value in (("exclude", exclude), ("include", include)):
            if value:
                raise UnsupportedArgument(f"save({name}=...) is not supported: maxent saves the whole "
                                          "agent (config, weights, optimiser and RNG states)")
        target = Path(path)
        if target.suffix == "":
            target = target.with_suffix(".zip")
        target.parent.mkdir(parents=True, exist_ok=True)
        front = {"verbose": self.verbose, "tensorboard_log": self.tensorboard_log,
                 "stats_window_size": self.stats_window_size, "policy": self.policy_class,
                 "env_id": self._engine.env_id, "system_info": get_system_info(print_info=False)[1]}
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            self._engine.save(Path(tmp) / ENGINE_DIR, include_replay_buffer=False)
            (Path(tmp) / FRONT_FILE).write_text(json.dumps(front, indent=1))
            partial = Path(tmp) / "model.zip"
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(Path(tmp).rglob("*")):
                    if file.is_file() and file != partial:
                        archive.write(file, file.relative_to(tmp).as_posix())
            os.replace(partial, target)  # atomic: a reader sees the old file or the new one

    def save_replay_buffer(self, path: str | os.PathLike) -> None:
        """The replay buffer's arrays as one ``.npz`` archive at ``path`` (the name kept as given)."""
        with open(path, "wb") as f:
            np.savez(f, **self._engine.buffer.to_arrays())

    def load_replay_buffer(self, path: str | os.PathLike) -> None:
        with np.load(path) as data:
            self._engine.buffer.load_arrays({k: data[k] for k in data.files})

    @classmethod
    def load(cls, path: str | os.PathLike, env: Any = None, device: Any = "auto",
             custom_objects: dict | None = None, print_system_info: bool = False,
             force_reset: bool = True, **kwargs: Any) -> SAC:
        """Rebuild a model saved by :meth:`save` (or a maxent SAC checkpoint directory).

        ``kwargs`` are SB3 hyperparameters to change (e.g. ``learning_starts=0``). With
        ``force_reset=False`` and the saved env, the episode in flight at save time is replayed
        and continued; with ``force_reset=True`` (SB3's default) training starts a new episode.
        """
        reject_unknown(kwargs, list(SB3_SAC_DEFAULTS), "SAC.load")
        if custom_objects:
            raise UnsupportedArgument("custom_objects is not supported: maxent checkpoints hold no "
                                      "pickled objects; pass hyperparameters as keyword arguments")
        if "policy_kwargs" in kwargs:
            raise UnsupportedArgument("load(policy_kwargs=...) is not supported: the networks' shapes "
                                      "come from the checkpoint")
        if "seed" in kwargs:
            raise UnsupportedArgument("load(seed=...) is not supported: the checkpoint holds the random "
                                      "generators' states, which training continues from")
        front_args = {k: kwargs.pop(k) for k in _FRONT_ARGS if k in kwargs}
        overrides = config_overrides(kwargs)
        overrides["device"] = resolve_device(device)
        source = Path(path)
        if not source.exists() and source.suffix == "" and source.with_suffix(".zip").exists():
            source = source.with_suffix(".zip")
        if not source.exists():
            raise FileNotFoundError(f"no saved model at {path} (nor {path}.zip); pass the path given "
                                    "to save()")
        with tempfile.TemporaryDirectory() as tmp:
            if source.is_dir():  # a maxent SAC checkpoint directory
                front, checkpoint = {"env_id": load_checkpoint(source, kind="SAC").state.get("env_id")}, source
            else:
                with zipfile.ZipFile(source) as archive:
                    archive.extractall(tmp)
                front = json.loads((Path(tmp) / FRONT_FILE).read_text())
                checkpoint = Path(tmp) / ENGINE_DIR
            if print_system_info:
                print("== CURRENT SYSTEM INFO ==")
                get_system_info(print_info=True)
                print("== SAVED MODEL SYSTEM INFO ==\n" + front.get("system_info", "(not saved)"))
            env_id = env if isinstance(env, str) else front.get("env_id") if env is None else None
            if force_reset and env_id is not None:
                # The saved episodes are dropped below, so whether they replay here is moot.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", InexactResumeWarning)
                    engine = Engine.load(checkpoint, env=env_id, **overrides)
                engine._obs = None  # the next learn starts a fresh episode
            else:
                engine = Engine.load(checkpoint, env=_engine_env(env) if env is not None else None,
                                     **overrides)
        model = cls.__new__(cls)
        model._attach(engine, front.get("policy", "MlpPolicy"),
                      front_args.get("verbose", front.get("verbose", 0)),
                      front_args.get("tensorboard_log", front.get("tensorboard_log")),
                      front_args.get("stats_window_size", front.get("stats_window_size", 100)))
        return model

    def close(self) -> None:
        self._engine.close()


def _sb3_logger(verbose: int, tensorboard_log: str | None, tb_log_name: str, reset: bool) -> Logger:
    """SB3's logger for ``learn``: TensorBoard runs as SB3 names them when ``tensorboard_log`` is
    set, SB3's table on stdout when ``verbose >= 1``, and no folder created otherwise."""
    if tensorboard_log is not None:
        return configure_logger(verbose, tensorboard_log, tb_log_name, reset)
    return Logger(None, [HumanOutputFormat(sys.stdout)] if verbose >= 1 else [])


def _engine_env(env: Any) -> Any:
    """The env as maxent's engine takes it: an id or a gymnasium.Env; SB3 VecEnvs are refused."""
    if env is None:
        raise ValueError("SAC needs an env: pass an env id such as 'Pendulum-v1' or a gymnasium.Env")
    if isinstance(env, VecEnv):
        raise UnsupportedArgument(f"env={type(env).__name__} is not supported: maxent's SAC front "
                                  "trains on one env; pass the env id or a gymnasium.Env instead")
    if not isinstance(env, (str, gym.Env)):
        raise TypeError(f"env must be an env id or a gymnasium.Env, got {type(env).__name__}")
    return env


def _split_callbacks(callback: Any) -> tuple[BaseCallback | None, list[Callback]]:
    """SB3 callbacks (one, a list, or a function of ``(locals, globals)``) as one SB3 callback, and
    maxent's own callbacks, which the engine runs directly."""
    if callback is None:
        return None, []
    items = list(callback) if isinstance(callback, (list, tuple)) else [callback]
    native = [c for c in items if isinstance(c, Callback)]
    sb3 = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in items
           if not isinstance(c, Callback)]
    for c in sb3:
        if isinstance(c, ConvertCallback) and not callable(c.callback):
            raise TypeError(f"callback must be an SB3 BaseCallback, a maxent Callback, a function "
                            f"or a list of them, got {type(c.callback).__name__}")
    if not sb3:
        return None, native
    return (sb3[0] if len(sb3) == 1 else CallbackList(sb3)), native
