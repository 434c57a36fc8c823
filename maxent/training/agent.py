"""The one agent interface every maxent algorithm satisfies: the training loop and the checkpoint
plumbing, once; callbacks; evaluation.

The surface is Stable-Baselines3's (``learn``, ``predict``, ``save``, ``load``, callbacks,
``progress_bar=True``) so its users need nothing new; SB3 models pass :func:`evaluate` too, which is
how benchmarks run them side by side. As in SB3's ``BaseAlgorithm``, :class:`Agent` owns the
plumbing of ``learn`` (argument checks, callbacks, progress bar, log rows, the finite-value guard,
the run-directory lock) and of ``save``/``load`` (atomic pickle-free checkpoint, config with
overrides, env rebuilt from its id, non-finite weights refused); an agent file supplies only what
is its own, one level deep:

- ``_learn_step()``: one unit of interaction and update (a vectorized env step and its gradient
  steps, one GRPO step, one batch), advancing ``num_timesteps``;
- ``_saved()``: what a checkpoint holds, declared (:mod:`maxent.training.saved`: modules,
  optimisers, controllers, RNGs, tensors, counters, arrays); the base writes, validates and reads
  it. ``_checkpoint``/``_restore`` are overridden (calling the base) only for what is truly the
  agent's own, such as SAC's in-flight episodes;
- optionally ``_on_learn_start(end)``, ``_on_learn_end()``, ``_log_metrics()`` (extra values for
  the log row), ``_headline()`` (the progress bar's figures), ``_finished()``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import math
import sys
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from maxent.training import logging as mlog
from maxent.training import runlock
from maxent.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from maxent.training.config import AgentConfig, ConfigError
from maxent.training.env_identity import describe_env, difference, rebuild_factory
from maxent.training.env_identity import well_formed as env_description_well_formed  # noqa: I001
from maxent.training.limits import OutOfMemoryError, check_config_device
from maxent.training.saved import (Check, Entry, NumpyRNG, Tensor, Value, check_common_state,
                                   restore_entries, write_entries)
from maxent.training.threads import apply_torch_threads
from maxent.training.vector import check_real, env_factory, make_env, make_vector_env

__all__ = [
    "Agent", "AgentConfig", "ArmsAgent", "Callback", "CallbackList", "CheckpointCallback", "ConfigError",
    "EvalCallback", "FunctionCallback", "StopOnRewardThreshold", "as_callback", "evaluate",
]


def checked_config(config: Any, config_cls: type) -> Any:
    """``config_cls()`` when ``config`` is None, else ``config`` if it is a ``config_cls``."""
    if config is None:
        return config_cls()
    if not isinstance(config, config_cls):
        raise TypeError(f"config must be a {config_cls.__name__}, got {type(config).__name__}")
    return config


def resolve_config(config: Any, config_cls: type, overrides: dict[str, Any]) -> Any:
    """The config an agent runs with: ``config_cls(**overrides)`` when ``config`` is None, else
    ``config`` (a ``config_cls``) with ``overrides`` replaced; validated either way."""
    if config is None:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config_cls)})
        if unknown:
            raise ConfigError(f"unknown {config_cls.__name__} field(s) {unknown}; valid fields: "
                              f"{sorted(f.name for f in dataclasses.fields(config_cls))}")
        return check_config_device(config_cls(**overrides))
    config = checked_config(config, config_cls)
    return check_config_device(config.replace(**overrides) if overrides else config)


def check_total_steps(total_steps: Any) -> int:
    """``total_steps`` as a positive int, or a ``ValueError`` saying what was passed."""
    if isinstance(total_steps, (bool, np.bool_)) or not isinstance(total_steps, (int, np.integer, float)) \
            or not math.isfinite(total_steps) or int(total_steps) != total_steps or total_steps <= 0:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    return int(total_steps)


def nonfinite_tensors(tensors: dict[str, torch.Tensor], skip: Sequence[str] = ()) -> list[str]:
    """Names of floating-point tensors holding NaN or inf (names starting with ``skip`` exempt)."""
    return [name for name, t in tensors.items()
            if t.is_floating_point() and not name.startswith(tuple(skip)) and not torch.isfinite(t).all()]


class Agent(abc.ABC):
    """What every agent offers, and the plumbing they share (see the module docstring).

    Class attributes an agent sets: ``config_cls`` (its config dataclass), ``kind`` (the checkpoint
    kind; the class name by default), ``load_arguments`` (constructor arguments that ``load``
    accepts besides config fields, e.g. ``("images",)``), ``nonfinite_ok`` (tensor-name prefixes
    that may legitimately hold inf, exempt from the save/load finiteness check),
    ``default_log_interval`` (env steps between log rows when the config has no ``log_interval``),
    ``env_kind``, ``episode_window`` and ``auto_threads`` (see :meth:`__init__`).
    """

    config_cls: ClassVar[type] = AgentConfig
    kind: ClassVar[str] = ""
    load_arguments: ClassVar[tuple[str, ...]] = ()
    nonfinite_ok: ClassVar[tuple[str, ...]] = ()
    default_log_interval: ClassVar[int] = 1000
    env_kind: ClassVar[str] = "single"
    auto_threads: ClassVar[bool] = False
    episode_window: ClassVar[int | None] = None

    def __init__(self, env: Any = None, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None, **overrides: Any):
        """The state every agent has: ``config`` (a ``config_cls``, with ``overrides``; checked),
        ``seed`` and the numpy generator ``np_rng`` seeded by it, ``device`` and torch's thread
        count where the config has them (``auto_threads``: a ``torch_threads`` of None sizes the
        team to the free cores, :func:`maxent.training.threads.apply_torch_threads`), the env, ``log_dir``, ``logger`` and the counters
        (``num_timesteps``, ``episode_returns``, ``episode_lengths``).

        The env follows ``env_kind``: ``"single"`` sets ``env`` (built from an id, or the instance
        given), ``"vector"`` sets ``envs`` and ``n_envs`` (``config.n_envs`` copies), ``"none"``
        leaves the env to the agent. ``env_id`` is the id when one was given, else None.
        ``episode_window`` keeps only that many recent episodes (None: all)."""
        self.config = cfg = resolve_config(config, self.config_cls, overrides)
        self.seed = int(seed)
        self.np_rng = np.random.default_rng(self.seed)
        device = getattr(cfg, "device", None)
        if device is not None and device != "auto":  # "auto": the agent picks (GRPO: accelerate)
            self.device = torch.device(device)
        threads = getattr(cfg, "torch_threads", None)
        if self.auto_threads:
            apply_torch_threads(threads)
        elif threads is not None:
            torch.set_num_threads(int(threads))
        self.env_id = env if isinstance(env, str) else None
        if self.env_kind == "single":
            self.env = make_env(env) if isinstance(env, str) else env
        elif self.env_kind == "vector":
            self.envs = make_vector_env(env, cfg.n_envs, cfg.vectorization)
            self.n_envs = self.envs.num_envs
        # Described as built, before anything wraps it (a front's step recorder): what a
        # checkpoint records and a load compares (maxent.training.env_identity).
        self._env_described = self._describe_own_env()
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.logger = None
        self.num_timesteps = 0
        window = self.episode_window
        self.episode_returns = [] if window is None else deque(maxlen=window)
        self.episode_lengths = [] if window is None else deque(maxlen=window)

    config: Any
    seed: int = 0
    env_id: str | None = None
    num_timesteps: int = 0
    logger: mlog.RunLogger | None = None
    log_dir: Path | None = None

    @classmethod
    def checkpoint_kind(cls) -> str:
        return cls.__dict__.get("kind") or cls.__name__

    # ----------------------------------------------------------------------- what an agent supplies

    @abc.abstractmethod
    def _learn_step(self) -> None:
        """One unit of interaction and update; must advance ``num_timesteps``."""

    @abc.abstractmethod
    def predict(self, observation: Any, deterministic: bool = True) -> Any:
        """Return the action for one observation (or a batch with a leading dimension)."""

    def _saved(self) -> list[Entry]:
        """What a checkpoint holds besides ``env_id``, ``seed`` and ``num_timesteps``, declared
        with :mod:`maxent.training.saved`'s entries; read again at restore, so it refers to the
        freshly built agent's objects."""
        return []

    def _checkpoint(self, **options: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                                   dict[str, np.ndarray] | None]:
        """``(tensors, state, arrays)`` to save: :meth:`_saved`, written out. An agent overrides
        this (calling it) only to add what cannot be declared."""
        tensors, state, arrays = write_entries(self._saved())
        return tensors, state, arrays or None

    def _restore(self, ckpt: Checkpoint, path: Path) -> None:
        """Put what :meth:`_checkpoint` saved back into this freshly built agent: every entry of
        :meth:`_saved` is validated (names, shapes, dtypes, kinds), then read."""
        restore_entries(self._saved(), ckpt)

    def _on_learn_start(self, end: int) -> None:
        """Before the first step of a ``learn`` call that will end at step ``end``."""

    def _on_learn_end(self) -> None:
        """After the last step of a ``learn`` call, also when it raised."""

    def _log_metrics(self) -> None:
        """Record extra values into ``self.logger`` for the log row being written."""

    def _headline(self) -> dict[str, str]:
        """The progress bar's figures besides fps; default: the recent mean return."""
        recent = self._recent_returns()
        return {"return": f"{np.mean(recent):.1f}"} if recent else {}

    def _finished(self) -> bool:
        """True when there is nothing left to learn (e.g. the end of a task stream)."""
        return False

    @property
    def _learning_starts(self) -> int:
        """Env steps before the first update (0 unless the config says)."""
        return int(getattr(self.config, "learning_starts", 0) or 0)

    @property
    def _log_interval(self) -> int:
        return int(getattr(self.config, "log_interval", None) or self.default_log_interval)

    @property
    def _is_main_process(self) -> bool:
        return True

    # ----------------------------------------------------------------------- the loop, once

    def learn(self, total_steps: int, callback: Callback | Sequence[Callback] | None = None,
              progress_bar: bool = False) -> Agent:
        """Train for ``total_steps`` more steps (env steps over all copies; an agent's docstring
        says what its step is). ``callback.on_step`` runs after every step and may stop training
        by returning ``False``; the agent stays usable and can ``learn`` again.

        Raises:
            ValueError: ``total_steps`` is not a positive integer.
            FloatingPointError: NaN/inf in an observation, reward, action or loss; the message
                names what went bad, at which step, and who produced it. Checkpoints written
                before are left as they were.
            maxent.training.runlock.RunLockedError: another process is training in ``log_dir``.
        """
        total = check_total_steps(total_steps)
        end = self.num_timesteps + total
        callback = as_callback(callback)
        with self._run_lock():
            self._open_logger(progress_bar, end)
            if 0 < self._learning_starts and end <= self._learning_starts:
                warnings.warn(
                    f"{type(self).__name__}.learn({total}) ends at step {end}, before learning starts "
                    f"(learning_starts={self._learning_starts}): it will only collect experience and "
                    "learn nothing. Raise total_steps or lower learning_starts.",
                    RuntimeWarning, stacklevel=2)
            self._on_learn_start(end)
            callback.on_training_start(self)
            schedule = mlog.LogSchedule(self._log_interval, self.num_timesteps, end)
            try:
                while self.num_timesteps < end and not self._finished():
                    self._learn_step()
                    fps = schedule.due(self.num_timesteps)
                    if fps is not None:
                        self._write_log_row(fps)
                    if not callback.on_step(self):
                        self.logger.close_progress()  # the message below gets a line of its own
                        # Said, not silent: a stop_above reached early looks like a crash otherwise.
                        print(f"{type(self).__name__}: training stopped by a callback at step "
                              f"{self.num_timesteps:,} of {end:,}"
                              + (f" ({callback.stop_reason})" if callback.stop_reason else ""),
                              file=sys.stderr, flush=True)
                        break
            finally:
                self._on_learn_end()
                self.logger.close_progress()  # what is printed next starts on its own line
            # Not in the `finally`: after an error or Ctrl-C the agent may be mid-step, and a
            # checkpoint saved then would not resume exactly; the last periodic one stays in use.
            callback.on_training_end(self)
        return self

    def _run_lock(self) -> contextlib.AbstractContextManager:
        if self.log_dir is None or not self._is_main_process:
            return contextlib.nullcontext()
        return runlock.hold(self.log_dir, purpose="training")

    def _open_logger(self, progress_bar: bool, end: int) -> None:
        """Keep the run's logger across ``learn`` calls (one TensorBoard file) unless a new
        progress bar is asked for, or the old one had a bar to close."""
        logger = self.logger
        if logger is not None and not logger.closed and not progress_bar and not logger.has_bar:
            return
        if logger is not None:
            logger.close()
        main = self._is_main_process
        self.logger = mlog.RunLogger(self.log_dir if main else None, progress_bar=progress_bar and main,
                                     total_steps=end, initial_step=self.num_timesteps)

    def _recent_returns(self, n: int = 100) -> list[float]:
        returns = getattr(self, "episode_returns", None)
        return list(itertools.islice(reversed(returns), n)) if returns else []

    def _write_log_row(self, fps: float) -> None:
        logger = self.logger
        logger.record(mlog.FPS, fps)
        recent = self._recent_returns()
        if recent:
            logger.record(mlog.EP_RETURN, float(np.mean(recent)))
            lengths = getattr(self, "episode_lengths", None)
            if lengths:
                logger.record(mlog.EP_LENGTH, float(np.mean(list(itertools.islice(reversed(lengths), 100)))))
        self._log_metrics()
        row = logger.dump(self.num_timesteps)
        for name, value in row.items():
            if name.endswith("loss") and not math.isfinite(value):
                raise FloatingPointError(
                    f"{name} became {value} by step {self.num_timesteps}: training diverged. Lower "
                    "the learning rate or check the rewards' scale; checkpoints written before this "
                    "step are left as they were.")
        logger.progress(self.num_timesteps, fps=f"{fps:.0f}", **self._headline())

    # ----------------------------------------------------------------------- save and load, once

    def save(self, path: str | Path, **options: Any) -> Path:
        """Write the agent to the directory ``path`` atomically (config.json, weights.safetensors,
        state.json, and replay.npz where the agent has data arrays) and return the path. Options
        are the agent's own (e.g. SAC's ``include_replay_buffer``).

        Raises:
            FloatingPointError: a weight is NaN/inf (training diverged); ``path`` is left as it was.
        """
        tensors, state, arrays = self._checkpoint(**options)
        bad = nonfinite_tensors(tensors, self.nonfinite_ok)
        if bad:
            raise FloatingPointError(f"refusing to save non-finite weights ({bad[0]}"
                                     f"{', ...' if len(bad) > 1 else ''}): training diverged; the "
                                     f"checkpoint at {path} is left as it was")
        state = {"env_id": self.env_id, "env_description": self._env_description(), "seed": self.seed,
                 "num_timesteps": self.num_timesteps, **state}
        return save_checkpoint(path, kind=self.checkpoint_kind(), config=self.config.to_json(),
                               tensors=tensors, state=state, arrays=arrays)

    @classmethod
    def load(cls, path: str | Path, env: Any = None, log_dir: str | Path | None = None,
             **overrides: Any) -> Agent:
        """Rebuild a saved agent; ``learn`` then continues exactly where it stopped.

        Args:
            path: the checkpoint directory.
            env: the env to continue on (an id, an id's constructor, an instance, a vector env);
                ``None`` rebuilds it from the saved env id, or from the saved description of the
                env (:mod:`maxent.training.env_identity`) when it was given another way. An agent
                with episodes in flight replays them only on the env it was saved with (the same
                description), and otherwise says why in an
                :class:`~maxent.training.env_identity.InexactResumeWarning` (an error under
                ``warnings.simplefilter("error", InexactResumeWarning)``).
            log_dir: where further logs go.
            **overrides: config fields to change (e.g. ``device="cuda"``); fields that change the
                networks' shapes fail with a clear error. The agent's ``load_arguments`` (e.g.
                GRPO's ``reward_funcs``) are passed to its constructor instead.

        Raises:
            CheckpointError: a missing, foreign, corrupt or diverged (non-finite) checkpoint, or one
                that does not fit this env or config; the message names the file and the fix.
        """
        arguments = {k: overrides.pop(k) for k in cls.load_arguments if k in overrides}
        ckpt = load_checkpoint(path, kind=cls.checkpoint_kind())
        bad = nonfinite_tensors(ckpt.tensors, cls.nonfinite_ok)
        if bad:
            raise CheckpointError(f"{ckpt.path}/weights.safetensors holds NaN/inf in {bad[0]}: the "
                                  "run had diverged when it was saved; resume from an earlier "
                                  "checkpoint")
        try:
            config = cls.config_cls.from_json(ckpt.config)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{ckpt.path}/config.json holds an invalid {cls.checkpoint_kind()} "
                                  f"config: {err}") from None
        if overrides:
            try:
                config = config.replace(**overrides)
            except (TypeError, ValueError) as err:
                raise CheckpointError(f"cannot load {ckpt.path}: the overrides {sorted(overrides)} "
                                      f"make an invalid {cls.checkpoint_kind()} config: {err}") from None
        from_checkpoint = env is None
        check_common_state(ckpt, rebuild_env=from_checkpoint)
        described = ckpt.state.get("env_description")
        if described is not None and not env_description_well_formed(described):
            raise CheckpointError(f"{ckpt.path}/state.json field 'env_description' is not a "
                                  "description of an env as maxent writes it; resume from an "
                                  "earlier checkpoint")
        if env is None:
            env = cls._saved_env(ckpt)
        try:
            agent = cls._rebuild(ckpt, env, config, log_dir, **arguments)
        except OutOfMemoryError as err:  # refused by its estimate, before allocating
            raise CheckpointError(f"{ckpt.path}/config.json asks for more memory than this machine "
                                  f"has: {err} (pass it to load, e.g. buffer_size=...)") from None
        except (ValueError, TypeError, OverflowError, RuntimeError) as err:
            if not from_checkpoint or isinstance(err, CheckpointError):
                raise
            # Built from the checkpoint alone (its config.json and env): the fault is in its files.
            raise CheckpointError(f"{ckpt.path}/config.json and its env cannot build a "
                                  f"{cls.checkpoint_kind()}: {str(err).splitlines()[0]}") from err
        agent._restore(ckpt, ckpt.path)
        agent.num_timesteps = int(ckpt.state["num_timesteps"])
        return agent

    @classmethod
    def _saved_env(cls, ckpt: Checkpoint) -> Any:
        env = ckpt.state.get("env_id")
        if env is not None:
            return env
        build = rebuild_factory(ckpt.state.get("env_description"))
        if build is None:
            raise ValueError(f"the agent in {ckpt.path} was trained on a custom env instance; pass "
                             "env=... to load it")
        return build if cls.env_kind == "vector" else build()

    def _describe_own_env(self) -> dict[str, Any] | None:
        target = {"vector": "envs", "single": "env"}.get(self.env_kind)
        return describe_env(getattr(self, target, None)) if target else None

    def _env_description(self) -> dict[str, Any] | None:
        """How this agent's env was built (:func:`maxent.training.env_identity.describe_env`),
        taken when it was built: it does not change over the agent's life."""
        if not hasattr(self, "_env_described"):
            self._env_described = self._describe_own_env()
        return self._env_described

    def _env_difference(self, ckpt: Checkpoint) -> str | None:
        """Why this agent's env may not be the one ``ckpt`` was saved on; ``None``: the same."""
        saved, saved_id = ckpt.state.get("env_description"), ckpt.state.get("env_id")
        if saved is None and saved_id is not None and self.env_id is not None:
            # A checkpoint from before env descriptions: its env was given by id and built by it.
            return None if saved_id == self.env_id else f"env id is {saved_id!r} there, {self.env_id!r} here"
        return difference(saved, self._env_description())

    @classmethod
    def _rebuild(cls, ckpt: Checkpoint, env: Any, config: Any, log_dir: Any, **arguments: Any) -> Agent:
        return cls(env, config=config, seed=int(ckpt.state["seed"]), log_dir=log_dir, **arguments)

    def evaluate(self, n_episodes: int = 10, env: Any = None, seed: int = 0,
                 deterministic: bool = True) -> np.ndarray:
        """Returns of ``n_episodes`` episodes on ``env`` (default: the env trained on), shape (n,)."""
        target = env if env is not None else self.env_id
        if target is None:
            raise ValueError(f"{type(self).__name__} was built on an env instance: pass env=... to "
                             "evaluate it")
        return evaluate(self, target, n_episodes=n_episodes, deterministic=deterministic, seed=seed)

    def close(self) -> None:
        """Close the environments and the log writers."""
        for name in ("envs", "env"):
            target = getattr(self, name, None)
            if target is not None and hasattr(target, "close"):
                target.close()
        if self.logger is not None:
            self.logger.close()


class ArmsAgent(Agent):
    """An agent whose actions are the arms of a ``Discrete`` space (the bandit agents): the env
    must have one; ``n_arms``, per-arm pull counts ``arm_counts``, the observation in flight and
    the running episode return join the common state, and the checkpoint holds the arm count
    (checked at load), the pull counts, the episode returns and the numpy RNG."""

    def __init__(self, env: Any, config: Any = None, seed: int = 0,
                 log_dir: str | Path | None = None):
        super().__init__(env, config, seed, log_dir)
        if not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise TypeError(f"{type(self).__name__} needs a Discrete action space of arms, got "
                            f"{self.env.action_space}")
        self.n_arms = int(self.env.action_space.n)
        self.arm_counts = np.zeros(self.n_arms, dtype=np.int64)
        self._obs = None
        self._episode_return = 0.0

    def _saved(self) -> list[Entry]:
        return [
            Check("n_arms", self.n_arms, "number of arms", fix="load it with the env it was trained on"),
            Tensor("arm_counts", self, "arm_counts"),
            Value("episode_returns", self, "episode_returns", load=lambda v: [float(r) for r in v]),
            NumpyRNG("rng_numpy", self.np_rng),
        ]


def as_observation_batch(observation: Any, shape: tuple[int, ...], owner: str) -> tuple[np.ndarray, bool]:
    """``(batch (n, *shape) float32, single)`` for ``predict``: one observation of ``shape`` or a
    batch of them; anything else (a string, a dict, an empty batch, NaN) gets an error that says
    what was passed and what is expected."""
    if isinstance(observation, (str, bytes, dict)):
        raise TypeError(f"{owner}.predict needs an array observation of shape {shape} (or a batch "
                         f"(n, *{shape})), got a {type(observation).__name__}")
    check_real(observation, f"the observation given to {owner}.predict")
    try:
        obs = np.asarray(observation, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{owner}.predict could not read the observation as numbers ({err}); "
                         f"pass an array of shape {shape}") from None
    if obs.shape == shape:
        batch, single = obs.reshape(1, *shape), True
    elif obs.ndim == len(shape) + 1 and obs.shape[1:] == shape:
        if len(obs) == 0:
            raise ValueError(f"{owner}.predict got an empty batch of shape {obs.shape}; pass at least "
                             "one observation")
        batch, single = obs, False
    else:
        raise ValueError(f"observation has shape {obs.shape}, expected {shape} (one) or (n, *{shape}) "
                         "(a batch); pass observations from the env the agent was built for")
    if not np.isfinite(batch).all():
        raise ValueError(f"{owner}.predict got an observation with NaN/inf: "
                         f"{np.array2string(obs, threshold=8)}; the policy's action would be "
                         "meaningless. Check the env or the preprocessing that produced it")
    return batch, single


# --------------------------------------------------------------------------- callbacks


class Callback:
    """Hooks called by ``learn``. ``on_step`` runs after every vectorized env step; returning
    ``False`` stops training (the agent stays usable and can ``learn`` again); ``stop_reason``
    then says why, in the notice ``learn`` prints."""

    stop_reason: str | None = None

    def on_training_start(self, agent: Agent) -> None:
        pass

    def on_step(self, agent: Agent) -> bool:
        return True

    def on_training_end(self, agent: Agent) -> None:
        pass


class CallbackList(Callback):
    """Runs several callbacks in order; stops when any asks to."""

    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = list(callbacks)

    def on_training_start(self, agent: Agent) -> None:
        for cb in self.callbacks:
            cb.on_training_start(agent)

    def on_step(self, agent: Agent) -> bool:
        keep_going = True
        for cb in self.callbacks:
            keep_going = cb.on_step(agent) and keep_going
        return keep_going

    def on_training_end(self, agent: Agent) -> None:
        for cb in self.callbacks:
            cb.on_training_end(agent)

    @property
    def stop_reason(self) -> str | None:
        return next((cb.stop_reason for cb in self.callbacks if cb.stop_reason), None)


def as_callback(callback: Callback | Sequence[Callback] | None) -> Callback:
    """Normalise ``None``, one callback or a list into a single :class:`Callback`."""
    if callback is None:
        return Callback()
    if isinstance(callback, Callback):
        return callback
    return CallbackList(callback)


class _EveryNSteps(Callback):
    """Fires ``_fire`` each time ``num_timesteps`` crosses a multiple of ``every`` steps."""

    def __init__(self, every: int, what: str):
        if every < 1:
            raise ValueError(f"{what} must be a positive number of steps, got {every}")
        self.every = int(every)
        self._next = None

    def on_training_start(self, agent: Agent) -> None:
        self._next = (agent.num_timesteps // self.every + 1) * self.every
        self.stop_reason = None  # a reason from an earlier learn call is not this one's

    def on_step(self, agent: Agent) -> bool:
        if agent.num_timesteps < self._next:
            return True
        self._next = (agent.num_timesteps // self.every + 1) * self.every
        return self._fire(agent)

    def _fire(self, agent: Agent) -> bool:
        raise NotImplementedError


class CheckpointCallback(_EveryNSteps):
    """Save the agent to ``save_path`` every ``save_freq`` steps and at the end of training.

    Extra keyword arguments go to ``agent.save``. The directory is replaced atomically each time, so a run killed at any moment leaves the last
    complete checkpoint; ``SAC.load(save_path).learn(...)`` resumes from it.
    """

    def __init__(self, save_freq: int, save_path: str | Path, save_at_end: bool = True,
                 **save_kwargs: Any):
        super().__init__(save_freq, "save_freq")
        self.save_path = Path(save_path)
        self.save_at_end = save_at_end
        self.save_kwargs = save_kwargs  # passed to agent.save, e.g. include_replay_buffer=False

    def _fire(self, agent: Agent) -> bool:
        agent.save(self.save_path, **self.save_kwargs)
        return True

    def on_training_end(self, agent: Agent) -> None:
        if self.save_at_end:
            agent.save(self.save_path, **self.save_kwargs)


class EvalCallback(_EveryNSteps):
    """Evaluate every ``eval_freq`` steps on a separate env, log ``eval/mean_return``, optionally
    save the best agent to ``best_path`` and stop once the mean return reaches ``stop_above``."""

    def __init__(self, eval_env: Any, eval_freq: int = 10_000, n_episodes: int = 5,
                 deterministic: bool = True, best_path: str | Path | None = None,
                 stop_above: float | None = None, seed: int | None = 0, verbose: bool = False):
        super().__init__(eval_freq, "eval_freq")
        if n_episodes < 1:
            raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
        self.eval_env = eval_env
        self.n_episodes = n_episodes
        self.deterministic = deterministic
        self.best_path = Path(best_path) if best_path is not None else None
        self.stop_above = stop_above
        self.seed = seed
        self.verbose = verbose
        self.best_mean = -np.inf
        self.last_mean: float | None = None
        self.history: list[tuple[int, float, float]] = []

    def _fire(self, agent: Agent) -> bool:
        returns = evaluate(agent, self.eval_env, self.n_episodes, self.deterministic, self.seed)
        mean, std = float(returns.mean()), float(returns.std())
        self.last_mean = mean
        self.history.append((agent.num_timesteps, mean, std))
        if agent.logger is not None:
            agent.logger.record(mlog.EVAL_RETURN, mean)
            agent.logger.record(mlog.EVAL_RETURN_STD, std)
        if self.verbose:
            print(f"step {agent.num_timesteps}: eval return {mean:.1f} ± {std:.1f}")
        if mean > self.best_mean:
            self.best_mean = mean
            if self.best_path is not None:
                agent.save(self.best_path)
        if self.stop_above is not None and mean >= self.stop_above:
            self.stop_reason = (f"EvalCallback: mean eval return {mean:.1f} reached "
                                f"stop_above={self.stop_above:g}")
            return False
        return True


class StopOnRewardThreshold(Callback):
    """Stop when the mean return of the last ``n_episodes`` training episodes reaches
    ``threshold`` (for evaluation-based stopping use ``EvalCallback(stop_above=...)``)."""

    def __init__(self, threshold: float, n_episodes: int = 10):
        if n_episodes < 1:
            raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
        self.threshold = threshold
        self.n_episodes = n_episodes

    def on_training_start(self, agent: Agent) -> None:
        self.stop_reason = None  # a reason from an earlier learn call is not this one's

    def on_step(self, agent: Agent) -> bool:
        recent = list(getattr(agent, "episode_returns", []))[-self.n_episodes:]
        if len(recent) < self.n_episodes or float(np.mean(recent)) < self.threshold:
            return True
        self.stop_reason = (f"StopOnRewardThreshold: mean of the last {self.n_episodes} training "
                            f"returns {float(np.mean(recent)):.1f} reached {self.threshold:g}")
        return False


class FunctionCallback(Callback):
    """Wrap a plain function ``fn(agent) -> bool | None`` (``False`` stops training)."""

    def __init__(self, fn: Callable[[Agent], bool | None]):
        self.fn = fn

    def on_step(self, agent: Agent) -> bool:
        return self.fn(agent) is not False


# --------------------------------------------------------------------------- evaluation


def evaluate(agent: Any, env: str | gym.Env | Callable[[], gym.Env], n_episodes: int = 10,
             deterministic: bool = True, seed: int | None = 0) -> np.ndarray:
    """Run ``n_episodes`` full episodes and return their undiscounted returns, shape ``(n,)``.

    ``agent`` is anything with ``predict(obs, deterministic=...)``: a maxent agent, or an SB3 model
    (whose ``(action, state)`` tuple is unpacked). Episode ``i`` is reset with ``seed + i`` so two
    agents evaluated with the same seed face the same start states.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    owned = not isinstance(env, gym.Env)
    eval_env = env_factory(env)() if owned else env
    returns = np.zeros(n_episodes)
    try:
        for i in range(n_episodes):
            obs, _ = eval_env.reset(seed=None if seed is None else seed + i)
            done = False
            while not done:
                action = agent.predict(obs, deterministic=deterministic)
                if isinstance(action, tuple):  # SB3 returns (action, recurrent_state)
                    action = action[0]
                obs, reward, terminated, truncated, _ = eval_env.step(action)
                returns[i] += float(reward)
                done = terminated or truncated
    finally:
        if owned:
            eval_env.close()
    return returns
