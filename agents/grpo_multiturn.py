"""Multi-turn GRPO: the step :class:`maxent.agents.grpo.GRPO` delegates to when its env is a
Gymnasium text env whose episodes last many turns (``Text`` observations and actions). G
episodes per group start from one ``reset(seed=...)``, are played by
:func:`maxent.llm.rollout.collect_episodes` (optionally with tools), and train with GRPO's loss on
their transcripts, the loss mask covering exactly the model's tokens.

Credit assignment (``GRPOConfig.turn_credit``):

- ``"episode"``: outcome supervision (Shao et al. 2024, "DeepSeekMath", Sec. 4.1.2) on the
  episode return: every generated token of episode i gets (R_i - mean_g R) / (std_g R + 1e-6).
- ``"process"``: process supervision (Sec. 4.1.3) with the env's per-turn rewards as the step
  rewards: every env-step reward of the group is normalised by the mean and std of all the
  group's step rewards, and a token of turn t gets the sum of its episode's normalised rewards
  from turn t on (a group-normalised return-to-go).

``scale_rewards=False`` keeps the centring and drops the division (Dr.GRPO).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maxent.llm.forward import token_log_probs
from maxent.llm.rollout import (
    ChatFormat,
    Episode,
    RolloutLimits,
    check_text_spaces,
    collect_episodes,
    transcript_batch,
)
from maxent.llm.tools import ToolBox
from maxent.training import logging as mlog

__all__ = ["CREDITS", "MultiTurn", "episode_advantages", "is_multiturn_env",
           "process_advantages"]

CREDITS = ("episode", "process")

RETURN = "multiturn/episode_return"
TURNS = "multiturn/turns_per_episode"
TOKENS_PER_TURN = "multiturn/tokens_per_turn"
INVALID = "multiturn/invalid_actions"
TOOL_CALLS = "multiturn/tool_calls"
TOOL_ERRORS = "multiturn/tool_errors"
CONTEXT_TRUNCATED = "multiturn/context_truncated"
TURN_LIMIT = "multiturn/turn_limit"
TURN_ENTROPY = "entropy/turn_{}"


def _unwrapped(env: Any) -> Any:
    return getattr(env, "unwrapped", env)


def is_multiturn_env(env: Any) -> bool:
    """True for a Gymnasium env, id or vector env that is not one of the single-turn text tasks
    (those have ``sample_prompts`` and ``task``, :mod:`maxent.envs.text`)."""
    if isinstance(env, str):
        import gymnasium

        import maxent.envs  # noqa: F401  (registers the maxent/ ids)

        env = gymnasium.make(env)
        try:
            return is_multiturn_env(env)
        finally:
            env.close()
    inner = _unwrapped(env)
    if hasattr(inner, "sample_prompts") and hasattr(inner, "task"):
        return False
    return hasattr(env, "reset") and hasattr(env, "step")


def _prototype(env: Any) -> tuple[Any, str]:
    """A single env to copy and its name, from an id, an env or a vector env."""
    import gymnasium

    if isinstance(env, str):
        return gymnasium.make(env), env
    name = env.spec.id if getattr(env, "spec", None) is not None else type(_unwrapped(env)).__name__
    if hasattr(env, "num_envs") and hasattr(env, "single_observation_space"):
        if hasattr(env, "envs"):
            return copy.deepcopy(env.envs[0]), name
        if getattr(env, "spec", None) is not None:
            return gymnasium.make(env.spec.id, **env.spec.kwargs), name
        raise ValueError(f"cannot copy single episodes out of the vector env {name}: pass its id "
                         "or one (single) env instance; GRPO builds the G copies of each group "
                         "itself")
    return env, name


def episode_advantages(returns: Tensor, group_size: int, scale: bool = True) -> Tensor:
    """(B,) group-normalised episode returns (outcome supervision); groups of fewer than two
    episodes get 0. Standard deviation unbiased, as GRPO's single-turn advantage."""
    r = returns.reshape(-1, group_size).double()
    centred = r - r.mean(-1, keepdim=True)
    if scale:
        std = r.std(-1, keepdim=True) if group_size > 1 else torch.zeros_like(r[:, :1])
        centred = centred / (std + 1e-6)
    return centred.reshape(-1).float() if group_size > 1 else torch.zeros(len(returns))


def process_advantages(episodes: Sequence[Episode], group_size: int, max_turns: int,
                       scale: bool = True) -> Tensor:
    """(B, max_turns) per-turn advantages (process supervision): each env-step reward normalised
    by its group's step rewards, summed from each turn to the episode's end; turns that stepped
    no env (tool calls) carry no reward of their own but receive the later ones."""
    out = torch.zeros(len(episodes), max_turns, dtype=torch.float64)
    for start in range(0, len(episodes), group_size):
        group = episodes[start:start + group_size]
        steps = np.array([r for ep in group for r, s in zip(ep.rewards, ep.env_step) if s], float)
        if len(steps) < 2:
            continue
        mean = steps.mean()
        std = steps.std(ddof=1) if scale else 0.0
        for b, ep in enumerate(group, start):
            normed = [(r - mean) / (std + 1e-6) if scale else r - mean
                      for r, s in zip(ep.rewards, ep.env_step)]
            normed = [v if s else 0.0 for v, s in zip(normed, ep.env_step)]
            to_go = np.cumsum(normed[::-1])[::-1]
            out[b, :len(to_go)] = torch.as_tensor(to_go.copy())
    return out.float()


class _EnvPool:
    """Copies of one env, built as needed and reused (reset every episode)."""

    def __init__(self, env: Any):
        self.prototype, self.name = _prototype(env)
        check_text_spaces(self.prototype, self.name)
        self.copies: list[Any] = []

    def take(self, n: int) -> list[Any]:
        while len(self.copies) < n:
            self.copies.append(copy.deepcopy(self.prototype))
        return self.copies[:n]

    def close(self) -> None:
        for env in [self.prototype, *self.copies]:
            if hasattr(env, "close"):
                env.close()


class MultiTurn:
    """The multi-turn rollout, update and evaluation of a :class:`~maxent.agents.grpo.GRPO`
    agent (see the module docstring). Built inside ``GRPO.__init__``; reads the agent's model,
    sampler, tokenizer and config when it runs.

    Args:
        agent: the GRPO agent.
        env: a Gymnasium env id, env or vector env with ``Text`` observation and action spaces.
        tools: functions the model may call (:class:`maxent.llm.tools.ToolBox`), or None.
        batch_type: GRPO's ``Batch`` (the update's input).
        has_rewards: reward functions were given (a multi-turn env gives its own rewards).

    ``episode_scorer``, None unless set after construction, is ``fn(episodes, envs) -> (B,)``:
    rewards of whole transcripts added to each episode's last turn (TRL's reward functions, which
    score a finished tool loop and may read the environment objects, :mod:`maxent.trl`); its
    ``metrics`` dict, when it has one, joins the step's log row.
    """

    def __init__(self, agent: Any, env: Any, tools: Sequence[Callable] | None, batch_type: type,
                 has_rewards: bool = False):
        cfg = agent.config
        if has_rewards:
            raise ValueError("a multi-turn env gives its own rewards: drop reward_fn/reward_funcs "
                             "(score in the env's step, or in an environment_factory's get_reward)")
        if cfg.intervention == "seed":
            raise ValueError("intervention='seed' clusters single answers; it does not apply to "
                             "multi-turn episodes: pick another intervention")
        self.agent, self.batch_type = agent, batch_type
        self.pool = _EnvPool(env)
        self.toolbox = ToolBox(tools) if tools else None
        self.limits = RolloutLimits(max_turns=cfg.max_turns, max_new_tokens=cfg.max_new_tokens,
                                    max_episode_tokens=cfg.max_episode_tokens,
                                    max_tool_calls=cfg.max_tool_calls,
                                    temperature=cfg.temperature, top_p=cfg.top_p)
        self._format: ChatFormat | None = None
        self.last_episodes: list[Episode] = []
        self.episode_scorer: Callable[[list[Episode], list[Any]], Sequence[float]] | None = None

    @property
    def format(self) -> ChatFormat:
        """The chat rendering, built on first use (the tokenizer exists by then)."""
        if self._format is None:
            agent, cfg = self.agent, self.agent.config
            context = getattr(agent.policy.config, "max_position_embeddings", None)
            if context is not None and cfg.max_episode_tokens > context:
                raise ValueError(f"max_episode_tokens ({cfg.max_episode_tokens}) exceeds the "
                                 f"model's context window ({context} positions); lower it")
            self._format = ChatFormat(agent.tokenizer, agent.sampler.eos_ids if hasattr(
                agent.sampler, "eos_ids") else {agent.tokenizer.eos_token_id},
                chat_template=cfg.chat_template, system_prompt=cfg.system_prompt,
                toolbox=self.toolbox, response_prefix=cfg.response_prefix,
                tool_response_prefix=cfg.tool_response_prefix)
        return self._format

    def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------------- rollout

    def rollout(self, step: int) -> list[Episode]:
        """This process's groups of GRPO step ``step``: ``prompts_per_step`` reset seeds (over all
        processes), ``group_size`` episodes each."""
        agent, cfg = self.agent, self.agent.config
        n_groups = cfg.prompts_per_step // agent.world_size
        seeds = np.random.default_rng([agent.seed, step, agent.rank, 0]).integers(
            2**31, size=n_groups).tolist()
        envs = self.pool.take(n_groups * cfg.group_size)
        return self._scored(collect_episodes(agent.sampler, self.format, envs, seeds, self.limits,
                                             toolbox=self.toolbox,
                                             sample_seed=agent._step_seed(step, 1)), envs)

    def _scored(self, episodes: list[Episode], envs: list[Any]) -> list[Episode]:
        """``episodes`` with ``episode_scorer``'s rewards added to their last turns."""
        if self.episode_scorer is None:
            return episodes
        extra = [float(r) for r in self.episode_scorer(episodes, envs)]
        if len(extra) != len(episodes) or not all(math.isfinite(r) for r in extra):
            raise ValueError(f"episode_scorer must return {len(episodes)} finite rewards, one per "
                             f"episode; got {extra!r:.120}")
        for ep, reward in zip(episodes, extra):
            ep.rewards[-1] += reward
        return episodes

    def evaluate(self, n_episodes: int = 20, seed: int = 10_000,
                 deterministic: bool = True) -> float:
        """Mean return of ``n_episodes`` episodes on reset seeds training never draws."""
        seeds = np.random.default_rng([seed, 1]).integers(2**31, size=n_episodes).tolist()
        envs = self.pool.take(n_episodes)
        episodes = self._scored(collect_episodes(self.agent.sampler, self.format, envs, seeds,
                                                 self.limits, toolbox=self.toolbox,
                                                 sample_seed=seed, greedy=deterministic), envs)
        return float(np.mean([ep.episode_return for ep in episodes]))

    # ------------------------------------------------------------------- update

    def advantages(self, episodes: Sequence[Episode], turn_index: Tensor) -> Tensor:
        """(B,) or (B, T) advantages by ``turn_credit``."""
        cfg = self.agent.config
        # scale_rewards: True / "group" divide by the group's std, False / "none" do not; "batch"
        # divides the group-centred values by the batch's std.
        scale = cfg.scale_rewards in (True, "group")
        if cfg.turn_credit == "episode":
            returns = torch.tensor([ep.episode_return for ep in episodes])
            adv = episode_advantages(returns, cfg.group_size, scale)
        else:
            per_turn = process_advantages(episodes, cfg.group_size, cfg.max_turns, scale)
            adv = per_turn.gather(1, turn_index.clamp(min=0)) * (turn_index >= 0)
        if cfg.scale_rewards == "batch" and adv.numel() > 1:
            adv = adv / (adv.std() + 1e-6)
        return adv

    @torch.no_grad()
    def prepare(self, episodes: Sequence[Episode]) -> tuple[Any, Tensor, Tensor]:
        """GRPO's ``Batch`` of the transcripts, the (B, T) turn of each generated token and the
        (B, T) generated-token mask before truncated episodes are masked."""
        agent, cfg = self.agent, self.agent.config
        rows = transcript_batch(episodes, agent.tokenizer.pad_token_id)
        dev = agent.device
        keep = torch.tensor([not (cfg.mask_truncated and ep.context_truncated) for ep in episodes])
        loss_mask = (rows.loss_mask * keep[:, None]).to(dev)
        advantages = self.advantages(episodes, rows.turn_index).to(dev)
        ids, attention, position = (rows.input_ids.to(dev), rows.attention_mask.to(dev),
                                    rows.position_ids.to(dev))
        T = loss_mask.shape[1]
        slices = agent._micro_batches(len(ids))
        fused = cfg.num_epochs == 1 and len(slices) == 1 and agent.ref_model is None
        old_lp = old_ent = ref_lp = None
        if not fused:
            sharing = cfg.group_size if cfg.share_prompt_pass else 1
            parts = [token_log_probs(agent.policy, ids[mb], attention[mb], position[mb], T,
                                     cfg.temperature, group_size=sharing) for mb in slices]
            old_lp, old_ent = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            if agent.ref_model is not None:
                ref_lp = torch.cat([token_log_probs(agent.ref_model, ids[mb], attention[mb],
                                                    position[mb], T, cfg.temperature,
                                                    with_entropy=False, group_size=sharing)[0]
                                    for mb in slices])
        # The engine's (vLLM's) log-probs of the sampled tokens, for GRPO's importance correction
        # of the sampler/trainer mismatch, as in the single-turn step.
        sampler_lp = None
        if rows.sampler_log_probs is not None and cfg.vllm_importance_sampling:
            sampler_lp = rows.sampler_log_probs.to(dev)
        batch = self.batch_type(ids, attention, position, loss_mask, advantages, old_lp, old_ent,
                                ref_lp, None, None, sampler_lp)
        if not fused:
            agent._select(batch)
        return batch, rows.turn_index.to(dev), rows.loss_mask.to(dev)

    def train_step(self) -> dict[str, float]:
        """One multi-turn GRPO step: episodes, advantages, update, entropy controller; returns the
        log row (also kept in ``agent.last_metrics``)."""
        from maxent.entropy.law import logprob_advantage_covariance

        agent, cfg = self.agent, self.agent.config
        start = time.perf_counter()
        episodes = self.rollout(agent.num_timesteps)
        self.last_episodes = episodes
        batch, turn_index, generated = self.prepare(episodes)
        metrics = agent.update(batch)
        token_entropy = agent._mean_over_processes(
            (batch.old_entropy * generated).sum() / generated.sum().clamp(min=1))
        agent.entropy_controller.update(entropy=token_entropy)
        returns = [ep.episode_return for ep in episodes]
        mean_return = agent._mean_over_processes(torch.tensor(float(np.mean(returns))))
        turns = sum(ep.turns for ep in episodes)
        row: dict[str, Any] = {
            mlog.REWARD: mean_return, RETURN: mean_return,
            TURNS: turns / len(episodes),
            TOKENS_PER_TURN: sum(sum(ep.reply_tokens) for ep in episodes) / max(turns, 1),
            INVALID: float(sum(ep.invalid for ep in episodes)),
            TOOL_CALLS: float(sum(ep.tool_calls for ep in episodes)),
            TOOL_ERRORS: float(sum(ep.tool_errors for ep in episodes)),
            CONTEXT_TRUNCATED: float(sum(ep.context_truncated for ep in episodes)),
            TURN_LIMIT: float(sum(ep.turn_limit for ep in episodes)),
            "entropy/token": token_entropy,
            "covariance/logp_advantage": logprob_advantage_covariance(
                batch.old_log_probs, batch.advantages, batch.loss_mask),
            "temperature/entropy_coef": agent.entropy_controller.value,
            "train/loss": metrics.pop("loss"),
        }
        for k in range(cfg.max_turns):
            in_turn = generated * (turn_index == k)
            if in_turn.sum() > 0:
                row[TURN_ENTROPY.format(k)] = (batch.old_entropy * in_turn).sum() / in_turn.sum()
        if "grad_norm" in metrics:
            row["train/grad_norm"] = metrics.pop("grad_norm")
        row.update(getattr(self.episode_scorer, "metrics", None) or {})
        for name, value in metrics.items():
            row[name if "/" in name else f"train/{name}"] = value
        every = cfg.log_completions_every
        if every and agent.num_timesteps % every == 0 and agent.logger is not None:
            agent.logger.text("transcripts", self.transcripts(episodes), agent.num_timesteps + 1)
        agent.episode_returns.extend(returns)
        agent.episode_lengths.extend(ep.turns for ep in episodes)
        agent.num_timesteps += 1
        agent.num_completions += len(episodes) * agent.world_size
        row["time/step_seconds"] = time.perf_counter() - start
        agent.last_metrics = {k: float(v) for k, v in row.items()}
        agent._update_trainer_state()
        if agent.num_timesteps % cfg.log_interval == 0:  # what TRL callbacks and train() read
            agent.trainer_state.log_history.append({**agent.last_metrics,
                                                    "step": agent.trainer_state.global_step})
        loss = agent.last_metrics["train/loss"]
        if not math.isfinite(loss):
            raise FloatingPointError(f"the GRPO loss became {loss} at step {agent.num_timesteps}: "
                                     "training diverged; lower learning_rate. Checkpoints written "
                                     "before are intact.")
        if any(ep.context_truncated for ep in episodes) and agent.num_timesteps == 1:
            budget = self.limits.max_completion_tokens
            warnings.warn(f"{int(row[CONTEXT_TRUNCATED])} of {len(episodes)} episodes outgrew "
                          f"max_episode_tokens={cfg.max_episode_tokens}"
                          + (f" or the completion budget of {budget} tokens" if budget else "")
                          + " and were cut"
                          + (" (masked out of the loss)" if cfg.mask_truncated else "")
                          + "; raise it if the model's context allows", RuntimeWarning,
                          stacklevel=3)
        return agent.last_metrics

    def transcripts(self, episodes: Sequence[Episode], rows: int = 4) -> str:
        """A Markdown table of the first ``rows`` transcripts and their returns."""
        tokenizer = self.agent.tokenizer
        lines = ["| transcript | return | turns |", "|---|---|---|"]
        for ep in episodes[:rows]:
            text = tokenizer.decode(ep.ids, skip_special_tokens=False)
            text = text.replace("|", "\\|").replace("\n", "<br>")[-1500:]
            lines.append(f"| {text} | {ep.episode_return:.3f} | {ep.turns} |")
        return "\n".join(lines)
