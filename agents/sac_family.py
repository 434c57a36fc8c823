"""The modern entropy-regularised SAC family as options of the one SAC (agents/sac.py): CrossQ
(Bhatt et al. ICLR 2024), TQC (Kuznetsov et al. ICML 2020), DroQ (Hiraoka et al. ICLR 2022),
REDQ (Chen et al. ICLR 2021) and SimBa (Lee et al. ICLR 2025), as config fields and named presets.

``SACConfig(preset="crossq")`` (``maxent train sac --config.preset crossq``) fills every family
field that is still at its default with the preset's value, so explicit settings win. A config
whose family fields are all at their defaults is vanilla SAC and keeps SAC's compiled fast path;
any other runs :class:`SACFamily`'s eager update (see its docstring for why).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from maxent.agents.sac_networks import (ARCHITECTURES, NORMS, FamilyActor, FamilyCritics, RunningObsNorm,
                                        set_norm_training)
from maxent.entropy import sample_squashed_gaussian
from maxent.entropy.soft import (polyak_update, quantile_huber_loss, soft_bellman_target, soft_policy_loss,
                                 soft_q_loss, truncated_quantile_target)
from maxent.training.config import ConfigError
from maxent.training.saved import Value

__all__ = ["PRESETS", "SACFamily", "SACFamilyFields"]

# Each preset's values, as its paper or its authors' code gives them. Fields a preset leaves out
# keep SAC's defaults (lr 3e-4, batch 256, tau 0.005, gamma 0.99, hidden (256, 256)).
PRESETS: dict[str, dict[str, Any]] = {
    # CrossQ: BatchRenorm in critics and actor, no target network, (s, a) and (s', a') in one
    # critic batch, critics 2048 wide, UTD 1, Adam lr 1e-3 with beta1 0.5, actor every 3rd update.
    "crossq": {"critic_norm": "batchrenorm", "actor_norm": "batchrenorm", "target_network": False,
               "critic_hidden_sizes": (2048, 2048), "learning_rate": 1e-3, "adam_betas": (0.5, 0.999),
               "policy_delay": 3},
    # TQC (MuJoCo): 5 critics of 25 quantiles (3 x 512 hidden), the top 2 per critic dropped from
    # the pooled target; the actor maximises the mean of all quantiles.
    "tqc": {"n_critics": 5, "n_quantiles": 25, "top_quantiles_to_drop": 2,
            "critic_hidden_sizes": (512, 512, 512), "actor_q": "mean"},
    # DroQ: 2 critics with dropout 0.01 then layer norm after each hidden layer, 20 critic updates
    # per env step and one actor update (as in its REDQ-based code), the actor on the mean Q.
    "droq": {"critic_dropout": 0.01, "critic_norm": "layer", "gradient_steps": 20, "policy_delay": 20,
             "actor_q": "mean"},
    # REDQ: 10 critics, the target's min over a random 2 of them, UTD 20, one actor update per env
    # step, the actor on the mean of all 10.
    "redq": {"n_critics": 10, "target_subset": 2, "gradient_steps": 20, "policy_delay": 20,
             "actor_q": "mean"},
    # SimBa: running observation normalisation, residual pre-LN blocks and a final LN; actor one
    # block of 128, critic two blocks of 512.
    "simba": {"architecture": "simba", "obs_norm": True, "hidden_sizes": (128,),
              "critic_hidden_sizes": (512, 512)},
}


@dataclass
class SACFamilyFields:
    """SAC's family options (a base of :class:`~maxent.agents.sac.SACConfig`).

    Attributes:
        preset: ``None`` or one of ``PRESETS`` (``"crossq"``, ``"tqc"``, ``"droq"``, ``"redq"``,
            ``"simba"``): fields still at their defaults take the preset's values.
        architecture: ``"mlp"`` or ``"simba"`` (residual pre-LN blocks; ``hidden_sizes`` then gives
            one width per block, all equal).
        critic_hidden_sizes: the critics' widths; ``None`` uses ``hidden_sizes``.
        critic_norm: ``"none"``, ``"layer"`` (after dropout, DroQ) or ``"batchrenorm"`` (CrossQ).
        actor_norm: ``"none"`` or ``"batchrenorm"`` (CrossQ).
        critic_dropout: dropout rate in the critics' hidden layers (DroQ: 0.01).
        target_network: ``False`` drops the target critics; the next-state Q then comes from the
            critics in the same forward pass as the current Q (CrossQ's joint batch).
        n_quantiles: outputs per critic; above 1 the critics are TQC's quantile critics.
        top_quantiles_to_drop: TQC's d, quantiles per critic dropped from the pooled target.
        target_subset: REDQ's M, critics drawn at random for each target's minimum; ``None``: all.
        actor_q: how the actor reads the critics: ``"min"`` (SAC) or ``"mean"`` (REDQ, DroQ, TQC).
        obs_norm: normalise observations by their running mean and variance (SimBa).
        policy_delay: critic updates per actor (and α) update.
        adam_betas: Adam's (beta1, beta2) for actor and critics (CrossQ: (0.5, 0.999)).
        renorm_warmup_steps: updates of plain batch normalisation before BatchRenorm's
            corrections start (CrossQ: 100k).
    """

    preset: str | None = None
    architecture: str = "mlp"
    critic_hidden_sizes: tuple[int, ...] | None = None
    critic_norm: str = "none"
    actor_norm: str = "none"
    critic_dropout: float = 0.0
    target_network: bool = True
    n_quantiles: int = 1
    top_quantiles_to_drop: int = 0
    target_subset: int | None = None
    actor_q: str = "min"
    obs_norm: bool = False
    policy_delay: int = 1
    adam_betas: tuple[float, float] = (0.9, 0.999)
    renorm_warmup_steps: int = 100_000

    def apply_family(self) -> None:
        """Fill the preset's fields and check the family fields; call first in ``__post_init__``."""
        name = type(self).__name__
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise ConfigError(f"{name}.preset must be one of {sorted(PRESETS)} or None, got "
                                  f"{self.preset!r}")
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for key, value in PRESETS[self.preset].items():
                if getattr(self, key) == defaults[key]:
                    setattr(self, key, value)
        if self.critic_hidden_sizes is not None:
            self.critic_hidden_sizes = tuple(int(h) for h in self.critic_hidden_sizes)
            if not self.critic_hidden_sizes or min(self.critic_hidden_sizes) < 1:
                raise ConfigError(f"{name}.critic_hidden_sizes must be positive widths or None, got "
                                  f"{self.critic_hidden_sizes}")
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        choices = (("architecture", ARCHITECTURES), ("critic_norm", NORMS),
                   ("actor_norm", ("none", "batchrenorm")), ("actor_q", ("min", "mean")))
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{name}.{key} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        if self.architecture == "simba":
            widths = {*self.hidden_sizes, *(self.critic_hidden_sizes or ())}
            if self.critic_norm != "none" or self.actor_norm != "none" or len(
                    set(self.hidden_sizes)) != 1 or len(set(self.critic_hidden_sizes or self.hidden_sizes)) != 1:
                raise ConfigError(f"{name}: architecture='simba' takes one width per residual block, all "
                                  f"equal, and its own layer norms (critic_norm/actor_norm 'none'); got "
                                  f"widths {sorted(widths)}, critic_norm {self.critic_norm!r}, actor_norm "
                                  f"{self.actor_norm!r}")
        if not 0.0 <= self.critic_dropout < 1.0:
            raise ConfigError(f"{name}.critic_dropout must be in [0, 1), got {self.critic_dropout}")
        self.require(("n_quantiles", "policy_delay", "renorm_warmup_steps"), above=0)
        if not 0 <= self.top_quantiles_to_drop < self.n_quantiles:
            raise ConfigError(f"{name}.top_quantiles_to_drop must be in [0, n_quantiles={self.n_quantiles}), "
                              f"got {self.top_quantiles_to_drop}; raise n_quantiles for TQC")
        if self.target_subset is not None:
            if not 1 <= self.target_subset <= self.n_critics:
                raise ConfigError(f"{name}.target_subset must be in [1, n_critics={self.n_critics}] or None, "
                                  f"got {self.target_subset}")
            if self.n_quantiles > 1:
                raise ConfigError(f"{name}: target_subset (REDQ) and n_quantiles > 1 (TQC) do not combine; "
                                  "set one of them")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ConfigError(f"{name}.adam_betas must be two numbers in [0, 1), got {self.adam_betas}")

    @property
    def uses_family(self) -> bool:
        """Whether any family field differs from vanilla SAC (then the family's update runs)."""
        return any(getattr(self, f.name) != f.default for f in dataclasses.fields(SACFamilyFields)
                   if f.name != "preset")


class SACFamily(nn.Module):
    """Networks, optimiser and eager update of a family config: holds ``actor``, ``critic`` and
    ``critic_target`` (``None`` without a target network) like SAC's objective.

    Eager only: BatchRenorm's running statistics and SimBa's observation statistics are state the
    update changes in place outside its parameters, and dropout masks and REDQ's subsets are drawn
    from the agent's generator; SAC's compiled step (a pure function of parameters, optimiser
    state and α) carries none of these, so family configs run this update whatever ``compile``
    says. Every draw comes from ``generator`` in a fixed order, so resumes are bit-exact. It runs
    in float32 (``precision`` applies to vanilla SAC's update only).
    """

    def __init__(self, cfg: Any, obs_dim: int, action_dim: int, device: torch.device,
                 generator: torch.Generator):
        super().__init__()
        self.cfg, self.generator = cfg, generator
        obs_norm = RunningObsNorm(obs_dim).to(device) if cfg.obs_norm else None
        self.obs_norm = obs_norm
        self.actor = FamilyActor(obs_dim, action_dim, cfg.hidden_sizes, cfg.log_std_min, cfg.log_std_max,
                                 norm=cfg.actor_norm, architecture=cfg.architecture, obs_norm=obs_norm,
                                 renorm_warmup_steps=cfg.renorm_warmup_steps).to(device)
        kwargs = {"n_outputs": cfg.n_quantiles, "norm": cfg.critic_norm, "dropout": cfg.critic_dropout,
                  "architecture": cfg.architecture, "obs_norm": obs_norm,
                  "renorm_warmup_steps": cfg.renorm_warmup_steps, "generator": generator}
        hidden = cfg.critic_hidden_sizes or cfg.hidden_sizes
        self.critic = FamilyCritics(obs_dim, action_dim, hidden, cfg.n_critics, **kwargs).to(device)
        self.critic_target: FamilyCritics | None = None
        if cfg.target_network:
            self.critic_target = FamilyCritics(obs_dim, action_dim, hidden, cfg.n_critics, **kwargs).to(device)
            self.critic_target.load_state_dict(self.critic.state_dict())
            self.critic_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam([
            {"params": list(self.actor.parameters()), "lr": cfg.learning_rate},
            {"params": list(self.critic.parameters()), "lr": cfg.critic_lr or cfg.learning_rate},
        ], betas=cfg.adam_betas, fused=True)
        # The actor's loss and entropy of its last update, logged on the updates that skip it.
        self.last_actor = [0.0, 0.0]

    def saved_values(self) -> list[Value]:
        """Checkpoint entries beyond the networks (whose state dicts hold the running statistics)."""
        return [Value("family_last_actor", self, "last_actor", save=list, load=list)]

    def observe(self, obs: torch.Tensor) -> None:
        """Fold env observations into the running observation statistics (SimBa)."""
        if self.obs_norm is not None:
            self.obs_norm.observe(obs)

    def losses(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
               terminated: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor, update_actor: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(critic_loss, actor_loss, log_prob)`` of one minibatch (the last two ``None`` when
        ``update_actor`` is off). ``noise`` (2, batch, action_dim): next- and current-state draws."""
        cfg = self.cfg
        with torch.no_grad():  # a' ~ pi(.|s'), with the actor's running statistics (CrossQ)
            set_norm_training(self.actor, False)
            next_action, next_log_prob = sample_squashed_gaussian(*self.actor(next_obs), noise=noise[0])
        batch = obs.shape[0]
        if self.critic_target is None:
            # CrossQ: one critic pass over (s, a) and (s', a'), so BatchRenorm normalises both with
            # the statistics of their mixture.
            set_norm_training(self.critic, True)
            joint = self.critic(torch.cat([obs, next_obs]), torch.cat([action, next_action]))
            set_norm_training(self.critic, False)
            q, next_q = joint[:, :batch], joint[:, batch:].detach()
        else:
            set_norm_training(self.critic, True)
            q = self.critic(obs, action)
            set_norm_training(self.critic, False)
            with torch.no_grad():
                next_q = self.critic_target(next_obs, next_action)
        with torch.no_grad():
            if cfg.n_quantiles > 1:
                target = truncated_quantile_target(reward, terminated, next_q, next_log_prob, alpha, cfg.gamma,
                                                   cfg.top_quantiles_to_drop)
            else:
                if cfg.target_subset is not None and cfg.target_subset < cfg.n_critics:
                    chosen = torch.randperm(cfg.n_critics, generator=self.generator,
                                            device=self.generator.device)[:cfg.target_subset]
                    next_q = next_q[chosen.to(next_q.device)]
                target = soft_bellman_target(reward, terminated, next_q.min(dim=0).values, next_log_prob,
                                             alpha, cfg.gamma)
        critic_loss = quantile_huber_loss(q, target) if cfg.n_quantiles > 1 else soft_q_loss(q, target)
        if not update_actor:
            return critic_loss, None, None
        set_norm_training(self.actor, True)  # the actor's pass updates its statistics (CrossQ)
        mean, log_std = self.actor(obs)
        set_norm_training(self.actor, False)
        new_action, log_prob = sample_squashed_gaussian(mean, log_std, noise=noise[1])
        q_new = self.critic(obs, new_action, detach_params=True)   # running statistics (CrossQ)
        if cfg.n_quantiles > 1:
            q_new = q_new.mean(dim=-1)
        q_new = q_new.mean(dim=0) if cfg.actor_q == "mean" else q_new.min(dim=0).values
        return critic_loss, soft_policy_loss(log_prob, q_new, alpha), log_prob.detach()

    def update(self, batch: tuple[torch.Tensor, ...], noise: torch.Tensor, temperature: Any, tau: float,
               n_updates: int) -> tuple[torch.Tensor, ...]:
        """One critic step, and on every ``policy_delay``-th update an actor and α step, then the
        Polyak step of the target critics. Returns ``(critic_loss, actor_loss, entropy, alpha)``."""
        alpha = temperature.value
        update_actor = (n_updates + 1) % self.cfg.policy_delay == 0
        critic_loss, actor_loss, log_prob = self.losses(*batch, noise, alpha, update_actor)
        # Adam skips parameters without a gradient, so the actor's rests on critic-only updates.
        self.optimizer.zero_grad(set_to_none=True)
        (critic_loss + actor_loss if update_actor else critic_loss).backward()
        self.optimizer.step()
        if update_actor:
            entropy = -log_prob.float().mean()
            temperature.update(entropy=entropy)
            self.last_actor = [float(actor_loss.detach()), float(entropy)]
        if self.critic_target is not None:
            polyak_update(self.critic_target.parameters(), self.critic.parameters(), tau)
        actor_value, entropy_value = (torch.tensor(v, device=critic_loss.device) for v in self.last_actor)
        return critic_loss.detach(), actor_value, entropy_value, alpha
