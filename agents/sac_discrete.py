"""Soft Actor-Critic for discrete action spaces (Christodoulou 2019, arXiv 1910.07207): a
categorical policy, critics that output Q(s, .) for every action, and exact expectations over the
actions in the soft value, the policy loss and the entropy, with α learned towards a fraction of
log|A|. The stabilisers of Zhou et al. 2022 ("Revisiting Discrete Soft Actor-Critic", arXiv
2209.10081) are options: the target's average over the critics instead of their minimum, and
Q-clip.

The loop, replay, checkpoints and resume are SAC's (agents/sac.py); this file supplies the spaces,
the networks and the update. The replay buffer keeps the action index as one float column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maxent.agents.sac import SAC, SACConfig, mlp
from maxent.agents.sac_networks import FamilyCritics
from maxent.entropy.estimates import categorical_entropy
from maxent.entropy.soft import discrete_soft_policy_loss, discrete_soft_value, polyak_update, soft_q_loss
from maxent.training.config import ConfigError
from maxent.training.vector import require_box

__all__ = ["DiscreteSACLearner", "SACDiscrete", "SACDiscreteConfig"]


@dataclass
class SACDiscreteConfig(SACConfig):
    """:class:`~maxent.agents.sac.SACConfig` for discrete actions, with three fields of its own
    (the continuous-only fields ``log_std_min``/``log_std_max`` and the family's are unused).

    Attributes:
        target_entropy_ratio: with ``target_entropy=None`` the entropy target is this fraction of
            log|A|, the uniform policy's entropy (CleanRL's Atari value is 0.89; CartPole's two
            actions want less: with 0.3 and the min target, seed 0 reaches 500 in 40k steps).
        q_target: ``"min"`` over the target critics (Christodoulou 2019) or ``"mean"`` (Zhou et al.
            2022's double average Q, against the min's underestimation bias; on CartPole, with
            ratio 0.5, or 0.2 with Q-clip, it stayed below 350 in 40k steps, so it is not the
            default).
        q_clip: ``None`` or c > 0: Zhou et al.'s Q-clip, the critic loss
            max((Q - y)^2, (Q' + clip(Q - Q', -c, c) - y)^2) with Q' the target critic's value,
            which keeps a critic step from moving Q far from its target network.
    """

    target_entropy_ratio: float = 0.3
    q_target: str = "min"
    q_clip: float | None = None
    learning_starts: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.uses_family or self.preset is not None:
            raise ConfigError("SACDiscreteConfig does not take the continuous SAC family's presets or "
                              "fields (preset, critic_norm, n_quantiles...); leave them at their defaults")
        if not 0.0 < self.target_entropy_ratio <= 1.0:
            raise ConfigError(f"SACDiscreteConfig.target_entropy_ratio must be in (0, 1], got "
                              f"{self.target_entropy_ratio}")
        if self.q_target not in ("min", "mean"):
            raise ConfigError(f"SACDiscreteConfig.q_target must be 'min' or 'mean', got {self.q_target!r}")
        self.require(("q_clip",), above=0, allow_none=True)


class DiscreteSACLearner(nn.Module):
    """Categorical actor (an MLP of logits), ``n_critics`` stacked critics of Q(s, .) and their
    target copies, one fused Adam over both, and the eager update."""

    def __init__(self, cfg: SACDiscreteConfig, obs_dim: int, n_actions: int, device: torch.device):
        super().__init__()
        self.cfg = cfg
        self.actor = mlp([obs_dim, *cfg.hidden_sizes, n_actions]).to(device)
        self.critic = FamilyCritics(obs_dim, 0, cfg.hidden_sizes, cfg.n_critics, n_outputs=n_actions).to(device)
        self.critic_target = FamilyCritics(obs_dim, 0, cfg.hidden_sizes, cfg.n_critics,
                                           n_outputs=n_actions).to(device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam([
            {"params": list(self.actor.parameters()), "lr": cfg.learning_rate},
            {"params": list(self.critic.parameters()), "lr": cfg.critic_lr or cfg.learning_rate},
        ], fused=True)

    def q_values(self, critic: FamilyCritics, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, .) of every critic, (n_critics, batch, n_actions)."""
        return critic(obs, obs.new_zeros((obs.shape[0], 0)))

    def losses(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
               terminated: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(critic_loss, actor_loss, entropy)``; ``entropy`` is per state, (batch,)."""
        cfg = self.cfg
        with torch.no_grad():
            next_log_probs = F.log_softmax(self.actor(next_obs), dim=-1)
            next_q = self.q_values(self.critic_target, next_obs)
            next_q = next_q.mean(dim=0) if cfg.q_target == "mean" else next_q.min(dim=0).values
            next_v = discrete_soft_value(next_log_probs.exp(), next_log_probs, next_q, alpha)
            not_done = ~terminated if terminated.dtype == torch.bool else 1.0 - terminated
            target = torch.addcmul(reward, not_done, next_v, value=cfg.gamma)
        index = action.long().reshape(1, -1, 1).expand(cfg.n_critics, -1, 1)
        q_all = self.q_values(self.critic, obs)
        q = q_all.gather(-1, index).squeeze(-1)                            # (n_critics, batch)
        if cfg.q_clip is None:
            critic_loss = soft_q_loss(q, target)
        else:
            with torch.no_grad():
                q_old = self.q_values(self.critic_target, obs).gather(-1, index).squeeze(-1)
            clipped = q_old + (q - q_old).clamp(-cfg.q_clip, cfg.q_clip)
            worst = torch.maximum((q - target).square(), (clipped - target).square())
            critic_loss = 0.5 * worst.mean(dim=1).sum()                    # soft_q_loss's scaling
        logits = self.actor(obs)
        log_probs = F.log_softmax(logits, dim=-1)
        q_pi = q_all.detach().min(dim=0).values
        actor_loss = discrete_soft_policy_loss(log_probs.exp(), log_probs, q_pi, alpha)
        return critic_loss, actor_loss, categorical_entropy(logits.detach())

    def update(self, batch: tuple[torch.Tensor, ...], noise: torch.Tensor, temperature: Any, tau: float,
               n_updates: int) -> tuple[torch.Tensor, ...]:
        """One step of critics, actor and α (on the exact policy entropy), then Polyak. ``noise``
        and ``n_updates`` are unused (no reparameterisation, no delay)."""
        alpha = temperature.value
        critic_loss, actor_loss, entropy = self.losses(*batch, alpha)
        self.optimizer.zero_grad(set_to_none=True)
        (critic_loss + actor_loss).backward()
        self.optimizer.step()
        entropy = entropy.mean()
        temperature.update(entropy=entropy)
        polyak_update(self.critic_target.parameters(), self.critic.parameters(), tau)
        return critic_loss.detach(), actor_loss.detach(), entropy, alpha

    def saved_values(self) -> list:
        return []

    def observe(self, obs: torch.Tensor) -> None:
        """No observation statistics (the interface SAC's loop calls)."""


class SACDiscrete(SAC):
    """Soft Actor-Critic on a ``Discrete`` action space (Christodoulou 2019), with SAC's loop,
    replay, checkpoints and exact resume. Same arguments as :class:`~maxent.agents.sac.SAC`, with a
    :class:`SACDiscreteConfig`. The update is eager (no compiled path)."""

    config_cls = SACDiscreteConfig

    def _setup_spaces(self) -> None:
        space = self.envs.single_action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ValueError(f"SACDiscrete needs a Discrete action space, got {type(space).__name__} ({space}); "
                             "use SAC for continuous (Box) actions")
        if space.n < 2:
            raise ValueError(f"SACDiscrete needs at least 2 actions, got {space}")
        obs_space = require_box(self.envs.single_observation_space, "observation", "SACDiscrete")
        self.action_space, self.observation_space = space, obs_space
        self.obs_dim = int(np.prod(obs_space.shape))
        self.n_actions = int(space.n)
        self._action_start = int(space.start)
        self.action_dim = 1  # the replay buffer's action column holds the index

    def _build_family(self) -> DiscreteSACLearner:
        return DiscreteSACLearner(self.config, self.obs_dim, self.n_actions, self.device)

    def _default_target_entropy(self) -> float:
        return self.config.target_entropy_ratio * math.log(self.n_actions)

    def _random_actions(self) -> np.ndarray:
        return self.np_rng.integers(self.n_actions, size=(self.n_envs, 1)).astype(np.float32)

    def _policy_action(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Action indices as a (batch, 1) float column: the argmax, or a draw of the policy."""
        with torch.inference_mode():
            logits = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
            if deterministic:
                index = logits.argmax(dim=-1, keepdim=True)
            else:
                index = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=self.generator)
            return index.to(torch.float32).cpu().numpy()

    def _to_env_action(self, squashed: np.ndarray) -> np.ndarray:
        return np.rint(squashed).astype(np.int64).reshape(-1, 1) + self._action_start

    def _checkpoint(self, include_replay_buffer: bool = True):
        """SAC's checkpoint, the in-flight episodes' actions as (steps, 1) columns like the
        replay buffer's: the env takes scalar indices, a replayed episode holds (1,) rows."""
        self._episode_actions = [None if history is None else [np.reshape(a, 1) for a in history]
                                 for history in self._episode_actions]
        return super()._checkpoint(include_replay_buffer)
