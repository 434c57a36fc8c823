"""GRPO's part of the run lifecycle (:mod:`maxent.training.run`) behind ``maxent train grpo``: its
flags (a dataset with reward functions, the supervised warm-up, held-out prompts), the warm-up of a
fresh run, and held-out accuracy (or mean reward) before and after training. ``agent_class`` is
:class:`~maxent.agents.grpo.GRPO` (this module does not import it: grpo.py re-exports these)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxent.training.run import EVAL_ACCURACY, Evaluation, RunHooks, RunSpec, UsageError

__all__ = ["GRPOFlags", "GRPORunHooks"]


@dataclass
class GRPOFlags:
    """The flags ``maxent train grpo`` has besides every algorithm's."""

    dataset: Path | None = None
    """A local dataset file (.jsonl, .json, .parquet, .csv) with a "prompt" column, as TRL's
    train_dataset; its other columns reach the reward functions by name (--env is then ignored)."""
    reward_funcs: tuple[str, ...] = ()
    """Reward functions as module:function (TRL's convention), required with --dataset."""
    reward_weights: tuple[float, ...] = ()
    """One weight per reward function (default 1 each)."""
    warmup_steps: int = 600
    """Supervised warm-up steps on correct answers before GRPO (0 = none); only for a fresh run."""
    warmup_stop_accuracy: float = 0.3
    """End the warm-up once greedy accuracy reaches this, leaving room for GRPO."""
    eval_prompts: int = 200
    """Held-out prompts for the greedy accuracy printed before and after."""


class GRPORunHooks(RunHooks):
    """GRPO's part of the run lifecycle (:mod:`maxent.training.run`): a text task or a dataset with
    reward functions, a supervised warm-up of a fresh run, and held-out accuracy (or mean reward on
    a dataset) measured before and after training."""

    flags = GRPOFlags

    def __init__(self, agent_class: type, flags: GRPOFlags, reward_funcs: list | None):
        super().__init__(agent_class, flags.eval_prompts, "held-out greedy accuracy", "prompts")
        self.options = flags
        self.functions = {"reward_funcs": reward_funcs,
                          "reward_weights": list(flags.reward_weights) or None}
        self.before: float | None = None

    @classmethod
    def from_args(cls, agent_class: type, args: Any, algorithm: Any) -> GRPORunHooks:
        if args.eval_prompts < 1:
            raise UsageError(f"maxent train grpo: --eval-prompts must be positive, got "
                             f"{args.eval_prompts}")
        if args.dataset is not None and not args.reward_funcs:
            raise UsageError("maxent train grpo: --dataset needs --reward-funcs module:function [...]")
        from maxent.envs.prompts import import_function

        try:
            funcs = [import_function(spec) for spec in args.reward_funcs] or None
        except ValueError as err:
            raise UsageError(f"maxent train grpo: {err}") from None
        return cls(agent_class, args, funcs)

    def where(self, args: Any) -> str:
        return args.dataset.stem if args.dataset is not None else args.env

    def label(self, args: Any) -> str:
        return args.dataset.name if args.dataset is not None else args.env

    def spec_env(self, args: Any) -> Any:
        return str(args.dataset) if args.dataset is not None else args.env

    def checked_env(self, spec: RunSpec) -> str | None:
        return None if self.options.dataset is not None else spec.env

    def build(self, spec: RunSpec) -> Any:
        return self.agent_class(None, spec.env, config=spec.config, seed=spec.seed,
                                log_dir=spec.run_dir, **self.functions)

    def resume_env(self, spec: RunSpec) -> Any:
        # A dataset run saved no env id; a text task's id is in the checkpoint (and checked).
        return spec.env if self.options.dataset is not None else None

    def load(self, spec: RunSpec, overrides: dict[str, Any]) -> Any:
        return self.agent_class.load(spec.model_dir, env=self.resume_env(spec),
                                     log_dir=spec.run_dir, **overrides, **self.functions)

    def before_learn(self, agent: Any, spec: RunSpec) -> None:
        flags = self.options
        if not agent.warmed_up and flags.warmup_steps > 0 and agent.num_timesteps == 0 \
                and flags.dataset is None and agent.multiturn is None:  # no targets to imitate
            start = time.perf_counter()
            history = agent.warmup(flags.warmup_steps, stop_accuracy=flags.warmup_stop_accuracy)
            print(f"warm-up: {history[-1][0]} supervised steps, greedy accuracy "
                  f"{history[-1][1]:.3f}, {time.perf_counter() - start:.1f} s")
            agent.save(spec.model_dir)
        self.before = self.final_evaluation(agent, self.eval_seed(spec.seed)).mean

    def final_evaluation(self, agent: Any, seed: int, count: int | None = None, env: Any = None,
                         deterministic: bool = True) -> Evaluation:
        """:meth:`GRPO.evaluate_accuracy` on ``count`` (default ``--eval-prompts``) held-out prompts
        drawn with ``seed``: greedy accuracy on a text task, mean reward on a dataset, mean return
        of as many episodes on a multi-turn env (``env``: the agent was loaded on it)."""
        count = self.options.eval_prompts if count is None else count
        value = agent.evaluate_accuracy(count, seed=seed, deterministic=deterministic)
        greedy = "greedy" if deterministic else "sampled"
        metric, unit = ("held-out mean reward", "prompts") if self.options.dataset is not None \
            else (f"held-out {greedy} return", "episodes") if agent.multiturn is not None \
            else (f"held-out {greedy} accuracy", "prompts")
        return Evaluation(row={EVAL_ACCURACY: value}, metric=metric, unit=unit, mean=value,
                          count=count, seed=seed, digits=3)

    def evaluate(self, agent: Any, spec: RunSpec) -> Evaluation:
        after = self.final_evaluation(agent, self.eval_seed(spec.seed))
        after.text = (f"{after.metric} {self.before:.3f} -> {after.mean:.3f} ({after.count} "
                      f"{after.unit}, {agent.num_completions} completions)")
        return after
