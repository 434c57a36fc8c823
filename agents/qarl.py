"""QARL: robust adversarial RL with a bounded-rationality curriculum for the adversary (Reddi et al.,
ICLR 2024, "Robust Adversarial RL via Bounded Rationality Curricula"), and RARL (Pinto et al. 2017)
as the setting whose adversary is fully rational from the start.

Read top to bottom: config, one SAC player (reusing SAC's networks and the layer's soft losses), the
alternating loop, checkpoints. The adversary is a SAC whose temperature alpha is not learned: each
episode draws alpha from a curriculum (maxent.entropy.temperature: the self-paced Gamma teacher, or the
linear and fixed ablations) and both players see it as the last observation entry. Each iteration
runs ``episodes_per_phase`` episodes in which only the adversary learns, then as many in which only
the protagonist learns; both phases reuse the iteration's alphas, and every episode reports
(alpha, discounted protagonist return) to the curriculum.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from maxent.training import logging as mlog
from maxent.training.agent import Agent, AgentConfig, as_observation_batch
from maxent.agents.sac import build_actor_critic, eager_update
from maxent.training.checkpoint import CheckpointError
from maxent.training.config import check_choice, check_range
from maxent.training.env_identity import InexactResumeWarning
from maxent.training.saved import (
    Check,
    Controller,
    Generator,
    Module,
    NumpyRNG,
    Optimizer,
    Value,
    check_replay,
    episodes_check,
    write_entries,
)
from maxent.entropy import sample_squashed_gaussian
from maxent.envs.adversarial import TASKS, AdversarialMujoco
from maxent.training.replay import ReplayBuffer
from maxent.entropy.temperature import (
    AutoTemperature,
    FixedCurriculum,
    GammaCurriculum,
    LinearCurriculum,
)
from maxent.training.vector import check_env_id, check_finite, require_box

CURRICULA = ("gamma", "linear", "fixed", "none")

# --------------------------------------------------------------------------- config


@dataclass
class QARLConfig(AgentConfig):
    """Every QARL setting; defaults from the paper and its code (AryamanReddi99/quantal-adversarial-rl).

    Attributes:
        curriculum: the adversary temperature's curriculum: ``"gamma"`` (QARL's self-paced teacher),
            ``"linear"`` or ``"fixed"`` (the paper's ablations), or ``"none"`` (RARL: alpha fixed at
            ``rarl_alpha`` and not shown to the players).
        initial_concentration: Gamma concentration k at the start (mean alpha k / rate = 0.05).
        target_concentration: target k (mean alpha 0.001).
        rate: the Gamma's fixed rate.
        max_kl: bound on KL(new || old) per teacher update.
        performance_bound: discounted protagonist return the teacher needs before it moves;
            ``None`` uses the task's default (:data:`maxent.envs.adversarial.TASKS`).
        samples_per_update: (alpha, return) pairs per teacher update.
        target_kl_threshold: KL(current || target) under which the teacher is unconstrained.
        linear_start: the linear ablation's first alpha.
        linear_end: its last alpha.
        linear_fraction: fraction of the first ``learn`` call's steps over which it falls.
        fixed_alpha: the fixed ablation's alpha.
        rarl_alpha: RARL's adversary temperature (near 0: fully rational).
        eval_temperature: alpha appended to task observations in :meth:`QARL.predict` (the paper
            evaluates at 0).
        episodes_per_phase: episodes of adversary learning, then of protagonist learning, per iteration.
        bodies: bodies the adversary pushes; ``None`` uses the task's defaults.
        max_force: bound on each force component (N); ``None`` uses the task's default (1.0).
        torque: also give the adversary a torque about y on each body.
        max_episode_steps: time limit of the task; ``None`` keeps Gymnasium's (1000).
        hidden_sizes: hidden widths of every actor and critic (paper: 3 x 256).
        actor_lr: Adam step size of both actors (paper: 1e-4).
        critic_lr: Adam step size of both players' critics (paper: 3e-4).
        alpha_lr: Adam step size of the protagonist's log alpha (paper: 3e-4).
        protagonist_alpha: the protagonist's initial alpha (learned towards -dim(A) entropy).
        buffer_size: replay capacity of each player.
        learning_starts: transitions a player collects (uniform random actions) before it learns.
        batch_size: transitions per gradient step.
        tau: Polyak coefficient of the target critics.
        gamma: discount (also of the returns the teacher sees).
        n_critics: critics per player (2 = clipped double Q).
        log_std_min: lower clamp of the policies' log standard deviation.
        log_std_max: upper clamp.
        device: torch device.
        torch_threads: intra-op threads for torch on CPU. ``None`` (default): the count
            ``OMP_NUM_THREADS`` fixes when set, else the cores this process may use less those
            other runnable processes keep busy, chosen once per process
            (:mod:`maxent.training.threads`).
        log_interval: env steps between log rows.
    """

    curriculum: str = "gamma"
    initial_concentration: float = 50.0
    target_concentration: float = 1.0
    rate: float = 1000.0
    max_kl: float = 0.5
    performance_bound: float | None = None
    samples_per_update: int = 30
    target_kl_threshold: float = 0.01
    linear_start: float = 0.05
    linear_end: float = 0.001
    linear_fraction: float = 2 / 3
    fixed_alpha: float = 0.05
    rarl_alpha: float = 1e-3
    eval_temperature: float = 0.0
    episodes_per_phase: int = 5
    bodies: tuple[str, ...] | None = None
    max_force: float | None = None
    torque: bool = False
    max_episode_steps: int | None = None
    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    protagonist_alpha: float = 1.0
    buffer_size: int = 1_000_000
    learning_starts: int = 5000
    batch_size: int = 256
    tau: float = 0.005
    gamma: float = 0.99
    n_critics: int = 2
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    device: str = "cpu"
    torch_threads: int | None = None
    log_interval: int = 1000

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if self.bodies is not None:
            self.bodies = (self.bodies,) if isinstance(self.bodies, str) else tuple(self.bodies)
        check_choice("QARLConfig", "curriculum", self.curriculum, CURRICULA)
        positive = ("initial_concentration", "target_concentration", "rate", "max_kl",
                    "linear_start", "fixed_alpha", "rarl_alpha", "episodes_per_phase", "actor_lr",
                    "critic_lr", "alpha_lr", "protagonist_alpha", "buffer_size", "batch_size",
                    "n_critics", "log_interval", "samples_per_update")
        self.require(positive, above=0)
        self.require(("max_force", "max_episode_steps", "torch_threads"), above=0, allow_none=True)
        if self.samples_per_update < 2:
            raise ValueError(f"QARLConfig.samples_per_update must be >= 2, got {self.samples_per_update}")
        self.require(("linear_end", "eval_temperature", "learning_starts", "target_kl_threshold"),
                     at_least=0)
        check_range("QARLConfig", "linear_fraction", self.linear_fraction, 0, 1, open_low=True)
        check_range("QARLConfig", "tau", self.tau, 0, 1, open_low=True)
        check_range("QARLConfig", "gamma", self.gamma, 0, 1)
        if self.batch_size > self.buffer_size:
            raise ValueError(f"QARLConfig.batch_size ({self.batch_size}) must not exceed buffer_size "
                             f"({self.buffer_size})")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"QARLConfig.hidden_sizes must be positive widths, got {self.hidden_sizes}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError(f"QARLConfig.log_std_min ({self.log_std_min}) must be below log_std_max "
                             f"({self.log_std_max})")
        try:
            torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"QARLConfig.device {self.device!r} is not a torch device: {err}") from None


@dataclass
class RARLConfig(QARLConfig):
    """RARL (Pinto et al. 2017) as a QARL setting: the adversary is near fully rational
    (alpha = ``rarl_alpha``) from the first episode and no temperature is observed."""

    curriculum: str = "none"


# --------------------------------------------------------------------------- one SAC player


class Player:
    """One SAC learner of the game: SAC's networks, Adam and eager update
    (:func:`maxent.agents.sac.build_actor_critic`, :func:`~maxent.agents.sac.eager_update`), with
    its own replay.

    ``alpha`` is either learned (an :class:`AutoTemperature`, the protagonist), read per sample from
    the observation's last entry (``alpha_from_obs``, QARL's temperature-conditioned adversary), or
    a constant (RARL's adversary).
    """

    def __init__(self, obs_dim: int, space: gym.spaces.Box, cfg: QARLConfig, device: torch.device,
                 generator: torch.Generator, *, learn_alpha: bool, alpha_from_obs: bool = False,
                 fixed_alpha: float = 0.0):
        self.cfg, self.device, self.generator = cfg, device, generator
        self.obs_dim = obs_dim
        self.action_dim = int(np.prod(space.shape))
        self.low = space.low.astype(np.float32).reshape(-1)
        self.scale = ((space.high - space.low) / 2).astype(np.float32).reshape(-1)
        self.objective, self.optimizer = build_actor_critic(
            obs_dim, self.action_dim, cfg.hidden_sizes, cfg.n_critics, cfg.log_std_min,
            cfg.log_std_max, cfg.actor_lr, cfg.critic_lr, cfg.gamma, device)
        self.actor, self.critic = self.objective.actor, self.objective.critic
        self.critic_target = self.objective.critic_target
        self.temperature = AutoTemperature(-float(self.action_dim), initial_alpha=cfg.protagonist_alpha,
                                           lr=cfg.alpha_lr, device=device) if learn_alpha else None
        self.alpha_from_obs = alpha_from_obs
        self.fixed_alpha = torch.tensor(float(fixed_alpha), device=device)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, self.action_dim, device)
        self.n_updates = 0

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Squashed actions in [-1, 1] for observations (n, obs_dim)."""
        with torch.no_grad():
            mean, log_std = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
            action, _ = sample_squashed_gaussian(mean, log_std, deterministic=deterministic,
                                                 generator=self.generator)
        return action.cpu().numpy()

    def to_env(self, squashed: np.ndarray) -> np.ndarray:
        return self.low + (squashed + 1.0) * self.scale

    def alpha(self, obs: torch.Tensor) -> torch.Tensor:
        """This player's temperature for a batch: 0-dim, or (batch,) when read from observations."""
        if self.temperature is not None:
            return self.temperature.value
        if self.alpha_from_obs:
            return obs[:, -1]
        return self.fixed_alpha

    def update(self) -> tuple[torch.Tensor, ...]:
        """One SAC gradient step of critics, actor (and learned alpha) on a replay minibatch."""
        rows = self.buffer.sample_rows(self.cfg.batch_size, self.generator)
        batch = self.buffer.split(rows)
        noise = torch.randn((2, rows.shape[0], self.action_dim), generator=self.generator,
                            device=self.device)
        alpha = self.alpha(batch[0])  # the temperature is constant within an episode: alpha(s') = alpha(s)
        # A per-row alpha (read from the observation) broadcasts through SAC's two losses.
        critic_loss, actor_loss, entropy = eager_update(self.objective, self.optimizer, batch, noise,
                                                        alpha, self.cfg.tau, self.temperature)
        self.n_updates += 1
        return critic_loss, actor_loss, entropy, alpha.detach().mean()

    def modules(self) -> tuple[tuple[str, torch.nn.Module], ...]:
        return (("actor", self.actor), ("critic", self.critic), ("critic_target", self.critic_target))


# --------------------------------------------------------------------------- the agent


def _check_alpha_history(rows: list, ckpt: Any) -> str | None:
    """Why saved ``alpha_history`` rows (step an episode started, its alpha, the curriculum's
    value) cannot be this run's, or None."""
    for i, row in enumerate(rows):
        if not (len(row) == 3 and isinstance(row[0], int) and 0 <= row[0] <= ckpt.state["num_timesteps"]
                and row[1] >= 0 and row[2] >= 0):
            return f"[{i}] is {row!r:.60}, expected [step <= num_timesteps, alpha >= 0, value >= 0]"
    return None if len(rows) <= 10_000 else f"has {len(rows)} rows, more than the 10000 kept"


class QARL(Agent):
    """Protagonist SAC trained against a SAC adversary whose temperature follows a curriculum.

    Args:
        env: a Gymnasium MuJoCo task id (``"Hopper-v5"``, ``"HalfCheetah-v5"``, ``"Walker2d-v5"``,
            ``"InvertedPendulum-v5"``...) or an env built from one.
        config: a :class:`QARLConfig` (:class:`RARLConfig` for RARL); ``None`` uses the defaults.
        seed: seeds networks, exploration, replay sampling, temperatures and episode resets.
        log_dir: where TensorBoard events and ``progress.csv`` go; ``None`` writes nothing.
        **overrides: fields of the config to change, e.g. ``curriculum="linear"``.

    ``predict`` returns the protagonist's action; :meth:`adversary_predict` the adversary's force.
    """

    config_cls = QARLConfig
    env_kind = "none"  # the game (task + adversary) is built here
    episode_window = 100
    auto_threads = True

    def __init__(self, env: str | gym.Env = "Hopper-v5", config: QARLConfig | None = None,
                 seed: int = 0, log_dir: str | Path | None = None, **overrides: Any):
        super().__init__(env, config, seed, log_dir, **overrides)
        cfg = self.config
        if isinstance(env, str):
            check_env_id(env)
        else:
            self.env_id = env.spec.id if getattr(env, "spec", None) is not None else None
        self.conditioned = cfg.curriculum != "none"
        self.game = AdversarialMujoco(env, bodies=cfg.bodies, max_force=cfg.max_force,
                                      torque=cfg.torque, temperature_in_obs=self.conditioned,
                                      max_episode_steps=cfg.max_episode_steps)
        self.observation_space = self.game.observation_space
        self.task_observation_space = self.game.task_observation_space
        self.action_space = self.game.protagonist_action_space
        self.adversary_action_space = self.game.adversary_action_space
        require_box(self.action_space, "action", "QARL")
        self.obs_dim = int(np.prod(self.observation_space.shape))

        torch.manual_seed(self.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.protagonist = Player(self.obs_dim, self.action_space, cfg, self.device, self.generator,
                                  learn_alpha=True)
        self.adversary = Player(self.obs_dim, self.adversary_action_space, cfg, self.device,
                                self.generator, learn_alpha=False, alpha_from_obs=self.conditioned,
                                fixed_alpha=cfg.rarl_alpha)
        self.curriculum = self._make_curriculum(duration=None)
        self._linear_planned = cfg.curriculum != "linear"

        self.iteration = 0
        self.phase = "adversary"            # which player learns in the current episodes
        self.phase_episode = 0              # episodes finished in the current phase
        self.iteration_alphas = np.zeros(0)  # one alpha per episode of the phase, both phases
        self.alpha_history: list[tuple[int, float, float]] = []  # (step, sampled alpha, mean alpha)
        self._obs: np.ndarray | None = None
        self._alpha = 0.0
        self._ep_return = 0.0
        self._ep_discounted = 0.0
        self._ep_discount = 1.0
        self._ep_length = 0

    def _make_curriculum(self, duration: int | None):
        cfg = self.config
        if cfg.curriculum == "gamma":
            bound = cfg.performance_bound
            if bound is None:
                task = TASKS.get(self.env_id or "")
                if task is None:
                    raise ValueError(
                        f"no default performance_bound for task {self.env_id!r}; set "
                        f"QARLConfig.performance_bound (known tasks: {sorted(TASKS)})")
                bound = task.performance_bound
            return GammaCurriculum(cfg.initial_concentration, cfg.target_concentration,
                                   rate=cfg.rate, max_kl=cfg.max_kl, performance_bound=bound,
                                   samples_per_update=cfg.samples_per_update,
                                   target_kl_threshold=cfg.target_kl_threshold, device=self.device)
        if cfg.curriculum == "linear":
            return LinearCurriculum(cfg.linear_start, cfg.linear_end, duration or 1, device=self.device)
        if cfg.curriculum == "fixed":
            return FixedCurriculum(cfg.fixed_alpha, device=self.device)
        return FixedCurriculum(cfg.rarl_alpha, device=self.device)

    # ----------------------------------------------------------------------- acting

    def _prepare_obs(self, observation: Any) -> tuple[np.ndarray, bool]:
        """Observations as (n, obs_dim) float32, with ``eval_temperature`` appended to task ones."""
        full, task = self.observation_space.shape, self.task_observation_space.shape
        shape = np.shape(observation) if not isinstance(observation, (str, bytes, dict)) else ()
        if shape[-len(task):] == task and shape[-len(full):] != full:
            batch, single = as_observation_batch(observation, task, "QARL")
            column = np.full((len(batch), 1), self.config.eval_temperature, np.float32)
            return np.concatenate([batch.reshape(len(batch), -1), column], axis=1), single
        try:
            batch, single = as_observation_batch(observation, full, "QARL")
        except ValueError as err:
            if "expected" not in str(err):
                raise
            raise ValueError(f"observation has shape {shape}, expected {task} (the task's), {full} "
                             "(with the adversary temperature), or a batch of either") from None
        return batch.reshape(len(batch), -1), single

    def predict(self, observation: Any, deterministic: bool = True) -> np.ndarray:
        """The protagonist's action(s) for task observations (the temperature ``eval_temperature``
        is appended) or game observations; one or a batch."""
        obs, single = self._prepare_obs(observation)
        action = self.protagonist.to_env(self.protagonist.act(obs, deterministic))
        shape = self.action_space.shape
        return action[0].reshape(shape) if single else action.reshape((len(obs), *shape))

    def adversary_predict(self, observation: Any, deterministic: bool = True) -> np.ndarray:
        """The adversary's force(s), like :meth:`predict`."""
        obs, single = self._prepare_obs(observation)
        action = self.adversary.to_env(self.adversary.act(obs, deterministic))
        return action[0] if single else action

    # ----------------------------------------------------------------------- the loop

    def _start_iteration(self) -> None:
        if isinstance(self.curriculum, LinearCurriculum):
            self.curriculum.update(step=self.num_timesteps)
        self.iteration_alphas = np.atleast_1d(
            self.curriculum.sample(self.np_rng, self.config.episodes_per_phase)).astype(np.float64)

    def _start_episode(self) -> None:
        if self.phase_episode == 0 and self.phase == "adversary":
            self._start_iteration()
        self._alpha = float(self.iteration_alphas[self.phase_episode])
        seed = int(self.np_rng.integers(2**31 - 1))
        options = {"temperature": self._alpha} if self.conditioned else None
        obs, _ = self.game.reset(seed=seed, options=options)
        self._obs = np.asarray(obs, dtype=np.float32)
        self._ep_return, self._ep_discounted, self._ep_discount, self._ep_length = 0.0, 0.0, 1.0, 0
        self.alpha_history.append((self.num_timesteps, self._alpha, float(self.curriculum.value)))

    def _end_episode(self) -> None:
        self.episode_returns.append(self._ep_return)
        self.episode_lengths.append(self._ep_length)
        self.curriculum.observe(self._alpha, self._ep_discounted)
        self.phase_episode += 1
        if self.phase_episode == self.config.episodes_per_phase:
            self.phase_episode = 0
            if self.phase == "adversary":
                self.phase = "protagonist"
            else:
                self.phase = "adversary"
                self.iteration += 1
        self._obs = None

    def _on_learn_start(self, end: int) -> None:
        if not self._linear_planned:
            # The linear ablation spans a fraction of the whole run, known at the first learn call.
            duration = max(1, round(self.config.linear_fraction * end))
            self.curriculum = self._make_curriculum(duration)
            self._linear_planned = True

    def _learn_step(self) -> None:
        """One env step of the game, then one update of the player whose phase it is."""
        cfg = self.config
        step = self.num_timesteps + 1  # 1-based, for error messages
        if self._obs is None:
            self._start_episode()
        learner = self.protagonist if self.phase == "protagonist" else self.adversary
        obs = self._obs.reshape(1, -1)
        squashed = {}
        for name, player in (("protagonist", self.protagonist), ("adversary", self.adversary)):
            if player is learner and len(player.buffer) < cfg.learning_starts:
                squashed[name] = self.np_rng.uniform(-1, 1, (1, player.action_dim)).astype(np.float32)
            else:  # both act stochastically: the adversary's noise is its bounded rationality
                squashed[name] = player.act(obs, deterministic=False)
                check_finite(squashed[name], f"action from the {name}'s policy", step, source="policy")
        p_action = self.protagonist.to_env(squashed["protagonist"])[0].reshape(self.action_space.shape)
        a_action = self.adversary.to_env(squashed["adversary"])[0]
        next_obs, reward, terminated, truncated, _ = self.game.step(p_action, a_action)
        next_obs = np.asarray(next_obs, dtype=np.float32)
        check_finite(next_obs, "observation", step)
        check_finite(np.asarray(reward), "reward", step)
        learner_reward = reward if learner is self.protagonist else -reward
        key = "protagonist" if learner is self.protagonist else "adversary"
        learner.buffer.add(obs, squashed[key], np.array([learner_reward]), next_obs.reshape(1, -1),
                           np.array([terminated]))
        self._ep_return += reward
        self._ep_discounted += self._ep_discount * reward
        self._ep_discount *= cfg.gamma
        self._ep_length += 1
        self.num_timesteps += 1
        if terminated or truncated:
            self._end_episode()
        else:
            self._obs = next_obs

        if len(learner.buffer) >= max(cfg.learning_starts, cfg.batch_size):
            critic_loss, actor_loss, entropy, alpha = learner.update()
            prefix = "train" if learner is self.protagonist else "adversary"
            logger = self.logger
            logger.record(f"{prefix}/critic_loss", critic_loss)
            logger.record(f"{prefix}/actor_loss", actor_loss)
            logger.record(f"entropy/{key}", entropy)
            logger.record(mlog.ALPHA if key == "protagonist" else "temperature/adversary_batch", alpha)

    def _log_metrics(self) -> None:
        self.logger.record("temperature/adversary_mean", float(self.curriculum.value))
        if isinstance(self.curriculum, GammaCurriculum):
            self.logger.record("temperature/concentration", self.curriculum.concentration)

    def _headline(self) -> dict[str, str]:
        return {"alpha": f"{float(self.curriculum.value):.4f}", **super()._headline()}

    # ----------------------------------------------------------------------- checkpoints

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The networks' weights under their checkpoint names."""
        return write_entries([e for e in self._saved() if isinstance(e, Module)])[0]

    def _players(self) -> tuple[tuple[str, Player], ...]:
        return (("protagonist", self.protagonist), ("adversary", self.adversary))

    def save(self, path: str | Path, include_replay_buffer: bool = True) -> Path:
        """Save config, both players' weights and optimisers, the protagonist's alpha, the
        curriculum, counters and RNG states (and both replay buffers) to the directory ``path``.

        An episode in flight is not saved: a loaded agent starts a fresh episode of the same phase
        and warns (:class:`~maxent.training.env_identity.InexactResumeWarning`) that its run will
        not match an uninterrupted one bit for bit.
        """
        return super().save(path, include_replay_buffer=include_replay_buffer)

    @property
    def _updates(self) -> list[int]:
        return [self.protagonist.n_updates, self.adversary.n_updates]

    @_updates.setter
    def _updates(self, value: list[int]) -> None:
        self.protagonist.n_updates, self.adversary.n_updates = value

    def _saved(self):
        deque100 = lambda v: deque(v, maxlen=100)  # noqa: E731
        per_phase = self.config.episodes_per_phase
        entries = [Check(["observation_shape", "action_shape", "adversary_action_shape"],
                         [list(self.observation_space.shape), list(self.action_space.shape),
                          list(self.adversary_action_space.shape)],
                         "(observation, action, adversary action) shapes")]
        for name, player in self._players():
            entries += [Module(f"{name}.{part}", module, changed="hidden_sizes or n_critics")
                        for part, module in player.modules()]
            entries.append(Optimizer(f"{name}.optimizer", player.optimizer, key=("optimizers", name)))
        return entries + [
            Controller("protagonist.temperature", self.protagonist.temperature,
                       key="protagonist_temperature", kind=False),
            Controller("curriculum", self.curriculum,
                       fix="was curriculum changed? Load it with the curriculum it was saved with"),
            Generator("rng.torch", self.generator),
            NumpyRNG("rng_numpy", self.np_rng),
            Value("n_updates", self, "_updates", save=tuple),  # a pair: its length is checked
            Value("linear_planned", self, "_linear_planned"),
            Value("iteration", self, "iteration"),
            Value("phase", self, "phase", choices=("adversary", "protagonist")),
            Value("phase_episode", self, "phase_episode",
                  check=lambda v, _: None if v < per_phase else f"is {v}, expected < episodes_per_phase"),
            # An iteration samples one alpha per episode of a phase; none before the first episode.
            Value("iteration_alphas", self, "iteration_alphas", save=np.ndarray.tolist,
                  load=lambda v: np.asarray(v, dtype=np.float64),
                  check=lambda v, ckpt: None if len(v) == per_phase or not (v or ckpt.state["alpha_history"])
                  else f"has {len(v)} alphas, expected {per_phase} (episodes_per_phase)"),
            Value("episode_returns", self, "episode_returns", save=list, load=deque100,
                  check=episodes_check("episode_lengths", 100)),
            Value("episode_lengths", self, "episode_lengths", save=list, load=deque100,
                  check=episodes_check("episode_returns", 100, counts=True)),
            Value("alpha_history", self, "alpha_history", save=lambda h: h[-10_000:],
                  load=lambda v: [tuple(row) for row in v], check=_check_alpha_history),
        ]

    def _checkpoint(self, include_replay_buffer: bool = True):
        """The declared contents, and both replay buffers (``protagonist_*``, ``adversary_*``)."""
        tensors, state, _ = super()._checkpoint()
        # Only how far the unsaved episode had run, so that a load can say its resume is inexact.
        state["in_flight_steps"] = self._ep_length if self._obs is not None else 0
        arrays = None
        if include_replay_buffer:
            arrays = {f"{name}_{key}": value for name, player in self._players()
                      for key, value in player.buffer.to_arrays().items()}
        return tensors, state, arrays

    def _restore(self, ckpt: Any, path: Path) -> None:
        # The linear curriculum's length is planned at the first learn call; a saved one brings it.
        curriculum = ckpt.state["curriculum"]  # checked with the other entries below
        saved_kind = curriculum.get("kind") if isinstance(curriculum, dict) else None
        if saved_kind == "LinearCurriculum" and self.config.curriculum == "linear":
            self.curriculum = LinearCurriculum(device=self.device)
        super()._restore(ckpt, path)
        in_flight = ckpt.state.get("in_flight_steps", 0)
        if not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 0:
            raise CheckpointError(f"{path}/state.json field 'in_flight_steps' is {in_flight!r}, "
                                  "expected a step count >= 0; resume from an earlier checkpoint")
        if in_flight:
            warnings.warn(f"{path} was saved {in_flight} steps into an episode, which QARL does not "
                          "save: that episode starts afresh, so this run will not match an "
                          "uninterrupted one bit for bit", InexactResumeWarning, stacklevel=3)
        for name, player in self._players():
            check_replay(ckpt, player.buffer, prefix=f"{name}_")
        if ckpt.arrays is not None:
            for name, player in self._players():
                prefix = f"{name}_"
                try:
                    player.buffer.load_arrays({k[len(prefix):]: v for k, v in ckpt.arrays.items()
                                               if k.startswith(prefix)})
                except (KeyError, ValueError) as err:
                    raise CheckpointError(f"{path}/replay.npz does not hold the {name}'s replay "
                                          f"buffer: {err}") from None

    def close(self) -> None:
        """Close the game's env and the log writers."""
        self.game.close()
        super().close()
