"""GRPO for causal language models (Shao et al. 2024, "DeepSeekMath", Sec. 4.1), with the maxent
layer's token-level entropy interventions (Clip-Cov, KL-Cov: Cui et al. 2025; STEER; SEED-GRPO)
and entropy bonus or entropy target, read top to bottom: rollout, advantages, update, loop (the
settings are in :mod:`maxent.agents.grpo_config`).

One GRPO step samples ``group_size`` completions for each of ``prompts_per_step`` prompts, scores
them with the task's verifiable reward, turns rewards into group-relative advantages, stores the
rollout policy's token log-probs once, and takes ``num_epochs`` optimiser steps of the clipped
surrogate from :mod:`maxent.entropy.token`, accumulated over micro-batches. Device placement, DDP/FSDP
wrapping and gradient all-reduce come from Hugging Face ``accelerate``: the same file runs on one
CPU or under ``accelerate launch`` on several processes.

Beside it: the step's data (:mod:`~maxent.agents.grpo_batch`), rewards and their failure contract
(:mod:`~maxent.agents.grpo_rewards`), advantages (:mod:`~maxent.agents.grpo_advantages`), the
supervised warm-up (:mod:`~maxent.agents.grpo_warmup`) and ``maxent train grpo``'s hooks
(:mod:`~maxent.agents.grpo_run`); the public names of these are importable from here too.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maxent.llm import cpu_memory
from maxent import llm
from maxent.llm import steering
from maxent.training import logging as mlog
from maxent.training.agent import Agent
from maxent.training.saved import Controller, Optimizer, Value, write_entries
from maxent.training.saved_values import log_rows_check
from maxent.training.run import EVAL_ACCURACY  # noqa: F401  (a metric name of this agent)
from maxent.training.checkpoint import CheckpointError
from maxent.entropy.temperature import EntropyTargetController, FixedTemperature
from maxent.llm.forward import completion_logits, token_log_probs  # noqa: F401  (re-exported)
from maxent.agents.grpo_batch import Batch, Rollout
from maxent.agents.grpo_advantages import (
    advantages_from_rewards,
    group_advantages,
    seed_grpo_advantages,
)
from maxent.agents.grpo_rewards import (
    attach_env_and_rewards,
    checked_rewards,
    completions_table,
    global_step,
    score,
    update_trainer_state,
)

# The settings live in grpo_config.py, the `maxent train grpo` hooks in grpo_run.py; importing
# them from here keeps working.
from maxent.agents.grpo_config import (  # noqa: F401  (re-exported)
    AGGREGATIONS,
    INTERVENTIONS,
    GRPOConfig,
    vllm_dtype,
)
from maxent.agents.grpo_run import GRPOFlags, GRPORunHooks  # noqa: F401  (re-exported)


# Metric names (TensorBoard tags) of this agent.
REWARD = mlog.REWARD
ACCURACY = "rollout/accuracy"
COMPLETION_LENGTH = "rollout/completion_length"
TRUNCATED = "rollout/truncated_fraction"
SKIPPED = "rollout/skipped_rewards"
SKIPPED_FRACTION = "rollout/skipped_fraction"
TOKEN_ENTROPY = "entropy/token"
SEMANTIC_ENTROPY = "entropy/semantic"
ENTROPY_COEF = "temperature/entropy_coef"
LOSS = "train/loss"
GRAD_NORM = "train/grad_norm"
COVARIANCE = "covariance/logp_advantage"
LAW_A, LAW_B, LAW_CEILING = "law/a", "law/b", "law/predicted_ceiling"
STEP_TIME = "time/step_seconds"


# --------------------------------------------------------------------------- the agent


class GRPO(Agent):
    """Group Relative Policy Optimisation of a causal LM on a verifiable text task.

    ``num_timesteps`` counts GRPO steps (one rollout batch and its update); ``trainer_state``'s
    ``global_step`` counts optimiser steps, ``num_epochs`` per GRPO step, as TRL's;
    ``num_completions`` counts the completions scored (environment steps).

    A fresh model (the ``"tiny"`` one above all) does not yet write answers in a text task's
    format, so every completion scores 0, every group's advantages are 0 and ``learn`` changes
    nothing: ``evaluate_accuracy`` stays 0.0. Call :meth:`warmup` first (supervised steps on
    correct answers until greedy accuracy reaches ``stop_accuracy``), as ``maxent train grpo``
    does (``--warmup-steps``, default 600); a dataset has no answers to imitate, so its reward
    functions must give partial credit from the start.

    Args:
        model: a model name or path (see :attr:`GRPOConfig.model`), a ``PreTrainedModel`` (then
            pass ``tokenizer``), or ``None`` to load ``config.model``.
        env: a text task environment from :mod:`maxent.envs.text` (``sample_prompts``, ``task``)
            or its id, e.g. ``"maxent/TextArithmetic-v0"``.
        config: a :class:`GRPOConfig`; ``None`` uses the defaults.
        seed: seeds the tiny model's weights, prompt sampling and generation.
        log_dir: TensorBoard events and ``progress.csv``; ``None`` writes nothing.
        tokenizer: the tokenizer of a model object.
        reward_fn: ``fn(completion, target) -> float`` instead of ``env.task.reward``; a call that
            returns NaN/inf skips that completion (counted, warned); one that raises stops the
            run naming the sample, or skips it with ``reward_failures="skip"``.
        reward_funcs: reward functions in TRL's convention (:mod:`maxent.envs.prompts`): with a
            dataset as ``env`` they are required; with a text task they replace its reward and
            receive its ``target`` column.
        reward_weights: one weight per reward function (default 1 each).
        accelerator: an ``accelerate.Accelerator`` to use (default: a new one for ``device``).
        **overrides: fields of :class:`GRPOConfig` to change.

    ``env`` is a text task from :mod:`maxent.envs.text` (or its id), or a dataset of prompts with
    a ``"prompt"`` column (a ``datasets.Dataset``, a list of dicts or a local .jsonl/.json/
    .parquet/.csv file), TRL's ``train_dataset``. Functions are not saved: ``GRPO.load`` takes
    ``env``, ``reward_fn``, ``reward_funcs``, ``reward_weights`` and ``accelerator`` again.
    """

    config_cls = GRPOConfig
    load_arguments = ("reward_fn", "reward_funcs", "reward_weights", "accelerator", "tools")
    multiturn = None  # the multi-turn step (grpo_multiturn.MultiTurn) when env is a multi-turn env
    env_kind = "none"  # a text task or a dataset of prompts, built here

    def __init__(self, model: Any = None, env: Any = "maxent/TextArithmetic-v0",
                 config: GRPOConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None, *, tokenizer: Any = None,
                 reward_fn: Callable[[str, Any], float] | None = None,
                 reward_funcs: Sequence[Callable] | Callable | None = None,
                 reward_weights: Sequence[float] | None = None,
                 accelerator: Any = None, tools: Sequence[Callable] | None = None,
                 **overrides: Any):
        if isinstance(model, (str, Path)):
            overrides = {"model": str(model), **overrides}
            model = None
        model_given = model is not None
        super().__init__(env, config, seed, log_dir, **overrides)
        cfg = self.config
        from accelerate import Accelerator

        self.accelerator = accelerator or Accelerator(cpu=cfg.device == "cpu")
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        if cfg.prompts_per_step % self.world_size:
            raise ValueError(f"GRPOConfig.prompts_per_step ({cfg.prompts_per_step}) must divide by "
                             f"the number of processes ({self.world_size})")

        attach_env_and_rewards(self, env, reward_fn=reward_fn, reward_funcs=reward_funcs,
                               reward_weights=reward_weights, tools=tools, batch_cls=Batch)

        if model is None:
            tiny = {"hidden_size": cfg.tiny_hidden_size, "num_layers": cfg.tiny_layers,
                    "num_heads": cfg.tiny_heads}
            model, tokenizer = llm.load_model(cfg.model, dtype=cfg.torch_dtype, seed=self.seed,
                                             tiny=tiny)
        elif tokenizer is None:
            raise ValueError("a model object needs its tokenizer: GRPO(model, env, tokenizer=...)")
        llm.ensure_pad_token(tokenizer)
        self.tokenizer = tokenizer
        self.is_tiny = cfg.model == llm.TINY and model.config.vocab_size == len(tokenizer) and \
            model.config.hidden_size == cfg.tiny_hidden_size
        context = getattr(model.config, "max_position_embeddings", None)
        if context is not None and cfg.max_prompt_tokens + cfg.max_new_tokens > context:
            raise ValueError(
                f"max_prompt_tokens ({cfg.max_prompt_tokens}) + max_new_tokens ({cfg.max_new_tokens}) "
                f"= {cfg.max_prompt_tokens + cfg.max_new_tokens} tokens exceed the model's context "
                f"window ({context} positions): beyond it a model generates garbage; lower one of them")
        self.device = self.accelerator.device
        if cfg.keep_freed_memory and self.device.type == "cpu":
            cpu_memory.keep_freed_memory()
        model = model.to(self.device)
        model.config.use_cache = True
        # Checkpoints of a LoRA run hold only the adapters when the base can be rebuilt by name.
        self.base_from_name = not model_given

        # The reference model exists only when the KL term is on (β = 0 by default).
        self.ref_model = None
        if cfg.kl_coef > 0:
            self.ref_model = llm.model_from_state(llm.model_to_state(model), cfg.torch_dtype)
            self.ref_model.load_state_dict(model.state_dict())
            self.ref_model.to(self.device).eval().requires_grad_(False)

        if cfg.lora_rank > 0 and not llm.is_lora(model):
            model = llm.apply_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha,
                                  dropout=cfg.lora_dropout, target_modules=cfg.lora_target_modules)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if cfg.lora_rank > 0:
                model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks need a grad input
        lr = cfg.learning_rate or (3e-4 if self.is_tiny else 1e-6)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=cfg.weight_decay)
        self.fsdp = cfg.fsdp and self.world_size > 1
        self._generation_model = None
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            # Generation has no collectives: it runs on a full copy, refreshed after each step.
            self._generation_model = llm.model_from_state(llm.model_to_state(model), cfg.torch_dtype)
            self._generation_model.load_state_dict(model.state_dict())
            self._generation_model.to(self.device).eval().requires_grad_(False)
            for block in steering.find_layers(model):
                fully_shard(block)
            fully_shard(model)
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                          weight_decay=cfg.weight_decay)
            self.model, self.optimizer = model, optimizer
        else:
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.sampler = self._make_sampler()

        if cfg.entropy_target is not None:
            self.entropy_controller = EntropyTargetController(
                cfg.entropy_target, initial_coef=min(1e-3, cfg.entropy_max_coef / 2),
                lr=cfg.entropy_lr, max_coef=cfg.entropy_max_coef)
        else:
            self.entropy_controller = FixedTemperature(cfg.entropy_coef)
        from maxent.entropy.law import EntropyPerformanceLaw

        self.law = EntropyPerformanceLaw()

        self.num_completions = 0
        self.skipped_rewards = 0
        self.warmed_up = False
        self.last_metrics: dict[str, float] = {}

    @property
    def policy(self):
        """The unwrapped model (the DDP/FSDP wrapper's module)."""
        return self.accelerator.unwrap_model(self.model)

    def _make_sampler(self):
        cfg = self.config
        if cfg.sampler == "vllm":
            from maxent.llm.vllm_sampler import VLLMSampler

            head_dim = self.policy.config.hidden_size // self.policy.config.num_attention_heads
            if head_dim < 32:
                raise ValueError(f"sampler='vllm': vLLM's CPU attention needs a head size of at "
                                 f"least 32, this model has {head_dim}; use a larger model (for the "
                                 "tiny one: fewer tiny_heads) or sampler='hf'")
            path = cfg.model if Path(str(cfg.model)).is_dir() else None
            return VLLMSampler(self.policy, self.tokenizer, path=path, dtype=vllm_dtype(cfg, self.device),
                               max_model_len=cfg.max_episode_tokens if self.multiturn is not None
                               else cfg.max_prompt_tokens + cfg.max_new_tokens,
                               kv_cache_gb=cfg.vllm_kv_cache_gb, num_threads=cfg.vllm_num_threads,
                               weight_sync=cfg.vllm_weight_sync)
        model = self._generation_model if self._generation_model is not None else self.policy
        if self.config.sampler == "static":
            return llm.StaticSampler(model, self.tokenizer)
        return llm.HFSampler(model, self.tokenizer)

    def _step_seed(self, step: int, stream: int) -> int:
        """A seed for (step, process, purpose): fresh per step, identical when resumed."""
        return int(np.random.default_rng([self.seed, step, self.rank, stream]).integers(2**62))

    # ----------------------------------------------------------------------- acting

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return llm.encode_prompts(self.tokenizer, prompts, chat_template=self.config.chat_template,
                                 max_prompt_tokens=self.config.max_prompt_tokens)

    def generate(self, prompts: Sequence[str], *, deterministic: bool = True, seed: int = 0,
                 batch_size: int = 64) -> list[str]:
        """Completions of ``prompts`` (greedy with ``deterministic``, else sampled)."""
        texts: list[str] = []
        for start in range(0, len(prompts), batch_size):
            ids = self.encode(prompts[start:start + batch_size])
            out = self.sampler.generate(ids, max_new_tokens=self.config.max_new_tokens,
                                        temperature=self.config.temperature, top_p=self.config.top_p,
                                        greedy=deterministic, seed=seed + start,
                                        **self.config.sampling_options())
            texts.extend(out.texts)
        return texts

    def predict(self, observation: Any, deterministic: bool = True) -> Any:
        """The completion for a prompt string, or a list of completions for a list of prompts."""
        if isinstance(observation, str):
            return self.generate([observation], deterministic=deterministic)[0]
        if isinstance(observation, (list, tuple)) and all(isinstance(o, str) for o in observation):
            return self.generate(list(observation), deterministic=deterministic)
        raise ValueError(f"observation must be a prompt string or a list of them, got "
                         f"{type(observation).__name__}")

    def evaluate_accuracy(self, n_prompts: int = 200, seed: int = 10_000,
                          deterministic: bool = True) -> float:
        """Mean task reward on ``n_prompts`` prompts drawn with ``seed`` (a stream the training
        prompts never use: they come from ``[seed, step, rank, 0]``); on a multi-turn env, the
        mean return of ``n_prompts`` episodes."""
        if self.multiturn is not None:
            return self.multiturn.evaluate(n_prompts, seed=seed, deterministic=deterministic)
        pairs = self.env.sample_prompts(n_prompts, np.random.default_rng([seed, 1]))
        prompts = [p for p, _ in pairs]
        texts = self.generate(prompts, deterministic=deterministic, seed=seed)
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        padded, mask = llm.left_pad(ids or [[0]], self.tokenizer.pad_token_id)
        scored = self._score(prompts, texts, padded, mask, [t for _, t in pairs])
        return float(np.mean(np.nan_to_num(scored.rewards, nan=0.0)))

    # ----------------------------------------------------------------------- rollout

    def rollout(self, step: int) -> Rollout:
        """Sample this process's prompts for GRPO step ``step``, G completions each, and score them."""
        cfg = self.config
        n_prompts = cfg.prompts_per_step // self.world_size
        pairs = self.env.sample_prompts(n_prompts, np.random.default_rng(
            [self.seed, step, self.rank, 0]))
        prompt_rows = self.encode([p for p, _ in pairs])
        repeated = [row for row in prompt_rows for _ in range(cfg.group_size)]
        targets = [t for _, t in pairs for _ in range(cfg.group_size)]
        out = self.sampler.generate(repeated, max_new_tokens=cfg.max_new_tokens,
                                    temperature=cfg.temperature, top_p=cfg.top_p,
                                    seed=self._step_seed(step, 1), **cfg.sampling_options())
        prompts = [p for p, _ in pairs for _ in range(cfg.group_size)]
        scored = self._score(prompts, out.texts, out.ids, out.mask, targets)
        rewards = checked_rewards(self, step, scored, len(repeated))
        prompt_ids, prompt_mask = llm.left_pad(repeated, self.tokenizer.pad_token_id)
        return Rollout(prompt_ids, prompt_mask, out.ids, out.mask, out.truncated, rewards,
                       out.texts, targets, torch.as_tensor(scored.per_function, dtype=torch.float32),
                       prompts, getattr(out, "log_probs", None))

    def _score(self, prompts: list, texts: list[str], ids: Tensor, mask: Tensor, targets: list):
        """Rewards of a batch through the reward functions (TRL's convention)."""
        return score(self, prompts, texts, ids, mask, targets)

    def _update_trainer_state(self) -> None:
        """Bring ``trainer_state`` (what reward functions and TRL callbacks read) up to date."""
        update_trainer_state(self)

    def _on_learn_start(self, end: int) -> None:
        super()._on_learn_start(end)
        self.trainer_state.max_steps = end * self.config.num_epochs  # optimiser steps, as TRL
        self._update_trainer_state()

    # ----------------------------------------------------------------------- advantages

    def advantages(self, rollout: Rollout, sequence_log_probs: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B,) advantages of a rollout and, for SEED-GRPO, the (n_prompts,) semantic entropies."""
        cfg = self.config
        if cfg.intervention != "seed":
            if cfg.reward_scaling == "batch" or cfg.multi_objective_aggregation != "sum_then_normalize":
                if self.world_size > 1:  # their batch statistics would be one process's share
                    raise ValueError("scale_rewards='batch' and multi_objective_aggregation="
                                     "'normalize_then_sum' run on one process; use 'group' and "
                                     "'sum_then_normalize' under several")
                return advantages_from_rewards(
                    rollout.rewards, rollout.reward_terms, torch.as_tensor(self.rewards.weights),
                    cfg.group_size, cfg.reward_scaling, cfg.multi_objective_aggregation), None
            return group_advantages(rollout.rewards, cfg.group_size,
                                    cfg.reward_scaling == "group"), None
        return seed_grpo_advantages(rollout, getattr(self.env, "task", None), cfg, sequence_log_probs)

    # ----------------------------------------------------------------------- the update

    def _micro_batches(self, n_rows: int) -> list[slice]:
        size = self.config.micro_batch_size or n_rows
        return [slice(s, min(s + size, n_rows)) for s in range(0, n_rows, size)]

    @torch.no_grad()
    def prepare(self, rollout: Rollout, lazy: bool = False) -> tuple[Batch, dict[str, Any]]:
        """Inputs, loss mask, old (and reference) log-probs, advantages and the Clip-Cov/KL-Cov
        token selection: everything the update needs, computed once with no grad."""
        cfg = self.config
        dev = self.device
        input_ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1).to(dev)
        attention = torch.cat([rollout.prompt_mask, rollout.completion_mask.long()], 1).to(dev)
        # Positions count real tokens only, as generate does with left padding.
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        T = rollout.completion_ids.shape[1]
        valid_rows = torch.isfinite(rollout.rewards)
        keep = valid_rows & ~rollout.truncated if cfg.mask_truncated else valid_rows
        loss_mask = (rollout.completion_mask & keep[:, None]).float().to(dev)     # (B, T)

        # lazy (train_step): with one optimiser step per rollout and one micro-batch, the rollout
        # policy IS the policy of the update's forward, so its detached log-probs serve as the
        # old ones and update() fills them in; the no-grad forward here would be wasted (TRL
        # skips it likewise). Direct callers get old_log_probs filled now.
        fused = (lazy and cfg.num_epochs == 1 and len(self._micro_batches(len(input_ids))) == 1
                 and self.ref_model is None
                 and not (cfg.intervention == "seed" and cfg.seed_likelihood_weights))
        old_log_probs = old_entropy = None
        ref_lp = []
        if not fused:
            old_lp, old_ent = [], []
            policy = self.policy
            sharing = cfg.group_size if cfg.share_prompt_pass else 1
            for mb in self._micro_batches(len(input_ids)):
                lp, ent = token_log_probs(policy, input_ids[mb], attention[mb], position_ids[mb],
                                          T, cfg.temperature, group_size=sharing)
                old_lp.append(lp)
                old_ent.append(ent)
                if self.ref_model is not None:
                    ref_lp.append(token_log_probs(self.ref_model, input_ids[mb], attention[mb],
                                                  position_ids[mb], T, cfg.temperature,
                                                  with_entropy=False, group_size=sharing)[0])
            old_log_probs, old_entropy = torch.cat(old_lp), torch.cat(old_ent)
        generated = rollout.completion_mask.to(dev).float()
        sequence_lp = None if fused else (old_log_probs * generated).sum(-1).cpu()
        advantages, semantic = self.advantages(rollout, sequence_lp)
        advantages = advantages.to(dev)
        sampler_lp = None
        if rollout.sampler_log_probs is not None and cfg.vllm_importance_sampling:
            sampler_lp = rollout.sampler_log_probs.to(dev)
        batch = Batch(input_ids, attention, position_ids, loss_mask, advantages, old_log_probs,
                      old_entropy, torch.cat(ref_lp) if ref_lp else None, None, None, sampler_lp)
        if not fused:
            self._select(batch)
        info = {"generated": generated, "semantic": semantic}
        return batch, info

    @torch.no_grad()
    def _select(self, batch: Batch) -> None:
        """Clip-Cov/KL-Cov token selection and STEER weights, on the whole batch, from the
        rollout policy's log-probs (``batch.old_log_probs``)."""
        cfg = self.config
        dev = self.device
        if cfg.intervention in ("clip_cov", "kl_cov"):
            from maxent.entropy.token import select_tokens

            generator = torch.Generator(device=dev).manual_seed(self._step_seed(self.num_timesteps, 2))
            batch.selected = select_tokens(cfg.intervention, batch.old_log_probs, batch.advantages,
                                           batch.loss_mask, ratio=cfg.cov_ratio,
                                           cov_lower=cfg.cov_lower, cov_upper=cfg.cov_upper,
                                           generator=generator)
        if cfg.intervention == "steer":
            # STEER's weights scale by the batch's largest |Ω|: computed once on the whole batch
            # (from the rollout policy), so micro-batching does not change them.
            from maxent.entropy.token import steer_weights

            batch.token_weights = steer_weights(
                batch.old_log_probs, batch.old_log_probs, batch.advantages, batch.old_entropy,
                batch.loss_mask, mode=cfg.steer_mode, lambda_min=cfg.steer_lambda_min,
                lambda_max=cfg.steer_lambda_max)

    def _normalizer(self, batch: Batch) -> float:
        """The divisor of the global batch's loss (all micro-batches, all processes), so that the
        micro-batch losses add up to it (see :func:`maxent.entropy.token.aggregate`)."""
        cfg = self.config
        if cfg.aggregation == "token-mean":
            local = batch.loss_mask.sum()
        else:
            local = torch.tensor(float(len(batch.input_ids)), device=self.device)
            if cfg.aggregation == "seq-mean-token-sum-norm":
                local = local * cfg.max_new_tokens
        total = self.accelerator.reduce(local.reshape(1).float(), reduction="sum")
        return max(float(total), 1.0)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """``num_epochs`` optimiser steps on one prepared batch; returns the mean metrics.

        Each micro-batch's loss is divided by the global batch's normalizer, so the accumulated
        gradient equals the gradient of the global-batch loss; under DDP it is multiplied by the
        process count because DDP averages gradients over processes.
        """
        from maxent.entropy.token import (high_entropy_mask, masked_fraction, policy_loss,
                                          sampler_importance_weights)

        cfg = self.config
        settings = cfg.loss_settings()
        normalizer = self._normalizer(batch)
        T = batch.loss_mask.shape[1]
        coef = self.entropy_controller.value
        want_entropy_grad = cfg.entropy_target is not None or cfg.entropy_coef > 0
        slices = self._micro_batches(len(batch.input_ids))
        # One prompt pass per group (see completion_logits) on a single process; a DDP wrapper
        # expects one forward call per backward, so several processes run whole sequences.
        shared_prompts = cfg.group_size if cfg.share_prompt_pass and self.world_size == 1 else 1
        sums: dict[str, Tensor] = {}
        self.model.train()
        for _ in range(cfg.num_epochs):
            for i, mb in enumerate(slices):
                # DDP all-reduces gradients on the last micro-batch only.
                sync = contextlib.nullcontext() if i == len(slices) - 1 else \
                    self.accelerator.no_sync(self.model)
                with sync:
                    log_probs, entropy = token_log_probs(
                        self.model, batch.input_ids[mb], batch.attention_mask[mb],
                        batch.position_ids[mb], T, cfg.temperature,
                        entropy_grad=want_entropy_grad, group_size=shared_prompts)
                    if batch.old_log_probs is None:  # fused on-policy pass (see prepare)
                        batch.old_log_probs = log_probs.detach()
                        batch.old_entropy = entropy.detach()
                        self._select(batch)
                    weights = None
                    if batch.sampler_log_probs is not None:
                        weights = sampler_importance_weights(
                            batch.old_log_probs[mb], batch.sampler_log_probs[mb], batch.loss_mask[mb],
                            mode=cfg.vllm_importance_sampling_mode,
                            clip_max=cfg.vllm_importance_sampling_clip_max)
                        share = (mb.stop - mb.start) / len(batch.input_ids) / cfg.num_epochs
                        sums["sampling/importance_ratio_mean"] = sums.get(
                            "sampling/importance_ratio_mean", 0) + weights.mean() * share
                        sums["sampling/importance_masked_fraction"] = sums.get(
                            "sampling/importance_masked_fraction", 0) + masked_fraction(
                            weights, batch.loss_mask[mb]) * share
                    out = policy_loss(
                        log_probs, batch.old_log_probs[mb], batch.advantages[mb],
                        batch.loss_mask[mb], settings,
                        selected=None if batch.selected is None else batch.selected[mb],
                        old_entropy=batch.old_entropy[mb], entropy=entropy,
                        entropy_coef=coef if want_entropy_grad else 0.0,
                        ref_log_probs=None if batch.ref_log_probs is None else batch.ref_log_probs[mb],
                        normalizer=normalizer,
                        token_weights=None if batch.token_weights is None else batch.token_weights[mb],
                        sampling_weights=weights,
                        entropy_mask=None if cfg.top_entropy_quantile >= 1 else high_entropy_mask(
                            entropy, batch.loss_mask[mb], cfg.top_entropy_quantile))
                    self.accelerator.backward(out.loss * self.world_size)
                # Metrics are means over micro-batches weighted by their share of rows.
                weight = (mb.stop - mb.start) / len(batch.input_ids) / cfg.num_epochs
                for name, value in {"loss": out.loss.detach() * len(slices), **out.metrics}.items():
                    sums[name] = sums.get(name, 0) + value.detach().float() * weight
            if cfg.max_grad_norm is not None:
                norm = self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                norm = norm.full_tensor() if hasattr(norm, "full_tensor") else torch.as_tensor(norm)
                sums["grad_norm"] = sums.get("grad_norm", 0) + norm.float() / cfg.num_epochs
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self._sync_sampler()
        return sums

    def _sync_sampler(self) -> None:
        """Give the sampler the policy's current weights (under FSDP: gathered into the full
        generation copy first; a collective, every process calls it)."""
        if self.fsdp:
            full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v
                    for k, v in self.model.state_dict().items()}
            self._generation_model.load_state_dict(full)
            self.sampler.sync(self._generation_model)
        else:
            self.sampler.sync(self.policy)

    # ----------------------------------------------------------------------- the loop

    def train_step(self) -> dict[str, float]:
        """One GRPO step: rollout, advantages, update, entropy controller, law; returns metrics."""
        if self.multiturn is not None:
            return self.multiturn.train_step()
        from maxent.entropy.law import logprob_advantage_covariance

        start = time.perf_counter()
        rollout = self.rollout(self.num_timesteps)
        batch, info = self.prepare(rollout, lazy=True)
        generated = info["generated"]
        metrics = self.update(batch)
        every = self.config.ref_model_sync_steps
        if every and (self.num_timesteps + 1) % every == 0:  # TRL's sync_ref_model, after the step
            llm.mix_weights(self.ref_model, self.policy, self.config.ref_model_mixup_alpha)
        token_entropy = (batch.old_entropy * generated).sum() / generated.sum().clamp(min=1)
        token_entropy = self._mean_over_processes(token_entropy)
        self.entropy_controller.update(entropy=token_entropy)

        rewards = rollout.rewards
        finite = torch.isfinite(rewards)
        reward = self._mean_over_processes(rewards[finite].mean() if finite.any() else torch.tensor(0.0))
        accuracy = self._mean_over_processes(
            (rewards[finite] >= 1.0).float().mean() if finite.any() else torch.tensor(0.0))
        row = {REWARD: reward, ACCURACY: accuracy, TOKEN_ENTROPY: token_entropy,
               COMPLETION_LENGTH: generated.sum(-1).mean(),
               TRUNCATED: rollout.truncated.float().mean(),
               SKIPPED: float((~finite).sum()),
               COVARIANCE: logprob_advantage_covariance(batch.old_log_probs, batch.advantages,
                                                        batch.loss_mask),
               ENTROPY_COEF: self.entropy_controller.value,
               LOSS: metrics.pop("loss")}
        if "grad_norm" in metrics:
            row[GRAD_NORM] = metrics.pop("grad_norm")
        for name, value in metrics.items():
            row[name if "/" in name else f"train/{name}"] = value
        if info["semantic"] is not None:
            row[SEMANTIC_ENTROPY] = torch.as_tensor(info["semantic"]).float().mean()
        if rollout.reward_terms is not None and len(self.rewards.names) > 1:
            for j, name in enumerate(self.rewards.names):  # TRL's rewards/<function> columns
                terms = rollout.reward_terms[:, j]
                if torch.isfinite(terms).any():
                    row[f"rewards/{name}"] = terms[torch.isfinite(terms)].mean()
        reward_metrics, extras = self.rewards.drain_logs()  # the functions' log_metric/log_extra
        row.update(reward_metrics)
        row[SKIPPED_FRACTION] = float((~finite).float().mean())
        self.law.update(float(token_entropy), float(reward))
        fit = self.law.fit()
        if fit is not None:
            row.update({LAW_A: fit.a, LAW_B: fit.b, LAW_CEILING: fit.ceiling})
        every = self.config.log_completions_every
        if every and self.num_timesteps % every == 0 and self.logger is not None:
            self.logger.text("completions", completions_table(rollout, self.rewards.names,
                                                              extras=extras),
                             self.num_timesteps + 1)
        self.num_timesteps += 1
        self.num_completions += len(rollout.texts) * self.world_size
        row[STEP_TIME] = time.perf_counter() - start
        self.last_metrics = {k: float(v) for k, v in row.items()}
        if self.num_timesteps % self.config.log_interval == 0:
            self.trainer_state.log_history.append({**self.last_metrics, "step": global_step(self)})
        self._update_trainer_state()
        if not math.isfinite(self.last_metrics[LOSS]):
            raise FloatingPointError(
                f"the GRPO loss became {self.last_metrics[LOSS]} at step {self.num_timesteps}: "
                "training diverged; lower learning_rate. Checkpoints written before are intact.")
        return self.last_metrics

    def _mean_over_processes(self, value: Tensor) -> Tensor:
        value = value.detach().float().reshape(1).to(self.device)
        return self.accelerator.reduce(value, reduction="mean").reshape(())

    def learn(self, total_steps: int, callback: Any = None, progress_bar: bool = False) -> GRPO:
        """:meth:`Agent.learn`; ``callback`` may also be (or list) transformers
        ``TrainerCallback`` objects, run as a ``Trainer`` runs them
        (:mod:`maxent.agents.grpo_callbacks`)."""
        from maxent.agents.grpo_callbacks import with_trainer_callbacks

        return super().learn(total_steps, with_trainer_callbacks(callback), progress_bar)

    def _learn_step(self) -> None:
        """One GRPO step: ``prompts_per_step * group_size`` completions scored and
        ``num_epochs`` optimiser steps; its metrics go to the log row."""
        for name, value in self.train_step().items():
            self.logger.record(name, value)

    def _headline(self) -> dict[str, str]:
        row = self.last_metrics
        return {"reward": f"{row[REWARD]:.3f}", "entropy": f"{row[TOKEN_ENTROPY]:.3f}"} if row else {}

    @property
    def _is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    # ----------------------------------------------------------------------- warm-up

    def warmup(self, max_steps: int = 300, *, batch_size: int = 32, learning_rate: float = 3e-3,
               stop_accuracy: float | None = 0.3, eval_every: int = 25, eval_prompts: int = 64,
               seed: int = 20_000) -> list[tuple[int, float]]:
        """Supervised warm-up on correct ``prompt -> str(target)`` pairs, so that a fresh model
        emits the task's answer format and GRPO has a reward signal to start from.

        Stops after ``max_steps`` or once greedy accuracy on ``eval_prompts`` held-out prompts
        reaches ``stop_accuracy`` (checked every ``eval_every`` steps), leaving room for GRPO.
        Uses its own Adam optimiser; GRPO's optimiser state is untouched.

        Returns:
            ``[(step, accuracy), ...]`` at each check.
        """
        from maxent.agents.grpo_warmup import supervised_warmup

        return supervised_warmup(self, max_steps, batch_size=batch_size, learning_rate=learning_rate,
                                 stop_accuracy=stop_accuracy, eval_every=eval_every,
                                 eval_prompts=eval_prompts, seed=seed)

    # ----------------------------------------------------------------------- checkpoints

    def save(self, path: str | Path) -> Path:
        """Save config, weights, optimiser, entropy controller, law points and the model's
        architecture and tokenizer (enough to rebuild offline) to the directory ``path``
        atomically. Under several processes only the main one writes."""
        path = Path(path)
        self.accelerator.wait_for_everyone()
        # Under FSDP every process takes part in gathering the full weights and optimizer state.
        gathered = self._gather_full_state() if self.fsdp else None
        out = super().save(path, gathered=gathered) if self.accelerator.is_main_process else path
        self.accelerator.wait_for_everyone()
        return out

    def _gather_full_state(self) -> tuple[dict[str, Tensor], dict]:
        """The sharded model's and optimizer's full state on the main process (torch's own
        optimizer format, parameters by position), so FSDP checkpoints load anywhere."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model_sd, optim_sd = get_state_dict(self.model, self.optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
        if not self.accelerator.is_main_process:
            return {}, {}
        names = [n for g in optim_sd["param_groups"] for n in g["params"]]
        position = {n: i for i, n in enumerate(names)}
        groups = [{**g, "params": [position[n] for n in g["params"]]} for g in optim_sd["param_groups"]]
        return model_sd, {"state": {position[n]: v for n, v in optim_sd["state"].items()},
                          "param_groups": groups}

    def _restore_sharded_optimizer(self, full: dict) -> None:
        """Load a full optimizer state (torch's format, parameters by position) into the sharded
        optimizer (parameters by name)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        state = {names[i]: v for i, v in full["state"].items()}
        groups = [{**g, "params": [names[i] for i in g["params"]]} for g in full["param_groups"]]
        set_state_dict(self.model, self.optimizer, model_state_dict={},
                       optim_state_dict={"state": state, "param_groups": groups},
                       options=StateDictOptions(full_state_dict=True, strict=False))

    def _saved(self, full_optimizer_state: dict | None = None):
        """Optimiser (gathered from the shards under FSDP), entropy controller, law points and
        counters; the weights are written by :meth:`_checkpoint`."""
        return [
            Optimizer("optimizer", self._torch_optimizer, full_state=full_optimizer_state,
                      loader=self._restore_sharded_optimizer if self.fsdp else None),
            Controller("entropy_controller", self.entropy_controller, one_dim=True,
                       fix="was entropy_target changed? Load it with the config it was saved with"),
            Controller("law", self.law, kind=False),
            Value("num_completions", self, "num_completions"),
            Value("skipped_rewards", self, "skipped_rewards"),
            Value("warmed_up", self, "warmed_up"),
            # What reward functions and TRL callbacks read as trainer_state.log_history.
            Value("log_history", self.trainer_state, "log_history", default=lambda ckpt: [],
                  like_current=False, check=log_rows_check("num_timesteps", self.config.num_epochs)),
        ]

    def _checkpoint(self, gathered: tuple[dict[str, Tensor], dict] | None = None):
        """The declared contents and the weights: the full model (``gathered`` from the shards
        under FSDP), or the LoRA adapters alone when the base is rebuilt by name; the reference
        model; the architecture and tokenizer."""
        policy = self.policy
        tensors, state, _ = write_entries(self._saved(None if gathered is None else gathered[1]))
        if gathered is not None:
            tensors.update({f"model.{k}": v for k, v in gathered[0].items()})
            weights = "lora" if llm.is_lora(policy) else "full"
        elif llm.is_lora(policy) and self.base_from_name:
            # The base model is rebuilt from config.model at load: keep the adapters only.
            tensors.update({f"adapter.{k}": v for k, v in policy.named_parameters() if v.requires_grad})
            weights = "adapters"
        else:
            tensors.update(llm.model_tensors(policy, "model"))
            weights = "lora" if llm.is_lora(policy) else "full"
        if self.ref_model is not None:
            tensors.update(llm.model_tensors(self.ref_model, "ref"))
        base = policy.get_base_model() if llm.is_lora(policy) else policy
        state.update({"weights": weights, "model": llm.model_to_state(base),
                      "tokenizer": llm.tokenizer_to_state(self.tokenizer)})
        return tensors, state, None

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the policy (LoRA adapters merged) and its tokenizer with the chat template as a
        Hugging Face folder: ``AutoModelForCausalLM.from_pretrained(path)`` and ``vllm.LLM(path)``
        load it unchanged. The CLI's ``maxent export RUN_DIR OUT`` does this for a saved run."""
        return llm.save_pretrained(self.policy, self.tokenizer, path)

    def close(self) -> None:
        """Stop the sampler's engine (vLLM holds its own copy of the model) and close the logs."""
        if hasattr(self.sampler, "close"):
            self.sampler.close()
        super().close()

    @property
    def _torch_optimizer(self):
        """The torch optimizer behind accelerate's wrapper."""
        return getattr(self.optimizer, "optimizer", self.optimizer)

    @classmethod
    def _rebuild(cls, ckpt: Any, env: Any, config: Any, log_dir: Any, **arguments: Any) -> GRPO:
        seed, weights = int(ckpt.state["seed"]), ckpt.state.get("weights", "full")
        if weights == "adapters":  # the base by name (config.model), the adapters in _restore
            if config.lora_rank == 0:
                raise CheckpointError(f"{ckpt.path} holds LoRA adapters only; load it with its "
                                      "lora_rank (do not override lora_rank=0)")
            return cls(None, env, config=config, seed=seed, log_dir=log_dir, **arguments)
        model = llm.model_from_state(ckpt.state["model"], config.torch_dtype)
        if weights == "lora":
            model = llm.apply_lora(model, rank=config.lora_rank, alpha=config.lora_alpha,
                                  dropout=config.lora_dropout, target_modules=config.lora_target_modules)
        llm.load_weights(model, ckpt.tensors, "model", ckpt.path)
        tokenizer = llm.tokenizer_from_state(ckpt.state["tokenizer"])
        return cls(model, env, config=config, seed=seed, log_dir=log_dir, tokenizer=tokenizer,
                   **arguments)

    def _restore(self, ckpt: Any, path: Path) -> None:
        state, tensors = ckpt.state, ckpt.tensors
        if state.get("weights") == "adapters":
            adapters = {k[len("adapter."):]: v for k, v in tensors.items() if k.startswith("adapter.")}
            own = {k for k, p in self.policy.named_parameters() if p.requires_grad}
            if set(adapters) != own:
                raise CheckpointError(f"the LoRA adapters in {path} do not fit this model (rank or "
                                      f"target modules changed?): missing {sorted(own - set(adapters))[:3]}, "
                                      f"unexpected {sorted(set(adapters) - own)[:3]}")
            self.policy.load_state_dict(adapters, strict=False)
        if self.ref_model is not None:
            if not any(k.startswith("ref.") for k in tensors):
                raise CheckpointError(f"{path} has no reference model but kl_coef > 0 now; "
                                      "load with kl_coef=0 or from a run trained with a KL term")
            llm.load_weights(self.ref_model, tensors, "ref", path)
        super()._restore(ckpt, path)
        # A sampler that holds its own copy of the weights (vLLM) must see the loaded ones.
        self._sync_sampler()


if __name__ == "__main__":  # `accelerate launch -m maxent.agents.grpo ...`: `maxent train grpo ...`
    import sys

    from maxent.cli.main import main

    raise SystemExit(main(["train", "grpo", *sys.argv[1:]]))
