"""Soft Actor-Critic with automatic temperature (Haarnoja et al. 2018, "Soft Actor-Critic
Algorithms and Applications"), read top to bottom: config, networks, the update, the loop.

The soft Bellman target, the policy loss and the temperature step come from the maxent layer;
this file only wires them. Speed comes from a few choices: the critics are one stacked network
(one batched matmul per layer for all of them), the actor step takes no critic weight-gradients,
optimisers are fused, and nothing in the loop waits on a tensor's value except the action itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from maxent.training import denormals
from maxent.training import logging as mlog
from maxent.training.agent import Agent, AgentConfig, as_observation_batch
from maxent.training.checkpoint import CheckpointError
from maxent.training.saved import (
    Check,
    Controller,
    Generator,
    Module,
    NumpyRNG,
    Optimizer,
    Value,
    check_in_flight,
    check_replay,
    episodes_check,
    write_entries,
)
from maxent.entropy import sample_squashed_gaussian
from maxent.training.env_identity import InexactResumeWarning, not_replayed
from maxent.training.fastpath import (
    PRECISIONS,
    BackgroundCompile,
    clone_tree,
    compile_unavailable_reason,
    full_precision_head,
    prepare_compile,
    resolve_precision,
)
from maxent.training.optim import adam_hyperparameters, adam_state_tensors, adam_update_, init_adam_state
from maxent.training.replay import ReplayBuffer
from maxent.entropy.soft import polyak_update, soft_bellman_target, soft_policy_loss, soft_q_loss
from maxent.entropy.temperature import AutoTemperature, FixedTemperature
from maxent.training.vector import check_finite, require_box
from maxent.agents.sac_family import SACFamily, SACFamilyFields

# Longest in-flight episode whose actions a checkpoint keeps for an exact resume.
MAX_REPLAY_STEPS = 100_000
# compile="auto" compiles in the background only for a learn call with at least this many
# updates: compiling costs about as much as a few thousand eager updates, so shorter runs (and
# the test suite) would gain little.
AUTO_COMPILE_MIN_UPDATES = 10_000
# Below this many cores, compile="auto" compiles in the foreground before the first update: on
# a CPU with few cores the compiler and an eager training loop only slow each other, and the
# compiled steps are so much cheaper that training eagerly meanwhile loses time.
BACKGROUND_MIN_CORES = 4
_UPDATE_METRICS = (mlog.CRITIC_LOSS, mlog.ACTOR_LOSS, mlog.POLICY_ENTROPY, mlog.ALPHA)

# --------------------------------------------------------------------------- config


class _ReplayDiverged(RuntimeError):
    """The env did not reproduce a saved episode while it was replayed at load."""


@dataclass
class SACConfig(SACFamilyFields, AgentConfig):
    """Every SAC setting, with Stable-Baselines3's defaults unless noted. The family's options
    (CrossQ, TQC, DroQ, REDQ, SimBa presets and their fields) are documented in
    :class:`~maxent.agents.sac_family.SACFamilyFields`.

    Attributes:
        learning_rate: Adam step size of the actor (and of the critics unless ``critic_lr``).
        critic_lr: Adam step size of the critics; ``None`` uses ``learning_rate``.
        alpha_lr: Adam step size of log α; ``None`` uses ``learning_rate``.
        buffer_size: replay capacity in transitions.
        learning_starts: env steps of uniform random actions before the first update.
        batch_size: transitions per gradient step.
        tau: Polyak coefficient of the target critics.
        gamma: discount.
        train_freq: vectorized env steps between rounds of updates.
        gradient_steps: updates per round; the update-to-data ratio is
            ``gradient_steps / (train_freq * n_envs)``.
        hidden_sizes: widths of the hidden layers of actor and critics (ReLU).
        n_critics: critics whose minimum forms the target (2 = clipped double Q).
        alpha: the initial (or, with ``auto_alpha=False``, fixed) temperature α.
        auto_alpha: learn α by dual descent towards ``target_entropy``.
        target_entropy: entropy target H̄; ``None`` means −dim(A).
        log_std_min: lower clamp of the policy's log standard deviation.
        log_std_max: upper clamp of the policy's log standard deviation.
        n_envs: parallel environment copies.
        vectorization: ``"sync"`` (one process) or ``"async"`` (a subprocess per copy).
        device: torch device for networks and replay (``"cpu"``, ``"cuda"``...).
        compile: ``"auto"`` (default): when a ``learn`` call has at least
            ``AUTO_COMPILE_MIN_UPDATES`` updates to do, compile the whole update (losses,
            gradients, Adam, α, Polyak) as one ``torch.compile``'d graph, on a background thread
            while training runs eagerly where there are ``BACKGROUND_MIN_CORES`` cores or more
            (else before training starts), and switch to it when it is ready (no C++ compiler or
            a compile error: stay eager, said once). ``True``: compile before the first update
            (errors raise). ``False``: always eager. Compiling costs ~10 s cold on 2 CPU
            cores, ~5 s from inductor's disk cache.
        precision: ``"auto"`` (default: ``"bfloat16"`` where the hardware has native bf16
            matrix products, AVX512-BF16/AMX on CPU or CUDA sm80+, else ``"float32"``),
            ``"float32"``, or ``"bfloat16"`` to autocast the update's matmuls (parameters,
            optimiser state and the Q/action heads stay float32).
        torch_threads: intra-op threads for torch on CPU. ``None`` (default): the count
            ``OMP_NUM_THREADS`` fixes when set, else the cores this process may use less those
            other runnable processes keep busy, chosen once per process
            (:mod:`maxent.training.threads`).
        flush_denormals: on a CPU, flush denormal floats to zero in torch's compute threads
            during ``learn`` (FTZ/DAZ, :mod:`maxent.training.denormals`; the previous mode comes back
            after): Adam's state fills with denormals as training goes on, and x86 computes on
            them several times slower. ``False`` leaves the floating-point mode alone.
        log_interval: env steps between log rows (TensorBoard, CSV, progress bar).
    """

    learning_rate: float = 3e-4
    critic_lr: float | None = None
    alpha_lr: float | None = None
    buffer_size: int = 1_000_000
    learning_starts: int = 100
    batch_size: int = 256
    tau: float = 0.005
    gamma: float = 0.99
    train_freq: int = 1
    gradient_steps: int = 1
    hidden_sizes: tuple[int, ...] = (256, 256)
    n_critics: int = 2
    alpha: float = 1.0
    auto_alpha: bool = True
    target_entropy: float | None = None
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    n_envs: int = 1
    vectorization: str = "sync"
    device: str = "cpu"
    compile: bool | str = "auto"
    precision: str = "auto"
    torch_threads: int | None = None
    flush_denormals: bool = True
    log_interval: int = 1000

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        self.apply_family()
        positive = ("learning_rate", "buffer_size", "batch_size", "train_freq", "gradient_steps",
                    "n_critics", "n_envs", "log_interval", "alpha")
        self.require(positive, above=0)
        self.require(("critic_lr", "alpha_lr", "torch_threads"), above=0, allow_none=True)
        self.require(("learning_starts",), at_least=0)
        if not 0 < self.tau <= 1:
            raise ValueError(f"SACConfig.tau must be in (0, 1], got {self.tau}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"SACConfig.gamma must be in [0, 1], got {self.gamma}")
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"SACConfig.batch_size ({self.batch_size}) must not exceed buffer_size "
                f"({self.buffer_size}); raise buffer_size or lower batch_size"
            )
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"SACConfig.hidden_sizes must be positive widths, got {self.hidden_sizes}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError(
                f"SACConfig.log_std_min ({self.log_std_min}) must be below log_std_max ({self.log_std_max})"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"SACConfig.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.compile not in (True, False, "auto"):
            raise ValueError(f"SACConfig.compile must be True, False or 'auto', got {self.compile!r}")
        if self.vectorization not in ("sync", "async"):
            raise ValueError(f"SACConfig.vectorization must be 'sync' or 'async', got {self.vectorization!r}")
        try:
            torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"SACConfig.device {self.device!r} is not a torch device: {err}") from None


# --------------------------------------------------------------------------- networks


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy: one MLP emits mean and log-std."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...],
                 log_std_min: float, log_std_max: float):
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 2 * action_dim])
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = obs
        for layer in self.net[:-1]:  # not self.net[:-1](obs): slicing builds a new Sequential
            hidden = layer(hidden)
        with full_precision_head(hidden) as hidden:
            mean, log_std = self.net[-1](hidden).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)


class StackedCritics(nn.Module):
    """``n`` Q-networks stored as stacked ``(n, fan_in, fan_out)`` weights and evaluated together,
    one batched matmul per hidden layer for all critics. Returns ``(n, batch)``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], n: int):
        super().__init__()
        sizes = [obs_dim + action_dim, *hidden]
        self.n = n
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n, sizes[i], sizes[i + 1])) for i in range(len(sizes) - 1))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.empty(n, 1, sizes[i + 1])) for i in range(len(sizes) - 1))
        # The scalar head is a weighted sum, not a width-1 matmul: batched GEMV calls cost several
        # times more than the multiply-and-sum they do.
        self.head_weight = nn.Parameter(torch.empty(n, 1, sizes[-1]))
        self.head_bias = nn.Parameter(torch.empty(n, 1))
        # nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per critic.
        with torch.no_grad():
            for w, b in zip(self.weights, self.biases):
                bound = 1 / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound)
                b.uniform_(-bound, bound)
            bound = 1 / math.sqrt(sizes[-1])
            self.head_weight.uniform_(-bound, bound)
            self.head_bias.uniform_(-bound, bound)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        params = [*self.weights, *self.biases, self.head_weight, self.head_bias]
        if detach_params:  # the actor step needs gradients w.r.t. actions only
            params = [p.detach() for p in params]
        depth = len(self.weights)
        weights, biases, (head_weight, head_bias) = params[:depth], params[depth:2 * depth], params[-2:]
        x = torch.cat([obs, action], dim=-1)
        # Every critic reads the same input: a stride-0 expand, no copy. Each layer's output is
        # contiguous (n, batch, width), so no transpose copies are needed in forward or backward.
        h = x.unsqueeze(0).expand(self.n, *x.shape)
        for w, b in zip(weights, biases):
            h = torch.baddbmm(b, h, w).relu_()
        with full_precision_head(h) as h:
            return (h * head_weight).sum(-1) + head_bias         # (n, batch)


class SACObjective(nn.Module):
    """Critic and actor losses of one minibatch, both from the same parameters, as in the authors'
    softlearning code. A module so that ``torch.func.functional_call`` can differentiate it with
    respect to the actor and critic parameters (the compiled step) as well as autograd can.

    ``noise`` (2, batch, action_dim) holds the standard-normal draws of the next-state and the
    current-state actions. Returns ``(critic_loss, actor_loss, log_prob)``.
    """

    def __init__(self, actor: Actor, critic: StackedCritics, critic_target: StackedCritics,
                 gamma: float):
        super().__init__()
        self.actor, self.critic, self.critic_target = actor, critic, critic_target
        self.gamma = gamma

    def forward(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                next_obs: torch.Tensor, terminated: torch.Tensor, noise: torch.Tensor,
                alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            next_mean, next_log_std = self.actor(next_obs)
            next_action, next_log_prob = sample_squashed_gaussian(next_mean, next_log_std, noise=noise[0])
            next_q = self.critic_target(next_obs, next_action).min(dim=0).values
            target = soft_bellman_target(reward, terminated, next_q, next_log_prob, alpha, self.gamma)
        critic_loss = soft_q_loss(self.critic(obs, action), target)
        mean, log_std = self.actor(obs)
        new_action, log_prob = sample_squashed_gaussian(mean, log_std, noise=noise[1])
        # Detached critic weights: the actor loss moves the actor only, and autograd skips the
        # critic weight-gradients it would otherwise compute and throw away.
        q_new = self.critic(obs, new_action, detach_params=True).min(dim=0).values
        actor_loss = soft_policy_loss(log_prob, q_new, alpha)
        return critic_loss, actor_loss, log_prob.detach()


def build_actor_critic(obs_dim: int, action_dim: int, hidden: tuple[int, ...], n_critics: int,
                       log_std_min: float, log_std_max: float, actor_lr: float, critic_lr: float,
                       gamma: float, device: torch.device) -> tuple[SACObjective, torch.optim.Adam]:
    """SAC's networks (actor, critics, target critics equal to the critics), in the objective
    that holds them, and one fused Adam over actor and critics, a param group each. Built in this
    order from torch's global RNG, so a seed gives the same weights."""
    actor = Actor(obs_dim, action_dim, hidden, log_std_min, log_std_max).to(device)
    critic = StackedCritics(obs_dim, action_dim, hidden, n_critics).to(device)
    critic_target = StackedCritics(obs_dim, action_dim, hidden, n_critics).to(device)
    critic_target.load_state_dict(critic.state_dict())
    critic_target.requires_grad_(False)
    objective = SACObjective(actor, critic, critic_target, gamma)
    # One Adam over both networks: the actor and critic losses are summed and stepped together,
    # which halves the optimiser's per-step overhead.
    optimizer = torch.optim.Adam([
        {"params": list(actor.parameters()), "lr": actor_lr},
        {"params": list(critic.parameters()), "lr": critic_lr},
    ], fused=True)
    return objective, optimizer


def eager_update(objective: SACObjective, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...], noise: torch.Tensor,
                 alpha: torch.Tensor, tau: float, temperature: Any = None,
                 autocast: contextlib.AbstractContextManager | None = None) -> tuple[torch.Tensor, ...]:
    """One gradient step of critics and actor (and of ``temperature`` when given) on ``batch``
    (obs, action, reward, next_obs, terminated), then Polyak-average the target critics.
    ``alpha`` may be 0-dim or per row. Returns ``(critic_loss, actor_loss, entropy)``, detached."""
    with autocast or contextlib.nullcontext():
        critic_loss, actor_loss, log_prob = objective(*batch, noise, alpha)
    # The two losses touch disjoint parameters, so one backward and one fused Adam step serve both.
    optimizer.zero_grad(set_to_none=True)
    (critic_loss + actor_loss).backward()
    optimizer.step()
    entropy = -log_prob.detach().float().mean()
    if temperature is not None:
        temperature.update(entropy=entropy)
    polyak_update(objective.critic_target.parameters(), objective.critic.parameters(), tau)
    return critic_loss.detach(), actor_loss.detach(), entropy


# --------------------------------------------------------------------------- the agent


class SAC(Agent):
    """Soft Actor-Critic on a Box action space. One ``learn`` step is one vectorized env step
    (``n_envs`` transitions) and its updates.

    Args:
        env: an env id (``"Pendulum-v1"``), a ``gymnasium.Env``, or a callable building one.
        config: a :class:`SACConfig`; ``None`` uses the defaults.
        seed: seeds networks, exploration, replay sampling and every episode's reset.
        log_dir: where TensorBoard events and ``progress.csv`` go; ``None`` writes nothing.
        **overrides: fields of :class:`SACConfig` to change, e.g. ``batch_size=128``.
    """

    config_cls = SACConfig
    env_kind = "vector"
    episode_window = 100
    auto_threads = True

    def __init__(self, env: Any, config: SACConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None, **overrides: Any):
        super().__init__(env, config, seed, log_dir, **overrides)
        cfg = self.config
        self._setup_spaces()

        # One torch generator drives sampling noise and replay indices; the numpy generator
        # (np_rng) drives warm-up actions and episode seeds. Both are checkpointed, so resumed
        # runs are exact.
        torch.manual_seed(self.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)

        # A family config (sac_family.py) or a subclass's learner brings its own networks and
        # eager update; vanilla SAC builds its own and may compile the update.
        self._family = self._build_family()
        if self._family is None:
            self.objective, self.optimizer = build_actor_critic(
                self.obs_dim, self.action_dim, cfg.hidden_sizes, cfg.n_critics, cfg.log_std_min,
                cfg.log_std_max, cfg.learning_rate, cfg.critic_lr or cfg.learning_rate, cfg.gamma, self.device)
        else:
            self.objective, self.optimizer = self._family, self._family.optimizer
        self.actor, self.critic = self.objective.actor, self.objective.critic
        self.critic_target = self.objective.critic_target
        target_entropy = self._default_target_entropy() if cfg.target_entropy is None else cfg.target_entropy
        if cfg.auto_alpha:
            self.temperature = AutoTemperature(target_entropy, initial_alpha=cfg.alpha,
                                               lr=cfg.alpha_lr or cfg.learning_rate, device=self.device)
        else:
            self.temperature = FixedTemperature(cfg.alpha, device=self.device)
        self.target_entropy = target_entropy

        self.buffer = ReplayBuffer(cfg.buffer_size, self.obs_dim, self.action_dim, self.device)
        # Created now rather than on Adam's first step: the compiled step updates it in place.
        init_adam_state(self.optimizer)
        self.precision = resolve_precision(cfg.precision, self.device)
        # The compiled update is a pure function of the tensors it reads and writes (see
        # maxent.training.fastpath): the networks' structure comes from this parameterless template.
        if self._family is None:
            with torch.device("meta"):
                self._template = SACObjective(
                    Actor(self.obs_dim, self.action_dim, cfg.hidden_sizes, cfg.log_std_min, cfg.log_std_max),
                    StackedCritics(self.obs_dim, self.action_dim, cfg.hidden_sizes, cfg.n_critics),
                    StackedCritics(self.obs_dim, self.action_dim, cfg.hidden_sizes, cfg.n_critics), cfg.gamma)
            self._step_tensors = self._collect_step_tensors()
        self._compiled_step = (torch.compile(self._pure_step, **prepare_compile(self.device))
                               if cfg.compile is True and self._family is None else None)
        if cfg.compile is True and isinstance(self._family, SACFamily):  # it compiles its own step
            self._family.compile_lazily(self.temperature, **prepare_compile(self.device))
        self._compile_job: BackgroundCompile | None = None
        # A subclass's learner (discrete SAC) has an eager update only.
        self._compile_tried = self._family is not None and not isinstance(self._family, SACFamily)
        self._denormals_were_flushed: bool | None = None  # set during learn (flush_denormals)

        self.n_updates = 0
        self._vector_steps = 0
        # In-flight episodes: their reset seeds and actions so far let a resumed run replay them.
        self._obs: np.ndarray | None = None
        self._episode_seeds = np.zeros(self.n_envs, dtype=np.int64)
        # None once an episode outgrows MAX_REPLAY_STEPS (an env without a time limit): memory
        # stays bounded, and a resume restarts that episode instead of replaying it.
        self._episode_actions: list[list[np.ndarray] | None] = [[] for _ in range(self.n_envs)]
        self._episode_return = np.zeros(self.n_envs)
        self._episode_length = np.zeros(self.n_envs, dtype=np.int64)

    def _setup_spaces(self) -> None:
        """Check the env's spaces and set the shapes the networks and the replay buffer use."""
        if isinstance(self.envs.single_action_space, gym.spaces.Discrete):
            raise ValueError(f"SAC supports Box action spaces only, got {self.envs.single_action_space}; "
                             "for discrete actions use SACDiscrete (maxent.agents.sac_discrete) or "
                             "`maxent train sac-discrete`")
        action_space = require_box(self.envs.single_action_space, "action", "SAC")
        obs_space = require_box(self.envs.single_observation_space, "observation", "SAC")
        if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
            raise ValueError(f"SAC needs a bounded action space to squash into, got {action_space}")
        self.action_space, self.observation_space = action_space, obs_space
        self.obs_dim = int(np.prod(obs_space.shape))
        self.action_dim = int(np.prod(action_space.shape))
        self._action_low = action_space.low.astype(np.float32).reshape(-1)
        self._action_scale = ((action_space.high - action_space.low) / 2).astype(np.float32).reshape(-1)

    def _build_family(self) -> SACFamily | None:
        """The learner of a family config (networks, optimiser, eager update), else ``None``."""
        if not self.config.uses_family:
            return None
        return SACFamily(self.config, self.obs_dim, self.action_dim, self.device, self.generator)

    def _default_target_entropy(self) -> float:
        return -float(self.action_dim)  # SAC's heuristic -dim(A)

    def _random_actions(self) -> np.ndarray:
        """Uniform warm-up actions before ``learning_starts``, as the replay buffer stores them."""
        return self.np_rng.uniform(-1.0, 1.0, (self.n_envs, self.action_dim)).astype(np.float32)

    # ----------------------------------------------------------------------- acting

    def _autocast(self):
        """bf16 autocast around the losses when ``precision="bfloat16"``; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.precision == "bfloat16")

    def _policy_action(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Squashed action in [-1, 1] for a batch of flat observations: the draws of
        :func:`sample_squashed_gaussian`, without its log-prob (acting needs none)."""
        with torch.inference_mode():
            mean, log_std = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
            if deterministic:
                return torch.tanh(mean).cpu().numpy()
            eps = torch.randn(mean.shape, generator=self.generator, device=mean.device, dtype=mean.dtype)
            return torch.tanh(torch.addcmul(mean, log_std.exp(), eps)).cpu().numpy()

    def _to_env_action(self, squashed: np.ndarray) -> np.ndarray:
        return self._action_low + (squashed + 1.0) * self._action_scale

    def predict(self, observation: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) in the env's bounds for one observation of the env's shape, or a batch."""
        batch, single = as_observation_batch(observation, self.observation_space.shape, "SAC")
        actions = self._to_env_action(self._policy_action(batch.reshape(len(batch), -1), deterministic))
        if single:
            return actions[0].reshape(self.action_space.shape)
        return actions.reshape((len(batch), *self.action_space.shape))

    # ----------------------------------------------------------------------- the update

    def _update(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One gradient step of critics, actor and temperature on a replay minibatch."""
        # The standard-normal draws of the next-state and current-state actions come from the
        # agent's generator outside any compiled graph, so compiled and eager runs draw alike.
        noise = torch.randn((2, rows.shape[0], self.action_dim), generator=self.generator,
                            device=self.device)
        if self._family is not None:
            return self._family.update(self.buffer.split(rows), noise, self.temperature, self.config.tau,
                                       self.n_updates)
        if self._compile_job is not None:
            if (os.cpu_count() or 1) < BACKGROUND_MIN_CORES:
                self._compile_job.wait()
            if self._compile_job.done:
                self._take_compiled_step()
        if self._compiled_step is not None:
            return self._compiled_step(*self._step_tensors, rows, noise)
        return self._eager_step(rows, noise)

    def _eager_step(self, rows: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        alpha = self.temperature.value
        losses = eager_update(self.objective, self.optimizer, self.buffer.split(rows), noise, alpha, self.config.tau,
                              self.temperature, self._autocast())
        return (*losses, alpha)

    def _pure_step(self, trainable: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                   adam_state: list[tuple[list, list, list]], temperature: tuple[torch.Tensor, ...],
                   rows: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The eager step's arithmetic as a pure function of the tensors it reads and updates in
        place (so that it compiles into one graph, on copies if need be): gradients from
        ``torch.func`` instead of ``.backward()``, Adam as tensor ops on the optimizer's own state,
        α's and Polyak's updates. Inductor fuses every elementwise op, and one call replaces
        ≈ 200 small eager ops."""
        obs, action, reward, next_obs, terminated = self.buffer.split(rows)
        alpha = self.temperature.value_from(temperature)

        def total_loss(params: dict[str, torch.Tensor]):
            with self._autocast():
                critic_loss, actor_loss, log_prob = torch.func.functional_call(
                    self._template, {**params, **targets},
                    (obs, action, reward, next_obs, terminated, noise, alpha))
            return critic_loss + actor_loss, (critic_loss.detach(), actor_loss.detach(), log_prob.detach())

        grads, (_, (critic_loss, actor_loss, log_prob)) = torch.func.grad_and_value(
            total_loss, has_aux=True)(trainable)
        for group, (exp_avg, exp_avg_sq, steps) in zip(self.optimizer.param_groups, adam_state):
            names = self._group_names[id(group)]
            adam_update_([trainable[n] for n in names], [grads[n] for n in names], exp_avg, exp_avg_sq,
                         steps, **adam_hyperparameters(group))
        entropy = -log_prob.float().mean()
        self.temperature.step_(temperature, entropy)
        polyak_update(list(targets.values()), [trainable[n] for n in self._critic_names], self.config.tau)
        return critic_loss, actor_loss, entropy, alpha

    def _collect_step_tensors(self) -> tuple:
        """The real tensors :meth:`_pure_step` works on, in its argument order. Collected again
        after a restore (loading an optimizer state replaces its tensors)."""
        trainable = {f"actor.{n}": p for n, p in self.actor.named_parameters()}
        trainable.update({f"critic.{n}": p for n, p in self.critic.named_parameters()})
        self._critic_names = [f"critic.{n}" for n, _ in self.critic.named_parameters()]
        targets = {f"critic_target.{n}": p for n, p in self.critic_target.named_parameters()}
        names = {id(p): n for n, p in trainable.items()}
        self._group_names = {id(g): [names[id(p)] for p in g["params"]] for g in self.optimizer.param_groups}
        return trainable, targets, adam_state_tensors(self.optimizer), self.temperature.tensors()

    def _start_background_compile(self) -> None:
        """Compile :meth:`_pure_step` on a worker thread, on copies of the step's tensors."""
        reason = compile_unavailable_reason(self.device)
        if reason is not None:
            warnings.warn(f"SAC: {reason}; training with the eager update (compile='auto')",
                          RuntimeWarning, stacklevel=3)
            return
        rows = torch.zeros((self.config.batch_size, self.buffer.width), device=self.device)
        # The thread count stays as it is while compiling: dynamo guards on it, so a graph traced
        # at another count would be compiled again (cold, on the trainer's thread) at the switch.
        background = (os.cpu_count() or 1) >= BACKGROUND_MIN_CORES
        if self._family is not None:
            self._family.start_compile(self.temperature, self.buffer.split(rows), background,
                                       **prepare_compile(self.device))
            return
        copies = clone_tree(self._step_tensors)
        noise = torch.zeros((2, self.config.batch_size, self.action_dim), device=self.device)
        self._compile_job = BackgroundCompile(self._pure_step, (*copies, rows, noise), name="sac-update",
                                              background=background, **prepare_compile(self.device))

    def _take_compiled_step(self) -> None:
        job, self._compile_job = self._compile_job, None
        compiled = job.poll()
        if compiled is None:
            warnings.warn(f"SAC: compiling the update failed ({type(job.error).__name__}: "
                          f"{job.error}); training continues with the eager update",
                          RuntimeWarning, stacklevel=3)
            return
        self._compiled_step = compiled
        self.compiled_from_update = self.n_updates  # for logs and tests: when the switch happened

    # ----------------------------------------------------------------------- the loop

    def _reset_episodes(self, mask: np.ndarray | None) -> np.ndarray:
        """Reset the envs in ``mask`` (all if ``None``) with fresh seeds from the agent's rng."""
        which = np.arange(self.n_envs) if mask is None else np.flatnonzero(mask)
        seeds: list[int | None] = [None] * self.n_envs
        for i in which:
            self._episode_seeds[i] = int(self.np_rng.integers(2**31 - 1))
            seeds[i] = int(self._episode_seeds[i])
            self._episode_actions[i] = []
            self._episode_return[i] = 0.0
            self._episode_length[i] = 0
        if mask is None:
            obs, _ = self.envs.reset(seed=seeds)
        else:
            obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": mask})
        return np.asarray(obs, dtype=np.float32).reshape(self.n_envs, -1)

    def _on_learn_start(self, end: int) -> None:
        if self._obs is None:
            self._obs = self._reset_episodes(None)
        cfg = self.config
        if cfg.compile == "auto" and not self._compile_tried:
            vector_steps = (end - max(self.num_timesteps, cfg.learning_starts)) // self.n_envs
            if vector_steps // cfg.train_freq * cfg.gradient_steps >= AUTO_COMPILE_MIN_UPDATES:
                self._compile_tried = True  # once per agent: a failure is not retried (or re-said)
                self._start_background_compile()
        if cfg.flush_denormals and self.device.type == "cpu" and self._denormals_were_flushed is None:
            self._denormals_were_flushed = denormals.denormals_flushed()
            denormals.set_flush_denormals(True)

    def _on_learn_end(self) -> None:
        if self._denormals_were_flushed is False:
            denormals.set_flush_denormals(False)
        self._denormals_were_flushed = None

    def _learn_step(self) -> None:
        """One vectorized env step (uniform random actions before ``learning_starts``), then
        ``gradient_steps`` updates every ``train_freq`` vectorized steps."""
        cfg = self.config
        step = self.num_timesteps + 1  # 1-based, for error messages
        if self.num_timesteps < cfg.learning_starts:
            squashed = self._random_actions()
        else:
            squashed = self._policy_action(self._obs, deterministic=False)
            check_finite(squashed, "action from the policy", step, source="policy")
        env_action = self._to_env_action(squashed).reshape((self.n_envs, *self.action_space.shape))
        next_obs, reward, terminated, truncated, _ = self.envs.step(env_action)
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(self.n_envs, -1)
        check_finite(next_obs, "observation", step)
        check_finite(reward, "reward", step)
        if self._family is not None:  # the observations acted on (SimBa's running statistics)
            self._family.observe(torch.as_tensor(self._obs, device=self.device))
        self.buffer.add(self._obs, squashed, reward, next_obs, terminated)
        for i, history in enumerate(self._episode_actions):
            if history is not None:
                history.append(env_action[i])
        self._episode_return += reward
        self._episode_length += 1
        if self._episode_length.max() > MAX_REPLAY_STEPS:
            for i in np.flatnonzero(self._episode_length > MAX_REPLAY_STEPS):
                self._episode_actions[i] = None
        self.num_timesteps += self.n_envs
        self._vector_steps += 1

        done = np.logical_or(terminated, truncated)
        if done.any():
            for i in np.flatnonzero(done):
                self.episode_returns.append(float(self._episode_return[i]))
                self.episode_lengths.append(int(self._episode_length[i]))
            self._obs = self._reset_episodes(done)
        else:
            self._obs = next_obs

        if self.num_timesteps >= cfg.learning_starts and self._vector_steps % cfg.train_freq == 0:
            for _ in range(cfg.gradient_steps):
                rows = self.buffer.sample_rows(cfg.batch_size, self.generator)
                # One stacked tensor, one running sum: the four metrics cost one op per update.
                self.logger.record_many(_UPDATE_METRICS, torch.stack(self._update(rows)))
                self.n_updates += 1

    # ----------------------------------------------------------------------- checkpoints

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The networks' weights under their checkpoint names."""
        return write_entries([e for e in self._saved() if isinstance(e, Module)])[0]

    def save(self, path: str | Path, include_replay_buffer: bool = True) -> Path:
        """Save config, weights, optimiser, temperature and RNG states (and the replay buffer,
        needed for an exact resume) to the directory ``path``, atomically."""
        return super().save(path, include_replay_buffer=include_replay_buffer)

    def _saved(self):
        deque100 = lambda v: deque(v, maxlen=100)  # noqa: E731
        return [
            Check(["observation_shape", "action_shape"],
                  [list(self.observation_space.shape), list(self.action_space.shape)],
                  "observations and actions of shapes"),
            *(Module(name, module, changed="hidden_sizes, n_critics or the family's fields") for name, module in
              (("actor", self.actor), ("critic", self.critic), ("critic_target", self.critic_target))
              if module is not None),
            *([] if self._family is None else self._family.saved_values()),
            Optimizer("optimizer", self.optimizer),
            Controller("temperature", self.temperature,
                       fix="was auto_alpha changed? Load it with the config it was saved with"),
            Generator("rng.torch", self.generator),
            NumpyRNG("rng_numpy", self.np_rng),
            Value("n_updates", self, "n_updates"),
            # Older checkpoints lack vector_steps; with n_envs copies it is num_timesteps / n_envs.
            Value("vector_steps", self, "_vector_steps", load=int,
                  default=lambda ckpt: ckpt.state["num_timesteps"] // max(self.n_envs, 1)),
            Value("episode_returns", self, "episode_returns", save=list, load=deque100,
                  check=episodes_check("episode_lengths", 100)),
            Value("episode_lengths", self, "episode_lengths", save=list, load=deque100,
                  check=episodes_check("episode_returns", 100, counts=True)),
        ]

    def _checkpoint(self, include_replay_buffer: bool = True):
        """The declared contents, the replay buffer, and the episodes in flight (seeds and
        actions so far, replayed at load)."""
        tensors, state, _ = super()._checkpoint()
        for i, actions in enumerate(self._episode_actions):
            if actions:  # neither empty nor dropped (None)
                tensors[f"episode.actions.{i}"] = torch.from_numpy(np.stack(actions).astype(np.float32))
        state.update({
            "in_flight": self._obs is not None,
            "episode_seeds": self._episode_seeds.tolist(),
            "episode_replayable": [a is not None for a in self._episode_actions],
            "episode_return": self._episode_return.tolist(),
            "episode_length": self._episode_length.tolist(),
        })
        arrays = self.buffer.to_arrays() if include_replay_buffer else None
        return tensors, state, arrays

    def _restore(self, ckpt: Any, path: Path) -> None:
        super()._restore(ckpt, path)  # validates the declared entries (shapes first) before reading
        check_in_flight(ckpt, self.action_dim)
        check_replay(ckpt, self.buffer)
        tensors, state = ckpt.tensors, ckpt.state
        if ckpt.arrays is not None:
            try:
                self.buffer.load_arrays(ckpt.arrays)
            except (KeyError, ValueError) as err:
                raise CheckpointError(f"{path}/replay.npz does not hold this agent's replay buffer: {err}"
                                      ) from None
        # The episodes in flight are replayed only on the env they ran on, however it was given
        # (maxent.training.env_identity): loaded onto another (a domain-randomised agent evaluated
        # on the nominal task, say) they would diverge, so training there starts fresh episodes,
        # and the warning says why. n_envs changed: fresh episodes too.
        why = self._env_difference(ckpt) if state["in_flight"] else None
        if why is None and state["in_flight"] and len(state["episode_seeds"]) != self.n_envs:
            why = f"n_envs (env copies) is {len(state['episode_seeds'])} there, {self.n_envs} here"
        if why is not None:
            warnings.warn(not_replayed(path, why, state.get("env_description")), InexactResumeWarning,
                          stacklevel=4)
        elif state["in_flight"]:
            actions = [tensors[f"episode.actions.{i}"].numpy() if f"episode.actions.{i}" in tensors
                       else np.zeros((0, self.action_dim), np.float32) for i in range(self.n_envs)]
            try:
                self._replay_episodes(np.asarray(state["episode_seeds"], dtype=np.int64), actions)
            except _ReplayDiverged as err:
                warnings.warn(f"{path}: {err}; training continues from fresh episodes (weights, "
                              "optimiser, replay buffer and counters are restored exactly)",
                              InexactResumeWarning, stacklevel=4)
                self._obs = None
            else:
                replayable = np.asarray(state["episode_replayable"], dtype=bool)
                self._episode_return[:] = np.where(replayable, state["episode_return"], 0.0)
                self._episode_length[:] = np.where(replayable, state["episode_length"], 0)
        if self._family is None:
            self._step_tensors = self._collect_step_tensors()  # the loaded optimizer state is new
        elif isinstance(self._family, SACFamily):
            self._family.refresh_step_tensors()

    def _replay_episodes(self, seeds: np.ndarray, actions: list[np.ndarray]) -> None:
        """Bring the envs back to where the saved run was: reset each with its episode seed and
        replay its actions. Exact for any env whose randomness comes from its seeded ``np_random``.
        Copies with shorter histories start later so that all finish on the same step."""
        lengths = np.array([len(a) for a in actions])
        longest = int(lengths.max())
        start = longest - lengths
        seed_list = [int(s) for s in seeds]
        obs, _ = self.envs.reset(seed=seed_list)
        filler = self._to_env_action(np.zeros((self.n_envs, self.action_dim), np.float32))
        for t in range(longest + 1):
            restart = start == t
            if t > 0 and restart.any():
                obs, _ = self.envs.reset(seed=seed_list, options={"reset_mask": restart})
            if t == longest:
                break
            step_action = filler.copy()
            for i in range(self.n_envs):
                if t >= start[i]:
                    step_action[i] = actions[i][t - start[i]].reshape(-1)
            obs, _, terminated, truncated, _ = self.envs.step(
                step_action.reshape((self.n_envs, *self.action_space.shape)))
            # A saved episode was in flight when saved, so it cannot end while it is replayed:
            # if it does, the env is not reproducing it (unseeded randomness, another version).
            diverged = np.logical_or(terminated, truncated) & (start <= t)
            if diverged.any():
                raise _ReplayDiverged(f"env copy {int(np.flatnonzero(diverged)[0])} ended its "
                                      "saved episode early while it was replayed")
            # A filler episode may end before its env's real one starts; the env must not be
            # stepped past its end, so restart it (its real reset comes at its start step).
            ended = np.logical_or(terminated, truncated) & (start > t + 1)
            if ended.any():
                obs, _ = self.envs.reset(seed=seed_list, options={"reset_mask": ended})
        self._obs = np.asarray(obs, dtype=np.float32).reshape(self.n_envs, -1)
        self._episode_seeds[:] = seeds
        self._episode_actions = [list(a) for a in actions]
