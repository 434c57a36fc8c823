"""TRL's ``GRPOTrainer`` on maxent's engine: the same constructor (model, reward functions, args,
datasets, tokenizers, callbacks, PEFT config, tools, environment factory), ``train()``,
``evaluate()`` and ``save_model()``, running :class:`maxent.agents.grpo.GRPO` (multi-turn with
tools: :mod:`maxent.trl.environments`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from maxent.agents.grpo import GRPO
from maxent.agents.grpo_config import GRPOConfig as NativeConfig
from maxent.envs.prompts import PromptDataset
from maxent.training.agent import Callback
from maxent.trl.environments import attach, tool_episodes
from maxent.trl.config import GRPOConfig, UnsupportedTRLField

__all__ = ["GRPOTrainer", "TrainOutput"]

# A plain ChatML template (role headers, then the content) for a conversational dataset whose
# tokenizer has none; written for maxent.
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

_PEFT_FIELDS = {"r": "lora_rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                "target_modules": "lora_target_modules"}


class TrainOutput(tuple):
    """``(global_step, training_loss, metrics)``, as transformers' ``TrainOutput``."""

    def __new__(cls, global_step: int, training_loss: float, metrics: dict[str, float]):
        return super().__new__(cls, (global_step, training_loss, metrics))

    global_step = property(lambda self: self[0])
    training_loss = property(lambda self: self[1])
    metrics = property(lambda self: self[2])


def _lora_overrides(peft_config: Any) -> dict[str, Any]:
    """maxent's LoRA fields for a ``peft.LoraConfig`` (other settings must be peft's defaults)."""
    if peft_config is None:
        return {}
    import peft

    if not isinstance(peft_config, peft.LoraConfig):
        raise UnsupportedTRLField(f"peft_config {type(peft_config).__name__}: maxent trains LoRA "
                                  "adapters only (peft.LoraConfig)")
    default = peft.LoraConfig()
    for name in ("bias", "use_rslora", "use_dora", "modules_to_save", "layers_to_transform",
                 "init_lora_weights", "fan_in_fan_out"):
        if getattr(peft_config, name, None) != getattr(default, name, None):
            raise UnsupportedTRLField(f"peft_config.{name}={getattr(peft_config, name)!r}: maxent's "
                                      f"LoRA uses peft's default ({getattr(default, name)!r})")
    modules = peft_config.target_modules
    if modules is None:
        modules = ("q_proj", "k_proj", "v_proj", "o_proj")
    elif isinstance(modules, str):
        modules = (modules,)
    return {"lora_rank": int(peft_config.r), "lora_alpha": float(peft_config.lora_alpha),
            "lora_dropout": float(peft_config.lora_dropout), "lora_target_modules": tuple(modules)}


class _Schedule(Callback):
    """The learning-rate schedule TRL's trainer builds (transformers' ``get_scheduler`` over
    ``total`` optimiser steps), stepped after every optimiser step as transformers' ``Trainer``
    does: a generation reused for ``num_iterations`` steps sees the rate change between them."""

    def __init__(self, args: GRPOConfig, total: int):
        self.args, self.total, self.scheduler, self.hook = args, total, None, None

    def on_training_start(self, agent: GRPO) -> None:
        from transformers import get_scheduler

        optimizer = agent._torch_optimizer
        # From the base rate, then forward to this step: a resumed or continued run keeps its place.
        for group in optimizer.param_groups:
            group["lr"] = self.args.learning_rate
            group.pop("initial_lr", None)
        warmup = self.args.warmup_steps
        warmup = math.ceil(warmup * self.total) if isinstance(warmup, float) and warmup < 1 else int(warmup)
        self.scheduler = get_scheduler(self.args.lr_scheduler_type, optimizer,
                                       num_warmup_steps=warmup, num_training_steps=self.total,
                                       scheduler_specific_kwargs=self.args.lr_scheduler_kwargs or {})
        for _ in range(agent.trainer_state.global_step):
            self.scheduler.step()
        for group in optimizer.param_groups:  # the scheduler keeps its base rates;
            group.pop("initial_lr", None)     # checkpoints hold torch's own keys only
        self.close()
        self.hook = optimizer.register_step_post_hook(lambda *_: self.scheduler.step())

    def close(self) -> None:
        """Stop stepping the schedule (the optimiser outlives this ``train()`` call)."""
        if self.hook is not None:
            self.hook.remove()
            self.hook = None


class _Periodic(Callback):
    """Checkpoints (``save_strategy="steps"``) and evaluation (``eval_strategy="steps"``) every
    ``save_steps`` / ``eval_steps`` optimiser steps, as TRL counts them; a generation spans
    ``num_iterations`` of them, so a period ending inside one is acted on at its end."""

    def __init__(self, trainer: GRPOTrainer):
        self.trainer, self.last = trainer, 0

    def on_training_start(self, agent: GRPO) -> None:
        self.last = agent.trainer_state.global_step

    def on_step(self, agent: GRPO) -> bool:
        args, step = self.trainer.args, agent.trainer_state.global_step
        last, self.last = self.last, step

        def due(every: int) -> bool:
            return step // every > last // every

        if args.save_strategy == "steps" and args.save_steps and due(int(args.save_steps)):
            agent.save(Path(args.output_dir) / f"checkpoint-{step}")
        if self.trainer.eval_dataset is not None and args.eval_strategy == "steps" \
                and due(int(args.eval_steps or args.logging_steps)):
            self.trainer.evaluate()
        return True


class GRPOTrainer:
    """TRL's ``GRPOTrainer`` running maxent's GRPO (see :mod:`maxent.trl`).

    Args:
        model: a local model folder, or a ``PreTrainedModel`` (with ``processing_class``, or a
            local ``config._name_or_path`` to load it from). Hub ids are refused (no network).
        reward_funcs: functions in TRL's convention, reward models, or local paths of reward models.
        args: a :class:`maxent.trl.GRPOConfig` (TRL's names and defaults).
        train_dataset: a ``datasets.Dataset`` / ``IterableDataset`` or a list of dicts (a
            ``DatasetDict`` is refused naming its splits: pass one).
        eval_dataset: the same kinds; its mean reward is logged every ``eval_steps``.
        processing_class: the model's tokenizer.
        reward_processing_classes: a tokenizer per reward model (``None`` for functions).
        callbacks: transformers ``TrainerCallback`` objects (or maxent callbacks).
        peft_config: a ``peft.LoraConfig``: LoRA adapters on the policy.
        prompt_column: the dataset column holding prompts (TRL reads "prompt").
        optimizers: must be ``(None, None)``: maxent builds AdamW and the schedule from ``args``.
        tools: typed functions with Google-style docstrings the model may call.
        environment_factory: a class (or zero-argument callable) whose instances are per-rollout
            environments: ``reset(**row)``, public methods as tools, optional ``get_reward()``
            (TRL's semantics and maxent's differences: :mod:`maxent.trl.environments`).
    """

    def __init__(self, model: Any, reward_funcs: Any = None, args: GRPOConfig | None = None,
                 train_dataset: Any = None, eval_dataset: Any = None, processing_class: Any = None,
                 reward_processing_classes: Any = None, callbacks: list | None = None,
                 optimizers: tuple = (None, None), peft_config: Any = None,
                 prompt_column: str = "prompt", tools: list | None = None,
                 environment_factory: Any = None, **unsupported: Any):
        if unsupported:
            raise UnsupportedTRLField(f"GRPOTrainer({', '.join(unsupported)}=...): maxent.trl has no "
                                      "rollout functions or quantization")
        if tuple(optimizers) != (None, None):
            raise UnsupportedTRLField("optimizers=(...): maxent builds AdamW and the schedule from "
                                      "args (learning_rate, adam_*, lr_scheduler_type, warmup_steps)")
        episodes = bool(tools) or environment_factory is not None
        if reward_funcs is None and not episodes:
            raise ValueError("GRPOTrainer needs reward_funcs (a function, a reward model or a list)")
        if train_dataset is None and not episodes:
            raise ValueError("GRPOTrainer needs train_dataset (rows with a prompt column)")
        if args is None:
            name = str(model) if isinstance(model, (str, Path)) else \
                str(getattr(model.config, "_name_or_path", "") or "model")
            args = GRPOConfig(f"{name.rstrip('/').split('/')[-1]}-GRPO")
        if not isinstance(args, GRPOConfig):
            raise TypeError(f"args must be a maxent.trl.GRPOConfig (TRL's fields), got "
                            f"{type(args).__name__}; change the import to `from maxent.trl import GRPOConfig`")
        self.args = args
        if isinstance(model, (str, Path)) and not Path(model).is_dir():
            raise ValueError(f"model {str(model)!r} is not a local folder; maxent.trl does not "
                             "download from the Hub: save the model locally and pass its folder")
        self.scorer, episode_fields = None, {}
        if episodes:
            if eval_dataset is not None:
                raise UnsupportedTRLField("eval_dataset with tools or environment_factory: maxent.trl "
                                          "evaluates single-turn prompts only; drop eval_dataset")
            self.train_data, self.scorer, episode_fields = tool_episodes(
                train_dataset, reward_funcs, args, tools=tools,
                environment_factory=environment_factory, prompt_column=prompt_column,
                reward_processing_classes=reward_processing_classes)
        else:  # a DatasetDict is refused naming its splits (pass dataset["train"]), as in TRL
            self.train_data = PromptDataset(train_dataset, reward_funcs, args.reward_weights,
                                            prompt_column=prompt_column,
                                            reward_processing_classes=reward_processing_classes)
        self.eval_dataset = None
        if eval_dataset is not None:
            self.eval_dataset = PromptDataset(eval_dataset, self.train_data.rewards.functions,
                                              args.reward_weights, prompt_column=prompt_column)
        from accelerate import PartialState

        overrides = {**args.maxent_overrides(PartialState().num_processes), **_lora_overrides(peft_config),
                     "chat_template": self.train_data.conversational, **episode_fields}
        if isinstance(model, (str, Path)):
            overrides["model"] = str(model)
            model = None
        elif processing_class is None:
            source = str(getattr(model.config, "_name_or_path", "") or "")
            if not Path(source).is_dir():
                raise ValueError(f"model {type(model).__name__} came without processing_class (its "
                                 "tokenizer) and has no local folder to load one from; pass "
                                 "processing_class=tokenizer")
            from transformers import AutoTokenizer

            processing_class = AutoTokenizer.from_pretrained(source)
        context = _context_length(overrides.get("model"), model)
        if context is not None:
            overrides["max_prompt_tokens"] = max(1, context - args.max_completion_length)
        if episodes:  # the transcript may fill the context; the budget is set on the rollout
            overrides["max_episode_tokens"] = context or args.max_completion_length + 4096
        config = NativeConfig(**overrides)
        report = args.report_to if isinstance(args.report_to, str) else (args.report_to or ["none"])[0]
        log_dir = args.output_dir if report in ("tensorboard", "all") else None
        self.agent = GRPO(model, self.train_data, config=config, seed=int(args.seed), log_dir=log_dir,
                          tokenizer=processing_class)
        self.agent.trainer_args = args
        if self.scorer is not None:
            attach(self.agent, self.scorer, args)
        if self.train_data.conversational and not getattr(self.agent.tokenizer, "chat_template", None):
            self.agent.tokenizer.chat_template = CHATML  # TRL needs a template for conversations too
        if args.disable_dropout:
            import torch

            for module in self.agent.policy.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        self.callbacks = list(callbacks or [])
        self.eval_history: list[dict[str, float]] = []

    # ------------------------------------------------------------------- TRL's surface

    @property
    def model(self):
        return self.agent.policy

    @property
    def processing_class(self):
        return self.agent.tokenizer

    @property
    def state(self):
        return self.agent.trainer_state

    @property
    def accelerator(self):
        return self.agent.accelerator

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def train(self, resume_from_checkpoint: str | None = None) -> TrainOutput:
        """Train for ``max_steps`` (or ``num_train_epochs``) as TRL would; ``resume_from_checkpoint``
        is a ``checkpoint-N`` folder this trainer saved, or ``True`` for the latest in output_dir."""
        if resume_from_checkpoint is True:
            saved = sorted(Path(self.args.output_dir).glob("checkpoint-*"),
                           key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
            if not saved:
                raise ValueError(f"resume_from_checkpoint=True but {self.args.output_dir} holds no "
                                 "checkpoint-N folder")
            resume_from_checkpoint = str(saved[-1])
        if resume_from_checkpoint not in (None, False):
            self.agent = GRPO.load(resume_from_checkpoint, env=self.train_data,
                                   log_dir=self.agent.log_dir)
            self.agent.trainer_args = self.args
            if self.scorer is not None:
                attach(self.agent, self.scorer, self.args)
            self.agent._update_trainer_state()  # global_step and epoch of the loaded step
        # TRL counts optimiser steps (global_step); each GRPO step is one generation used for
        # num_iterations of them (steps_per_generation = gradient_accumulation_steps here).
        total = self.args.total_steps(len(self.train_data), self.agent.config.prompts_per_step)
        remaining = total // self.args.num_iterations - self.agent.num_timesteps
        if remaining > 0:
            schedule = _Schedule(self.args, total)
            try:
                self.agent.learn(remaining, callback=[schedule, _Periodic(self), *self.callbacks],
                                 progress_bar=not self.args.disable_tqdm)
            finally:
                schedule.close()
        history = self.state.log_history
        losses = [row["train/loss"] for row in history if "train/loss" in row]
        return TrainOutput(self.state.global_step, float(np.mean(losses)) if losses else float("nan"),
                           dict(self.agent.last_metrics))

    def evaluate(self) -> dict[str, float]:
        """Mean reward of one sampled completion per ``eval_dataset`` prompt (logged as
        ``eval/reward``)."""
        if self.eval_dataset is None:
            raise ValueError("evaluate() needs eval_dataset")
        agent, rows = self.agent, self.eval_dataset.rows
        column = self.eval_dataset.prompt_column
        prompts = [r[column] for r in rows]
        texts = agent.generate(prompts, deterministic=False, seed=agent.num_timesteps,
                               batch_size=int(self.args.per_device_eval_batch_size))
        ids = [agent.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        scored = self.eval_dataset.score(prompts, texts, ids, rows, agent.trainer_state)
        finite = np.isfinite(scored.rewards)
        metrics = {"eval/reward": float(scored.rewards[finite].mean()) if finite.any() else float("nan")}
        self.eval_history.append({**metrics, "step": agent.trainer_state.global_step})
        if agent.logger is not None and not agent.logger.closed:
            for name, value in metrics.items():
                agent.logger.record(name, value)
        return metrics

    def save_model(self, output_dir: str | None = None) -> Path:
        """The policy (LoRA merged) and tokenizer as a Hugging Face folder (default: output_dir)."""
        return self.agent.save_pretrained(output_dir or self.args.output_dir)


def _context_length(path: str | None, model: Any) -> int | None:
    if model is not None:
        return getattr(model.config, "max_position_embeddings", None)
    if path is None or path == "tiny":
        return None
    from transformers import AutoConfig

    try:
        return getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
    except (OSError, ValueError):
        return None
