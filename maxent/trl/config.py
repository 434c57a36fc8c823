"""TRL's ``GRPOConfig`` under its own field names and defaults, translated onto maxent's
:class:`maxent.agents.grpo_config.GRPOConfig`. A field maxent cannot honour is refused unless it
is left at TRL's default (see :mod:`maxent.trl.fields` for the reason of each)."""

from __future__ import annotations

import difflib
import math
import warnings
from typing import Any

from maxent.trl.fields import HONOURED, NO_EFFECT, TRL_DEFAULTS, absent_reason

__all__ = ["GRPOConfig", "UnsupportedTRLField"]

_LOSS_TYPES = {"grpo": ("seq-mean-token-mean", "clip"), "bnpo": ("token-mean", "clip"),
               "dapo": ("token-mean", "clip"), "dr_grpo": ("seq-mean-token-sum-norm", "clip"),
               "cispo": ("token-mean", "cispo"), "sapo": ("seq-mean-token-mean", "sapo")}
_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
               "constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")


class UnsupportedTRLField(ValueError):
    """A TRL field set to a value maxent cannot honour."""


def _maxent_fields() -> list[str]:
    from maxent.agents.grpo_config import GRPOConfig as Native

    return Native.field_names()


def _differs(value: Any, default: Any) -> bool:
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return not math.isclose(float(value), default)
    return value != default


class GRPOConfig:
    """TRL's ``GRPOConfig``: every field by TRL's name with TRL's default (``output_dir``,
    ``learning_rate``, ``num_generations``, ``max_completion_length``, ``loss_type``, ``beta``...).

    Attributes are read and written as on TRL's config. :meth:`maxent_overrides` gives the
    maxent GRPOConfig fields they mean. A TRL field maxent cannot honour raises
    :class:`UnsupportedTRLField` naming it and why; an unknown name raises naming the closest TRL
    field and the closest maxent field.
    """

    def __init__(self, output_dir: str | None = None, **kwargs: Any):
        values = dict(TRL_DEFAULTS)
        for name, value in kwargs.items():
            if name not in TRL_DEFAULTS:
                trl_close = difflib.get_close_matches(name, list(TRL_DEFAULTS), n=1)
                ours = difflib.get_close_matches(name, _maxent_fields(), n=1)
                raise TypeError(
                    f"GRPOConfig got an unknown field {name!r}: it is not one of TRL's"
                    + (f" (closest TRL field: {trl_close[0]!r})" if trl_close else "")
                    + (f"; the closest maxent GRPOConfig field is {ours[0]!r} (maxent.agents.grpo_config)"
                       if ours else ""))
            values[name] = value
        values["output_dir"] = output_dir if output_dir is not None else "trainer_output"
        self.__dict__.update(values)
        self._check()

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.__dict__.items() if k in TRL_DEFAULTS and
                   _differs(v, TRL_DEFAULTS[k])}
        return f"maxent.trl.GRPOConfig({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k in TRL_DEFAULTS}

    # ------------------------------------------------------------------- checks

    def _check(self) -> None:
        for name, default in TRL_DEFAULTS.items():
            value = getattr(self, name)
            if name in HONOURED or not _differs(value, default) or name == "output_dir":
                continue
            if name in NO_EFFECT:
                warnings.warn(f"maxent.trl: {name}={value!r} has no effect here: {NO_EFFECT[name]}",
                              UserWarning, stacklevel=3)
                continue
            raise UnsupportedTRLField(f"maxent.trl cannot honour {name}={value!r} ({absent_reason(name)}); "
                                      f"leave it at TRL's default {default!r} or use TRL")
        if self.loss_type not in _LOSS_TYPES:
            raise UnsupportedTRLField(f"maxent.trl cannot honour loss_type={self.loss_type!r}; it has "
                                      f"{sorted(_LOSS_TYPES)}")
        if self.lr_scheduler_type not in _SCHEDULERS:
            raise UnsupportedTRLField(f"lr_scheduler_type={self.lr_scheduler_type!r} is not one of "
                                      f"{list(_SCHEDULERS)}")
        if self.optim not in ("adamw_torch", "adamw_torch_fused"):
            raise UnsupportedTRLField(f"maxent.trl trains with AdamW only; optim={self.optim!r} is not "
                                      "'adamw_torch' or 'adamw_torch_fused'")
        if self.remove_unused_columns:
            raise UnsupportedTRLField("remove_unused_columns=True: maxent passes every dataset column "
                                      "to the reward functions, as TRL's GRPO default False does")
        if not self.shuffle_dataset:
            raise UnsupportedTRLField("shuffle_dataset=False: maxent draws prompts at random")
        if self.fp16:
            raise UnsupportedTRLField(f"fp16=True: {absent_reason('fp16')}")
        if self.report_to not in ("none", "tensorboard", "all", None, [], ["none"], ["tensorboard"], ["all"]):
            raise UnsupportedTRLField(f"report_to={self.report_to!r}: maxent logs to TensorBoard in "
                                      "output_dir only; use 'none' or 'tensorboard'")
        for name, allowed in (("eval_strategy", ("no", "steps")), ("save_strategy", ("no", "steps")),
                              ("logging_strategy", ("steps",))):
            if getattr(self, name) not in allowed:
                raise UnsupportedTRLField(f"{name}={getattr(self, name)!r}: maxent.trl supports "
                                          f"{list(allowed)}")
        if not isinstance(self.num_iterations, int) or isinstance(self.num_iterations, bool) \
                or self.num_iterations < 1:
            raise ValueError(f"num_iterations={self.num_iterations!r}: it must be a positive integer "
                             "(optimiser steps per generation)")
        if self.max_steps is not None and self.max_steps > 0 and self.max_steps % self.num_iterations:
            raise UnsupportedTRLField(
                f"max_steps={self.max_steps} is not a multiple of num_iterations={self.num_iterations}: "
                "maxent reuses each generation for all num_iterations optimiser steps; set max_steps to "
                f"{self.max_steps - self.max_steps % self.num_iterations or self.num_iterations} or "
                f"{self.max_steps - self.max_steps % self.num_iterations + self.num_iterations}")
        ga = self.gradient_accumulation_steps
        if self.steps_per_generation not in (None, ga):
            raise UnsupportedTRLField(f"steps_per_generation={self.steps_per_generation}: maxent "
                                      "generates once per num_iterations optimiser steps (steps_per_generation "
                                      f"= gradient_accumulation_steps, {ga}); leave it None")
        if self.loss_type == "bnpo" and ga > 1:
            raise UnsupportedTRLField("loss_type='bnpo' with gradient_accumulation_steps > 1 normalises "
                                      "each micro-batch apart; maxent normalises the whole batch (use 'dapo')")

    # ------------------------------------------------------------------- translation

    def prompts_per_step(self, processes: int = 1) -> int:
        completions = self.per_device_train_batch_size * self.gradient_accumulation_steps * processes
        if self.generation_batch_size not in (None, completions):
            raise UnsupportedTRLField(f"generation_batch_size={self.generation_batch_size}: maxent "
                                      f"generates per_device_train_batch_size * gradient_accumulation_steps "
                                      f"* processes = {completions} completions per step")
        if completions % self.num_generations:
            raise ValueError(f"the generation batch ({completions} completions = per_device_train_batch_size "
                             f"* gradient_accumulation_steps * processes) must divide by num_generations "
                             f"({self.num_generations}), as in TRL")
        return completions // self.num_generations

    def maxent_overrides(self, processes: int = 1) -> dict[str, Any]:
        """The maxent GRPOConfig fields these TRL settings mean."""
        aggregation, surrogate = _LOSS_TYPES[self.loss_type]
        log_every = math.ceil(self.logging_steps / self.num_iterations)
        out: dict[str, Any] = {
            "group_size": self.num_generations,
            "prompts_per_step": self.prompts_per_step(processes),
            "micro_batch_size": self.per_device_train_batch_size,
            "max_new_tokens": self.max_completion_length,
            "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
            "min_p": self.min_p, "repetition_penalty": self.repetition_penalty,
            "generation_kwargs": self.generation_kwargs,
            "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm if self.max_grad_norm and self.max_grad_norm > 0 else None,
            "num_epochs": self.num_iterations,
            "kl_coef": self.beta, "kl_bias_correction": bool(self.use_bias_correction_kl),
            "clip_low": self.epsilon,
            "clip_high": self.epsilon if self.epsilon_high is None else self.epsilon_high,
            "delta": self.delta,
            "importance_sampling_level": self.importance_sampling_level,
            "aggregation": aggregation, "surrogate": surrogate,
            "sapo_temperature_pos": self.sapo_temperature_pos,
            "sapo_temperature_neg": self.sapo_temperature_neg,
            "scale_rewards": {True: "group", False: "none"}.get(self.scale_rewards, self.scale_rewards),
            "multi_objective_aggregation": self.multi_objective_aggregation,
            "mask_truncated": bool(self.mask_truncated_completions),
            "top_entropy_quantile": self.top_entropy_quantile,
            "entropy_coef": self.entropy_coef, "entropy_aggregation": "token-mean",
            "sampler": "vllm" if self.use_vllm else "hf",
            "vllm_importance_sampling": bool(self.vllm_importance_sampling_correction),
            "vllm_importance_sampling_mode": self.vllm_importance_sampling_mode,
            "vllm_importance_sampling_clip_max": self.vllm_importance_sampling_clip_max,
            "gradient_checkpointing": bool(self.gradient_checkpointing),
            "autocast": self.bf16 is None or bool(self.bf16),  # TRL turns bf16 on unless fp16
            # logging_steps counts optimiser steps; a row is written per generation at most.
            "log_interval": log_every,
            "log_completions_every": log_every if self.log_completions else 0,
            "reward_failures": "raise",
            "share_prompt_pass": False,  # TRL runs every row's whole sequence
            "ref_model_sync_steps": self.ref_model_sync_steps if self.sync_ref_model else 0,
            "ref_model_mixup_alpha": self.ref_model_mixup_alpha,
        }
        if self.use_cpu:
            out["device"] = "cpu"
        return out

    def total_steps(self, dataset_size: int | None, prompts_per_step: int) -> int:
        """Optimiser steps to train, counted as TRL's ``global_step``: ``max_steps``, or the epochs'
        worth (transformers' ``Trainer.set_initial_training_values``). One generation batch serves
        ``num_iterations`` optimiser steps, so the total must be a multiple of it."""
        if self.max_steps is not None and self.max_steps > 0:
            return int(self.max_steps)
        if dataset_size is None:
            raise ValueError("an IterableDataset has no length: set max_steps, as TRL requires")
        total = math.ceil(self.num_train_epochs * self.updates_per_epoch(dataset_size, prompts_per_step))
        if total % self.num_iterations:
            raise UnsupportedTRLField(
                f"num_train_epochs={self.num_train_epochs} is {total} optimiser steps, not a multiple of "
                f"num_iterations={self.num_iterations}: maxent reuses each generation for all "
                "num_iterations steps; set max_steps to a multiple of num_iterations")
        return total

    def updates_per_epoch(self, dataset_size: int, prompts_per_step: int) -> int:
        """TRL's ``num_update_steps_per_epoch``: its ``RepeatSampler`` keeps whole generation
        batches (``len(dataset) // prompts``), each giving ``num_iterations`` optimiser steps."""
        return max(dataset_size // prompts_per_step * self.num_iterations, 1)
