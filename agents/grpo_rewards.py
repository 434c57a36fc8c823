"""Where a GRPO agent's rewards come from and how a failed reward is handled: the reward functions
of a text task, a prompt dataset or a multi-turn env (TRL's convention, :mod:`maxent.envs.prompts`),
the ``trainer_state`` they read, the skip-or-stop contract for completions no function rewarded,
and the completions table logged beside the metrics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["attach_env_and_rewards", "checked_rewards", "completions_table", "score",
           "global_step", "update_trainer_state"]


def attach_env_and_rewards(agent: Any, env: Any, *, reward_fn: Callable[[str, Any], float] | None,
                           reward_funcs: Sequence[Callable] | Callable | None,
                           reward_weights: Sequence[float] | None, tools: Sequence[Callable] | None,
                           batch_cls: type) -> None:
    """Set ``agent``'s ``trainer_state``, ``env``, ``env_id`` and ``rewards`` (and ``reward_fn`` for a
    text task, ``multiturn`` for a multi-turn env, whose batches are ``batch_cls``) from what
    :class:`~maxent.agents.grpo.GRPO` was given; raises on a combination that cannot be scored."""
    from maxent.agents.grpo_multiturn import MultiTurn, is_multiturn_env
    from maxent.envs.prompts import PromptDataset, RewardFunctions, TaskReward, TrainerState

    cfg = agent.config
    agent.trainer_state = TrainerState(is_world_process_zero=agent.rank == 0,
                                       logging_steps=cfg.log_interval)
    if isinstance(env, PromptDataset):  # built by the caller (maxent.trl: reward models, splits)
        if reward_funcs is not None or reward_fn is not None:
            raise ValueError("a PromptDataset carries its reward functions; do not pass "
                             "reward_funcs or reward_fn with it")
        agent.env_id = None
        agent.env = env
        agent.rewards = env.rewards
    elif _is_dataset(env):
        if reward_funcs is None:
            raise ValueError("training on a dataset needs reward_funcs=[...] (TRL's convention: "
                             "fn(prompts, completions, completion_ids, **columns) -> list)")
        agent.env_id = None
        agent.env = PromptDataset(env, reward_funcs, reward_weights, on_failure=cfg.reward_failures)
        agent.rewards = agent.env.rewards
    elif tools is not None or is_multiturn_env(env):  # episodes of many turns, or tool calls
        agent.env_id = env if isinstance(env, str) else None
        agent.multiturn = MultiTurn(agent, env, tools, batch_cls,
                                    has_rewards=reward_fn is not None or reward_funcs is not None)
        agent.env, agent.rewards = agent.multiturn.pool, None
    else:
        agent.env_id = env if isinstance(env, str) else None
        agent.env = _text_env(env)
        if reward_funcs is not None and reward_fn is not None:
            raise ValueError("give reward_fn (one completion, target) or reward_funcs (TRL's "
                             "convention), not both")
        agent.reward_fn = reward_fn or agent.env.task.reward
        agent.rewards = RewardFunctions(
            reward_funcs if reward_funcs is not None else TaskReward(agent.reward_fn), reward_weights,
            on_failure=cfg.reward_failures)
        agent.rewards.check_signatures(["target"])
    if agent.multiturn is None and (cfg.response_prefix or cfg.tool_response_prefix is not None):
        raise ValueError("response_prefix and tool_response_prefix apply to multi-turn envs (text "
                         "observations and actions) only; for a prompt task, put the opening of "
                         "the answer in the prompt")


def checked_rewards(agent: Any, step: int, scored: Any, n_completions: int) -> Tensor:
    """The (B,) float32 rewards of GRPO step ``step``, NaN where skipped: warns (counting in
    ``agent.skipped_rewards``) when some completions got no reward, stops when every one failed."""
    rewards = torch.as_tensor(scored.rewards, dtype=torch.float32)
    skipped = int(torch.isnan(rewards).sum())
    if skipped == n_completions and scored.failures:
        raise RuntimeError(f"GRPO step {step}: every completion was skipped because the reward "
                           f"functions failed (first: {scored.failures[0]}); fix them, training "
                           "on no rewards learns nothing")
    if skipped or scored.failures:
        agent.skipped_rewards += skipped
        first = f" (first: {scored.failures[0]})" if scored.failures else ""
        warnings.warn(f"GRPO step {step}: {skipped} of {n_completions} completions skipped "
                      f"because no reward function rewarded them{first}; "
                      f"{agent.skipped_rewards} skipped so far", RuntimeWarning, stacklevel=3)
    return rewards


def score(agent: Any, prompts: list, texts: list[str], ids: Tensor, mask: Tensor, targets: list):
    """Rewards of a batch through ``agent``'s reward functions (TRL's convention): the
    scored batch of :mod:`maxent.envs.prompts` (``rewards``, ``per_function``, ``failures``)."""
    completion_ids = [row[m].tolist() for row, m in zip(ids, mask.bool())]
    update_trainer_state(agent)
    if hasattr(agent.env, "score") and hasattr(agent.env, "rewards"):  # a dataset
        return agent.env.score(prompts, texts, completion_ids, targets, agent.trainer_state)
    return agent.rewards(prompts, texts, completion_ids, {"target": list(targets)},
                         agent.trainer_state)


def update_trainer_state(agent: Any) -> None:
    """Bring ``agent.trainer_state`` (what reward functions and TRL callbacks read) up to date."""
    state, cfg = agent.trainer_state, agent.config
    state.global_step = global_step(agent)
    state.num_completions = agent.num_completions
    state.max_steps = max(state.max_steps, state.global_step)
    state.train_batch_size = cfg.prompts_per_step * cfg.group_size
    prompts_per_epoch = len(agent.env) if hasattr(agent.env, "__len__") else None
    if prompts_per_epoch:
        # transformers' num_update_steps_per_epoch under TRL's RepeatSampler, which keeps whole
        # generation batches only; each gives num_epochs optimiser steps.
        updates_per_epoch = max(prompts_per_epoch // cfg.prompts_per_step, 1) * cfg.num_epochs
        state.epoch = state.global_step / updates_per_epoch
        state.num_train_epochs = math.ceil(state.max_steps / updates_per_epoch)


def global_step(agent: Any) -> int:
    """TRL's ``global_step``: optimiser steps taken, ``num_epochs`` (TRL's ``num_iterations``) per
    GRPO step, whose one generation batch each of them reuses."""
    return agent.num_timesteps * agent.config.num_epochs


def completions_table(rollout: Any, reward_names: Sequence[str], rows: int = 8,
                      extras: dict[str, list] | None = None) -> str:
    """A Markdown table of the first ``rows`` completions of a
    :class:`~maxent.agents.grpo_batch.Rollout`: prompt, completion, total reward, each reward
    function's (TRL's ``log_completions``) and the columns reward functions added with
    ``log_extra``."""
    def cell(value: Any) -> str:
        text = value[-1]["content"] if isinstance(value, list) and value and isinstance(value[-1], dict) \
            else str(value)
        return text.replace("|", "\\|").replace("\n", "<br>")[:300]

    names = list(reward_names)
    extras = extras or {}
    head = "| prompt | completion | reward |" + "".join(f" {n} |" for n in [*names, *extras])
    lines = [head, "|" + "---|" * (3 + len(names) + len(extras))]
    for i in range(min(rows, len(rollout.texts))):
        prompt = rollout.prompts[i] if rollout.prompts is not None else ""
        terms = "" if rollout.reward_terms is None else "".join(
            f" {float(v):.3f} |" for v in rollout.reward_terms[i])
        extra = "".join(f" {cell(v[i]) if i < len(v) else ''} |" for v in extras.values())
        lines.append(f"| {cell(prompt)} | {cell(rollout.texts[i])} | {float(rollout.rewards[i]):.3f} |"
                     + terms + extra)
    return "\n".join(lines)


def _is_dataset(env: Any) -> bool:
    """A dataset of prompts (not a text task): a datasets.Dataset, a list of dicts, a data file."""
    if isinstance(env, (str, Path)):
        return Path(env).suffix.lower() in (".jsonl", ".json", ".parquet", ".csv")
    if hasattr(env, "column_names") and hasattr(env, "__getitem__"):
        return True
    return isinstance(env, (list, tuple)) and bool(env) and isinstance(env[0], dict)


def _text_env(env: Any):
    """The unwrapped text task env behind an id or an instance."""
    if isinstance(env, str):
        import gymnasium

        import maxent.envs  # noqa: F401  (registers the maxent/ ids)

        env = gymnasium.make(env)
    inner = getattr(env, "unwrapped", env)
    if not (hasattr(inner, "sample_prompts") and hasattr(inner, "task")):
        raise ValueError(f"GRPO needs a text task env with sample_prompts() and task (see "
                         f"maxent.envs.text), got {type(inner).__name__}")
    return inner
