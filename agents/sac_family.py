"""The modern entropy-regularised SAC family as options of the one SAC (agents/sac.py): CrossQ
(Bhatt et al. ICLR 2024), TQC (Kuznetsov et al. ICML 2020), DroQ (Hiraoka et al. ICLR 2022),
REDQ (Chen et al. ICLR 2021) and SimBa (Lee et al. ICLR 2025), as config fields and named presets.

``SACConfig(preset="crossq")`` (``maxent train sac --config.preset crossq``) fills every field
the caller did not give with the preset's value, so a field given wins, even one given SAC's
default (``preset="tqc", n_critics=2`` runs TQC with two critics; on the command line, a
``--config.`` flag named there). A config whose family fields are all at their defaults is vanilla
SAC; any other runs :class:`SACFamily`'s update, eager or compiled as SAC's ``compile`` says.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from maxent.agents.sac_networks import (ARCHITECTURES, NORMS, BatchRenorm, FamilyActor, FamilyCritics,
                                        RunningObsNorm)
from maxent.entropy import sample_squashed_gaussian
from maxent.entropy.soft import (polyak_update, quantile_huber_loss, soft_bellman_target, soft_policy_loss,
                                 soft_q_loss, truncated_quantile_target)
from maxent.training.config import ConfigError
from maxent.training.fastpath import BackgroundCompile, clone_tree, resolve_precision
from maxent.training.optim import adam_hyperparameters, adam_state_tensors, adam_update_
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
            ``"simba"``): the fields not given to the constructor take the preset's values.
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
            for key, value in PRESETS[self.preset].items():
                if key not in self.passed_fields:
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
    """Networks, optimiser and update of a family config: holds ``actor``, ``critic`` and
    ``critic_target`` (``None`` without a target network) like SAC's objective.

    The update runs eagerly or compiled, as SAC's ``compile`` says (:meth:`compile_lazily`,
    :meth:`start_compile`). The compiled step is a pure function of tensors, like vanilla SAC's:
    BatchRenorm's running statistics are buffers it takes as arguments and updates in place
    (SimBa's observation statistics it only reads), and the random draws (dropout masks, REDQ's subset) are made from ``generator`` outside
    it by :meth:`draw`, in the order an eager update makes them, so compiled and eager runs draw
    alike and resumes are bit-exact. Updates with and without the actor (``policy_delay``) are two
    graphs. SimBa's observation normalisation keeps the eager update (see :meth:`_compilable`).
    ``precision`` applies as in vanilla SAC: under ``"bfloat16"`` the losses run in bf16 autocast,
    eager and compiled, while the output heads (Q, quantiles, action mean and log-std),
    BatchRenorm's statistics, parameters and optimiser state stay float32.
    """

    def __init__(self, cfg: Any, obs_dim: int, action_dim: int, device: torch.device,
                 generator: torch.Generator | None, template: bool = False):
        super().__init__()
        self.cfg, self.generator = cfg, generator
        self.precision, self._device_type = resolve_precision(cfg.precision, device), device.type
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
        # The actor's loss and entropy of its last update, logged on the updates that skip it.
        self.last_actor = [0.0, 0.0]
        self._compiled: dict[bool, Callable] | None = None   # update_actor -> compiled step
        self._jobs: dict[bool, BackgroundCompile] = {}
        if template:  # a parameterless copy whose structure the compiled step calls
            return
        self.optimizer = torch.optim.Adam([
            {"params": list(self.actor.parameters()), "lr": cfg.learning_rate},
            {"params": list(self.critic.parameters()), "lr": cfg.critic_lr or cfg.learning_rate},
        ], betas=cfg.adam_betas, fused=True)
        with torch.device("meta"):
            template = SACFamily(cfg, obs_dim, action_dim, torch.device("meta"), None, template=True)
        # Kept out of this module's submodules: its (meta) tensors belong to no state dict.
        self.__dict__["_template"] = template

    def saved_values(self) -> list[Value]:
        """Checkpoint entries beyond the networks (whose state dicts hold the running statistics)."""
        return [Value("family_last_actor", self, "last_actor", save=list, load=list)]

    def observe(self, obs: torch.Tensor) -> None:
        """Fold env observations into the running observation statistics (SimBa)."""
        if self.obs_norm is not None:
            self.obs_norm.observe(obs)

    def draw(self, batch: int, update_actor: bool, generator: torch.Generator | None = None
             ) -> dict[str, Any]:
        """The update's random draws from ``generator`` (the agent's by default), in the order of
        the passes that use them: dropout masks of the critic pass, of the target pass, REDQ's
        target subset, then the actor pass's masks."""
        cfg, gen = self.cfg, self.generator if generator is None else generator
        joint = 2 * batch if self.critic_target is None else batch
        draws: dict[str, Any] = {"critic": self.critic.draw_masks(joint, gen)}
        draws["target"] = None if self.critic_target is None else self.critic_target.draw_masks(batch, gen)
        draws["subset"] = None
        if cfg.n_quantiles == 1 and cfg.target_subset is not None and cfg.target_subset < cfg.n_critics:
            draws["subset"] = torch.randperm(cfg.n_critics, generator=gen, device=gen.device)[:cfg.target_subset]
        draws["actor"] = self.critic.draw_masks(batch, gen) if update_actor else None
        return draws

    def forward(self, *args: Any, **kwargs: Any) -> tuple:
        """:meth:`losses` (what ``torch.func.functional_call`` calls on the template)."""
        return self.losses(*args, **kwargs)

    def losses(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
               terminated: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor, update_actor: bool = True,
               draws: dict[str, Any] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(critic_loss, actor_loss, log_prob)`` of one minibatch (the last two ``None`` when
        ``update_actor`` is off). ``noise`` (2, batch, action_dim): next- and current-state draws;
        ``draws``: :meth:`draw`'s (made here when ``None``)."""
        cfg = self.cfg
        batch = obs.shape[0]
        if draws is None:
            draws = self.draw(batch, update_actor)
        with torch.no_grad():  # a' ~ pi(.|s'), with the actor's running statistics (CrossQ)
            next_action, next_log_prob = sample_squashed_gaussian(*self.actor(next_obs, batch_stats=False),
                                                                  noise=noise[0])
        if self.critic_target is None:
            # CrossQ: one critic pass over (s, a) and (s', a'), so BatchRenorm normalises both with
            # the statistics of their mixture.
            joint = self.critic(torch.cat([obs, next_obs]), torch.cat([action, next_action]), batch_stats=True,
                                masks=draws["critic"])
            q, next_q = joint[:, :batch], joint[:, batch:].detach()
        else:
            q = self.critic(obs, action, batch_stats=True, masks=draws["critic"])
            with torch.no_grad():
                next_q = self.critic_target(next_obs, next_action, batch_stats=False, masks=draws["target"])
        with torch.no_grad():
            if cfg.n_quantiles > 1:
                target = truncated_quantile_target(reward, terminated, next_q, next_log_prob, alpha, cfg.gamma,
                                                   cfg.top_quantiles_to_drop)
            else:
                if draws["subset"] is not None:
                    next_q = next_q[draws["subset"].to(next_q.device)]
                target = soft_bellman_target(reward, terminated, next_q.min(dim=0).values, next_log_prob,
                                             alpha, cfg.gamma)
        critic_loss = quantile_huber_loss(q, target) if cfg.n_quantiles > 1 else soft_q_loss(q, target)
        if not update_actor:
            return critic_loss, None, None
        # The actor's pass updates its statistics (CrossQ); the critics' reads their running ones.
        mean, log_std = self.actor(obs, batch_stats=True)
        new_action, log_prob = sample_squashed_gaussian(mean, log_std, noise=noise[1])
        q_new = self.critic(obs, new_action, detach_params=True, batch_stats=False, masks=draws["actor"])
        if cfg.n_quantiles > 1:
            q_new = q_new.mean(dim=-1)
        q_new = q_new.mean(dim=0) if cfg.actor_q == "mean" else q_new.min(dim=0).values
        return critic_loss, soft_policy_loss(log_prob, q_new, alpha), log_prob.detach()

    def update(self, batch: tuple[torch.Tensor, ...], noise: torch.Tensor, temperature: Any, tau: float,
               n_updates: int) -> tuple[torch.Tensor, ...]:
        """One critic step, and on every ``policy_delay``-th update an actor and α step, then the
        Polyak step of the target critics. Returns ``(critic_loss, actor_loss, entropy, alpha)``."""
        update_actor = (n_updates + 1) % self.cfg.policy_delay == 0
        draws = self.draw(batch[0].shape[0], update_actor)
        step = self._compiled_step(update_actor)
        if step is not None:
            critic_loss, actor_loss, entropy, alpha = step(*self._tensors, batch, noise, draws)
            if update_actor:
                self.last_actor = [float(actor_loss), float(entropy)]
        else:
            critic_loss, alpha = self._eager_update(batch, noise, draws, temperature, tau, update_actor)
        actor_value, entropy_value = (torch.tensor(v, device=critic_loss.device) for v in self.last_actor)
        return critic_loss, actor_value, entropy_value, alpha

    def _autocast(self) -> torch.autocast:
        """bf16 autocast around the losses when ``precision`` is bf16; a no-op otherwise."""
        return torch.autocast(self._device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def _eager_update(self, batch: tuple[torch.Tensor, ...], noise: torch.Tensor, draws: dict[str, Any],
                      temperature: Any, tau: float, update_actor: bool) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = temperature.value
        with self._autocast():
            critic_loss, actor_loss, log_prob = self.losses(*batch, noise, alpha, update_actor, draws)
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
        return critic_loss.detach(), alpha

    # ----------------------------------------------------------------------- the compiled step

    def _variants(self) -> tuple[bool, ...]:
        """The step variants a run calls: with the actor, and without it when ``policy_delay`` > 1."""
        return (True,) if self.cfg.policy_delay == 1 else (False, True)

    def _compilable(self) -> bool:
        """Whether this config's update may be compiled; says why not, once, when it may not.
        SimBa's observation statistics are one module shared by actor and critics, and dynamo
        compiles the step again on the second call when they are swapped in functionally."""
        if not self.cfg.obs_norm:
            return True
        warnings.warn("SAC: obs_norm=True (SimBa) runs the eager update; compile applies to the other "
                      "family configs", RuntimeWarning, stacklevel=4)
        return False

    def compile_lazily(self, temperature: Any, **compile_kwargs: Any) -> None:
        """``compile=True``: each step variant is compiled on its first call (errors raise)."""
        if not self._compilable():
            return
        self.collect_step_tensors(temperature)
        steps = {False: self._pure_critic_step, True: self._pure_full_step}
        self._compiled = {k: torch.compile(steps[k], **compile_kwargs) for k in self._variants()}

    def start_compile(self, temperature: Any, example_batch: tuple[torch.Tensor, ...], background: bool,
                      **compile_kwargs: Any) -> None:
        """``compile="auto"``: compile each step variant by one call on copies of the step's
        tensors (``example_batch``: stand-ins laid out as the real batches), on a worker thread
        when ``background``; :meth:`update` switches once all are ready."""
        if not self._compilable():
            return
        self.collect_step_tensors(temperature)
        steps = {False: self._pure_critic_step, True: self._pure_full_step}
        batch = example_batch[0].shape[0]
        noise_shape = (2, batch, self.actor.action_dim)
        device = example_batch[0].device
        for k in self._variants():
            draws = self.draw(batch, k, torch.Generator(device=device).manual_seed(0))
            # The example batch is not copied: its views must keep the real batches' strides.
            args = (*clone_tree(self._tensors), example_batch, torch.zeros(noise_shape, device=device), draws)
            self._jobs[k] = BackgroundCompile(steps[k], args, name=f"sac-family-update-{int(k)}",
                                              background=background, **compile_kwargs)

    def _compiled_step(self, update_actor: bool) -> Callable | None:
        """The compiled step of this variant once every variant's compile is done, else ``None``."""
        if self._jobs and all(job.done for job in self._jobs.values()):
            jobs, self._jobs = self._jobs, {}
            failed = next((job for job in jobs.values() if job.poll() is None), None)
            if failed is not None:
                warnings.warn(f"SAC: compiling the update failed ({type(failed.error).__name__}: "
                              f"{failed.error}); training continues with the eager update",
                              RuntimeWarning, stacklevel=4)
            else:
                self._compiled = {k: job.poll() for k, job in jobs.items()}
        return None if self._compiled is None else self._compiled[update_actor]

    def collect_step_tensors(self, temperature: Any) -> None:
        """The real tensors the compiled step works on, in its argument order. Collected again
        after a restore (loading an optimizer state replaces its tensors)."""
        self._temperature = temperature
        trainable = {f"actor.{n}": p for n, p in self.actor.named_parameters()}
        trainable.update({f"critic.{n}": p for n, p in self.critic.named_parameters()})
        self._critic_names = [f"critic.{n}" for n, _ in self.critic.named_parameters()]
        # Every name of a shared buffer (SimBa's observation statistics sit in actor and critics):
        # passed under one name only, the others would keep the template's own tensor.
        buffers = dict(self.named_buffers(remove_duplicate=False))
        # Only BatchRenorm's statistics change inside the gradient transform; the others (SimBa's
        # observation statistics) are read there, as the targets are.
        self._moving_buffers = {f"{name}.{b}" for name, m in self.named_modules() if isinstance(m, BatchRenorm)
                                for b, _ in m.named_buffers(recurse=False)}
        targets = {} if self.critic_target is None else {
            f"critic_target.{n}": p for n, p in self.critic_target.named_parameters()}
        names = {id(p): n for n, p in trainable.items()}
        self._group_names = [[names[id(p)] for p in g["params"]] for g in self.optimizer.param_groups]
        self._tensors = (trainable, buffers, targets, adam_state_tensors(self.optimizer), temperature.tensors())

    def refresh_step_tensors(self) -> None:
        """Collect the step's tensors again if a compiled step uses them (after a restore)."""
        if self._compiled is not None or self._jobs:
            self.collect_step_tensors(self._temperature)

    def _pure_critic_step(self, *args: Any) -> tuple[torch.Tensor, ...]:
        return self._pure_step(*args, update_actor=False)

    def _pure_full_step(self, *args: Any) -> tuple[torch.Tensor, ...]:
        return self._pure_step(*args, update_actor=True)

    def _pure_step(self, trainable: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                   targets: dict[str, torch.Tensor], adam_state: list[tuple[list, list, list]],
                   temperature: tuple[torch.Tensor, ...], batch: tuple[torch.Tensor, ...], noise: torch.Tensor,
                   draws: dict[str, Any], update_actor: bool) -> tuple[torch.Tensor, ...]:
        """The eager update's arithmetic as a pure function of the tensors it reads and updates in
        place: gradients from ``torch.func`` (the buffers go in as arguments so that the running
        statistics may be updated in place inside it), Adam as tensor ops on the optimizer's own
        state (the actor's group only on actor updates, as Adam skips gradient-less parameters),
        α's and Polyak's updates."""
        alpha = self._temperature.value_from(temperature)

        moving = {k: v for k, v in buffers.items() if k in self._moving_buffers}
        still = {k: v for k, v in buffers.items() if k not in self._moving_buffers}

        def total_loss(params: dict[str, torch.Tensor], bufs: dict[str, torch.Tensor]):
            tensors = {**params, **bufs, **still, **targets}
            with self._autocast():
                critic_loss, actor_loss, log_prob = torch.func.functional_call(
                    self._template, tensors, (*batch, noise, alpha, update_actor, draws))
            if not update_actor:
                return critic_loss, (critic_loss.detach(), critic_loss.detach(), critic_loss.detach())
            return critic_loss + actor_loss, (critic_loss.detach(), actor_loss.detach(), log_prob.detach())

        grads, (_, (critic_loss, actor_loss, log_prob)) = torch.func.grad_and_value(
            total_loss, has_aux=True)(trainable, moving)
        for i, (group, (exp_avg, exp_avg_sq, steps)) in enumerate(zip(self.optimizer.param_groups, adam_state)):
            if i == 0 and not update_actor:
                continue
            names = self._group_names[i]
            adam_update_([trainable[n] for n in names], [grads[n] for n in names], exp_avg, exp_avg_sq,
                         steps, **adam_hyperparameters(group))
        entropy = -log_prob.float().mean()
        if update_actor:
            self._temperature.step_(temperature, entropy)
        if targets:
            polyak_update(list(targets.values()), [trainable[n] for n in self._critic_names], self.cfg.tau)
        return critic_loss, actor_loss, entropy, alpha
