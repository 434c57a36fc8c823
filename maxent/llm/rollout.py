"""Multi-turn rollouts of a language model in text environments: each episode is ONE token
sequence in which the model's replies are kept exactly as sampled and every observation (or tool
result) is appended as its own encoded delta, so the sequence trained on is the sequence the model
saw, with a loss mask on exactly the generated tokens (no re-tokenisation drift). One sampler call
per turn serves every live episode of every group.

Environments are duck-typed (``reset(seed=...) -> (str, info)``, ``step(str) -> (str, reward,
terminated, truncated, info)``); this module imports no agent and no environment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maxent.llm.tools import ToolBox, ToolResult, find_call

__all__ = ["ChatFormat", "Episode", "RolloutLimits", "TranscriptBatch", "check_text_spaces",
           "collect_episodes", "transcript_batch"]

_SENTINEL = "\x00MAXENT\x00"


def check_text_spaces(env: Any, name: str) -> None:
    """Raise a one-line ``ValueError`` unless ``env``'s observation and action spaces are
    ``gymnasium.spaces.Text`` (for a vector env: its single spaces)."""
    from gymnasium import spaces

    obs = getattr(env, "single_observation_space", None) or getattr(env, "observation_space", None)
    act = getattr(env, "single_action_space", None) or getattr(env, "action_space", None)
    if not (isinstance(obs, spaces.Text) and isinstance(act, spaces.Text)):
        raise ValueError(
            f"{name} has observation space {obs} and action space {act}; a language model needs "
            "gymnasium.spaces.Text for both: wrap the env in maxent.envs.text_wrappers.TextActions "
            "(renders observations as text, parses a named action from the reply) or your own "
            "gymnasium ObservationWrapper/ActionWrapper pair")


@dataclass
class RolloutLimits:
    """Bounds of one batch of episodes.

    Attributes:
        max_turns: model replies per episode; an episode still running after them is cut
            (``turn_limit``), like a time limit, and scored on what it earned.
        max_new_tokens: tokens per reply.
        max_episode_tokens: the context window of one transcript (prompt, replies, observations);
            an episode that would outgrow it is cut (``context_truncated``).
        max_tool_calls: tool calls per episode; later calls are answered with an error message.
        temperature: sampling temperature.
        top_p: nucleus mass.
        max_completion_tokens: optional budget of everything after the first prompt (replies and
            observations of all turns), TRL's ``max_completion_length`` in its tool loop; an
            episode that would outgrow it is cut as one outgrowing ``max_episode_tokens``.
    """

    max_turns: int = 8
    max_new_tokens: int = 32
    max_episode_tokens: int = 512
    max_tool_calls: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_new_tokens", "max_episode_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RolloutLimits.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tool_calls < 0:
            raise ValueError(f"RolloutLimits.max_tool_calls must be >= 0, got "
                             f"{self.max_tool_calls}")
        if self.max_completion_tokens is not None and self.max_completion_tokens < 1:
            raise ValueError(f"RolloutLimits.max_completion_tokens must be >= 1 or None, got "
                             f"{self.max_completion_tokens}")

    def room(self, ep: Episode) -> int:
        """Tokens ``ep`` may still grow by within the context window and the completion budget."""
        room = self.max_episode_tokens - len(ep.ids)
        if self.max_completion_tokens is not None:
            room = min(room, ep.prompt_length + self.max_completion_tokens - len(ep.ids))
        return room


class ChatFormat:
    """Renders an episode's messages as token ids: the first observation as a whole prompt, every
    later message as a delta appended after the model's reply.

    With a chat template (``chat_template`` True, or None and the tokenizer has one) a delta is
    the template's text between a rendered conversation and the same conversation with one more
    message and the generation prompt; the template must render conversations as prefixes of their
    continuations (checked once). When the reply ended without the end-of-turn text the template
    puts after an assistant message, that text is added to the delta.

    The plain fallback (tokenizers without a template, e.g. the tiny character one): the prompt is
    ``[system + "\\n"] [tool descriptions] observation + "\\n"``; a reply ends with eos (added when
    the model did not write one); a user message is ``content + "\\n"``, a tool result
    ``"Tool: " + content + "\\n"``.

    A response prefix is text every reply starts with: its tokens close the prompt or delta the
    reply continues (context, never trained on), and the env or tool parser reads prefix + reply.
    It is how a small model that does not yet write a task's format is given it (the reply then
    only has to finish it), as a prefilled assistant turn is.

    Args:
        tokenizer: the model's tokenizer.
        eos_ids: token ids that end a reply.
        chat_template: see above.
        system_prompt: an optional system message.
        toolbox: tools described to the model (through the template's ``tools`` argument when its
            template handles tools, else as text in the system message or prompt).
        response_prefix: the prefix of every reply (``""``: none).
        tool_response_prefix: the prefix of a reply that answers a tool result (``None``: the
            same as ``response_prefix``), so a task can open its first turn with a tool call and
            the turn after the result with the answer.
    """

    def __init__(self, tokenizer, eos_ids: set[int], *, chat_template: bool | None = None,
                 system_prompt: str | None = None, toolbox: ToolBox | None = None,
                 response_prefix: str = "", tool_response_prefix: str | None = None):
        for name, value in (("response_prefix", response_prefix),
                            ("tool_response_prefix", tool_response_prefix)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {type(value).__name__}")
        self.prefixes = {"user": response_prefix,
                         "tool": response_prefix if tool_response_prefix is None
                         else tool_response_prefix}
        self.tokenizer, self.eos_ids = tokenizer, set(eos_ids)
        template = getattr(tokenizer, "chat_template", None)
        self.use_template = bool(template) if chat_template is None else bool(chat_template)
        if self.use_template and not template:
            raise ValueError("chat_template=True but the tokenizer has no chat template; pass "
                             "chat_template=False (the plain format) for a base model")
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(eos_ids)
        self._kwargs: dict[str, Any] = {}
        system = system_prompt or ""
        if toolbox:
            if self.use_template and "tools" in str(template):
                self._kwargs["tools"] = toolbox.schemas
            else:
                system = (system + "\n" if system else "") + toolbox.describe()
        self.system = system
        self._deltas: dict[str, tuple[str, str, str]] = {}
        # Encoded once: every turn of every episode appends them.
        self._prefix_tokens = {role: self._encode(text) if text else []
                               for role, text in self.prefixes.items()}

    def _render(self, messages: list[dict], generation: bool) -> str:
        if self.system:
            messages = [{"role": "system", "content": self.system}, *messages]
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation, **self._kwargs)

    def _encode(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def prefix(self, role: str) -> str:
        """The text a reply to a message of ``role`` starts with."""
        return self.prefixes["tool" if role == "tool" else "user"]

    def _prefix_ids(self, role: str) -> list[int]:
        return list(self._prefix_tokens["tool" if role == "tool" else "user"])

    def first(self, observation: str) -> list[int]:
        """The prompt of the first turn (ending with the response prefix, if any)."""
        if self.use_template:
            prompt = self._encode(self._render([{"role": "user", "content": observation}], True))
        else:
            head = self.system + "\n" if self.system and not self.system.endswith("\n") \
                else self.system
            prompt = self._encode(head + observation + "\n", special=True)
        return prompt + self._prefix_ids("user")

    def _template_delta(self, role: str) -> tuple[str, str, str]:
        """(end-of-turn text, text before the content, text after it) of a message of ``role``."""
        if role not in self._deltas:
            base = [{"role": "user", "content": "u"}]
            asked = self._render(base, True)
            replied = self._render([*base, {"role": "assistant", "content": "a"}], False)
            full = self._render([*base, {"role": "assistant", "content": "a"},
                                 {"role": role, "content": _SENTINEL}], True)
            if not (replied.startswith(asked + "a") and full.startswith(replied)):
                raise ValueError("this chat template does not render a conversation as a prefix of "
                                 "its continuation, so turns cannot be appended as deltas; pass "
                                 "chat_template=False (the plain format) or a template that does")
            before, after = full[len(replied):].split(_SENTINEL)
            self._deltas[role] = (replied[len(asked) + 1:], before, after)
        return self._deltas[role]

    def delta(self, role: str, content: str, reply_closed: bool,
              last_token: int | None = None) -> list[int]:
        """Tokens appended after a reply: the end of the reply's turn where the model did not
        write it, then the message of ``role`` ("user" or "tool") and the generation prompt.
        ``reply_closed``: the reply ended with an eos token; ``last_token``: that token (default
        the tokenizer's eos). Models with several eos ids can stop on one that is not the
        template's end of turn (Qwen2.5's ``<|endoftext|>`` beside ``<|im_end|>``): then the
        whole end of turn is still added, so the next message starts as the template starts it.
        The response prefix of ``role`` closes the delta."""
        return self._message_delta(role, content, reply_closed, last_token) + self._prefix_ids(role)

    def _message_delta(self, role: str, content: str, reply_closed: bool,
                       last_token: int | None) -> list[int]:
        if not self.use_template:
            label = "Tool: " if role == "tool" else ""
            return ([] if reply_closed else [self.eos_id]) + self._encode(label + content + "\n")
        if role == "tool":
            try:
                close, before, after = self._template_delta("tool")
            except Exception:  # noqa: BLE001  (templates without a tool role: a user message)
                close, before, after = self._template_delta("user")
                content = "Tool result: " + content
        else:
            close, before, after = self._template_delta("user")
        if reply_closed:
            eos_text = self.tokenizer.decode([self.eos_id if last_token is None else last_token])
            close = close[len(eos_text):] if close.startswith(eos_text) else close
        return self._encode(close + before + content + after)


@dataclass
class Episode:
    """One episode's transcript and what happened in it.

    ``ids`` is the whole transcript; ``generated[k]`` marks the model's tokens and ``turn_of[k]``
    the turn a token belongs to (-1 for the first prompt; an observation's tokens belong to the
    turn they answer). ``rewards[t]`` is turn t's env reward (0 on a tool call, which does not
    step the env) and ``env_step[t]`` whether turn t stepped the env. ``sampler_log_probs[k]`` is
    the sampler's log-prob of token k (0 on tokens it did not generate) where the sampler reports
    them (vLLM, for GRPO's sampler/trainer importance correction), else None. ``replies[t]`` is
    what the env read: the response prefix (``reply_prefix`` while the turn is pending, part of the
    transcript's context) followed by the decoded reply.
    """

    group: int
    seed: int
    ids: list[int] = field(default_factory=list)
    generated: list[bool] = field(default_factory=list)
    turn_of: list[int] = field(default_factory=list)
    prompt_length: int = 0
    replies: list[str] = field(default_factory=list)
    reply_tokens: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    env_step: list[bool] = field(default_factory=list)
    tool_calls: int = 0
    tool_errors: int = 0
    invalid: int = 0
    terminated: bool = False
    truncated: bool = False
    context_truncated: bool = False
    turn_limit: bool = False
    done: bool = False
    infos: list[dict] = field(default_factory=list)
    sampler_log_probs: list[float] | None = None
    reply_prefix: str = ""

    @property
    def turns(self) -> int:
        return len(self.replies)

    @property
    def episode_return(self) -> float:
        return float(sum(self.rewards))

    def _append(self, tokens: Sequence[int], generated: bool, turn: int,
                log_probs: Sequence[float] | None = None) -> None:
        if log_probs is not None and self.sampler_log_probs is None:
            self.sampler_log_probs = [0.0] * len(self.ids)
        if self.sampler_log_probs is not None:
            self.sampler_log_probs.extend(
                [float(x) for x in log_probs] if log_probs is not None else [0.0] * len(tokens))
        self.ids.extend(int(t) for t in tokens)
        self.generated.extend([generated] * len(tokens))
        self.turn_of.extend([turn] * len(tokens))


def _env_name(env: Any) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(getattr(env, "unwrapped", env)).__name__


def collect_episodes(sampler, fmt: ChatFormat, envs: Sequence[Any], seeds: Sequence[int],
                     limits: RolloutLimits, *, toolbox: ToolBox | None = None,
                     sample_seed: int = 0, greedy: bool = False) -> list[Episode]:
    """Play ``len(envs)`` episodes, ``len(envs) // len(seeds)`` per group; the episodes of group
    p all start from ``reset(seed=seeds[p])``. Each turn every live episode's transcript goes to
    ONE ``sampler.generate`` call; a reply with a tool call (``toolbox``) is answered with the
    tool's result, any other reply is the env's action.

    Raises:
        ValueError: an observation that is not a string, or a reward that is not a finite number.
        RuntimeError: an env raised; the message names the env, the episode and the turn (turns
            count from 0, as ``Episode.turn_of`` does).
    """
    if not seeds or len(envs) % len(seeds):
        raise ValueError(f"{len(envs)} envs do not split into {len(seeds)} groups of equal size")
    G = len(envs) // len(seeds)
    episodes = [Episode(group=i // G, seed=int(seeds[i // G])) for i in range(len(envs))]

    def fail(i: int, turn: int, what: str, err: BaseException) -> RuntimeError:
        return RuntimeError(f"env {_env_name(envs[i])} raised in {what} of episode {i} (group "
                            f"{i // G}, reset seed {episodes[i].seed}) at turn {turn}: "
                            f"{type(err).__name__}: {err}")

    for i, (env, ep) in enumerate(zip(envs, episodes)):
        try:
            obs, info = env.reset(seed=ep.seed)
        except Exception as err:
            raise fail(i, 0, "reset", err) from err
        if not isinstance(obs, str):
            raise ValueError(f"env {_env_name(env)} returned a {type(obs).__name__} observation "
                             "from reset; a text env returns str")
        prompt = fmt.first(obs)
        if len(prompt) + 1 > limits.max_episode_tokens:
            raise ValueError(f"the first observation of env {_env_name(env)} takes {len(prompt)} "
                             f"tokens, more than max_episode_tokens={limits.max_episode_tokens} "
                             "allows; raise it (within the model's context) or shorten the prompt")
        ep._append(prompt, False, -1)
        ep.prompt_length = len(prompt)
        ep.reply_prefix = fmt.prefix("user")
        ep.infos.append(dict(info))

    turn = 0
    while True:
        live = [i for i, ep in enumerate(episodes) if not ep.done]
        if not live:
            break
        out = sampler.generate([episodes[i].ids for i in live],
                               max_new_tokens=limits.max_new_tokens,
                               temperature=limits.temperature, top_p=limits.top_p, greedy=greedy,
                               seed=int(np.random.default_rng([sample_seed, turn]).integers(2**62)))
        sampled_lp = getattr(out, "log_probs", None)
        for k, i in enumerate(live):
            ep, env = episodes[i], envs[i]
            reply = out.ids[k][out.mask[k]].tolist()
            room = limits.room(ep)
            lp = None if sampled_lp is None else sampled_lp[k][out.mask[k]].tolist()[:room]
            ep._append(reply[:room], True, ep.turns, lp)
            ep.reply_tokens.append(min(len(reply), room))
            text = ep.reply_prefix + fmt.tokenizer.decode(reply[:room], skip_special_tokens=True)
            ep.replies.append(text)
            closed = bool(reply) and reply[-1] in fmt.eos_ids
            # An engine bounded by its context length (vLLM's max_model_len) stops an unfinished
            # reply at exactly the room left, short of max_new_tokens: it outgrew the window too.
            if len(reply) > room or (len(reply) == room < limits.max_new_tokens and not closed):
                ep.rewards.append(0.0)
                ep.env_step.append(False)
                ep.context_truncated = ep.done = True
                continue
            if toolbox and find_call(text) is not None:
                ep.tool_calls += 1
                refused = ToolResult("", f"error: the limit of {limits.max_tool_calls} tool calls "
                                     "per episode is reached; answer without tools", True)
                result = toolbox.run(text) if ep.tool_calls <= limits.max_tool_calls else refused
                ep.tool_errors += int(result.error)
                ep.rewards.append(0.0)
                ep.env_step.append(False)
                role, content = "tool", result.content
            else:
                try:
                    obs, reward, terminated, truncated, info = env.step(text)
                except Exception as err:
                    raise fail(i, ep.turns - 1, "step", err) from err
                if isinstance(reward, bool) or not isinstance(reward, (int, float, np.number)) \
                        or not math.isfinite(float(reward)):
                    raise ValueError(f"env {_env_name(env)} returned reward {reward!r} at turn "
                                     f"{ep.turns - 1} of episode {i}; rewards must be finite "
                                     "numbers")
                ep.rewards.append(float(reward))
                ep.env_step.append(True)
                ep.infos.append(dict(info))
                ep.invalid += int(bool(info.get("invalid", False)))
                ep.tool_calls += int(bool(info.get("tool_call", False)))
                ep.tool_errors += int(bool(info.get("tool_error", False)))
                if terminated or truncated:
                    ep.terminated, ep.truncated, ep.done = bool(terminated), bool(truncated), True
                    continue
                if not isinstance(obs, str):
                    raise ValueError(f"env {_env_name(env)} returned a {type(obs).__name__} "
                                     f"observation at turn {ep.turns - 1} of episode {i}; a text "
                                     "env returns str")
                role, content = info.get("role", "user"), obs
            if ep.turns >= limits.max_turns:
                ep.turn_limit = ep.done = True
                continue
            delta = fmt.delta(role, content, closed, reply[-1] if closed else None)
            if len(delta) + 1 > limits.room(ep):  # no room left to reply
                ep.context_truncated = ep.done = True
                continue
            ep._append(delta, False, ep.turns - 1)
            ep.reply_prefix = fmt.prefix(role)
        turn += 1
    return episodes


@dataclass
class TranscriptBatch:
    """Episodes as training rows: the first prompt left-padded to P columns, the rest of the
    transcript right-padded to T columns (B rows, L = P + T).

    Attributes:
        input_ids, attention_mask, position_ids: (B, L).
        loss_mask: (B, T) float, 1 on the model's tokens.
        turn_index: (B, T) long, the turn of each of those tokens (-1 elsewhere).
        sampler_log_probs: (B, T) float, the sampler's log-probs of the model's tokens (0
            elsewhere), or None unless every episode has them.
    """

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    loss_mask: Tensor
    turn_index: Tensor
    sampler_log_probs: Tensor | None = None


def transcript_batch(episodes: Sequence[Episode], pad_id: int) -> TranscriptBatch:
    """Training rows of ``episodes``, token for token their transcripts."""
    P = max(ep.prompt_length for ep in episodes)
    T = max(1, max(len(ep.ids) - ep.prompt_length for ep in episodes))
    B = len(episodes)
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, P + T), dtype=torch.long)
    loss_mask = torch.zeros((B, T))
    turn_index = torch.full((B, T), -1, dtype=torch.long)
    with_lp = all(ep.sampler_log_probs is not None for ep in episodes)
    sampler_lp = torch.zeros((B, T)) if with_lp else None
    for b, ep in enumerate(episodes):
        p, rest = ep.prompt_length, len(ep.ids) - ep.prompt_length
        ids[b, P - p:P] = torch.as_tensor(ep.ids[:p])
        attention[b, P - p:P + rest] = 1
        if rest:
            ids[b, P:P + rest] = torch.as_tensor(ep.ids[p:])
            loss_mask[b, :rest] = torch.as_tensor(ep.generated[p:], dtype=torch.float32)
            turns = torch.as_tensor(ep.turn_of[p:])
            turn_index[b, :rest] = torch.where(loss_mask[b, :rest].bool(), turns, -1)
            if sampler_lp is not None:
                sampler_lp[b, :rest] = torch.as_tensor(ep.sampler_log_probs[p:])
    position = (attention.cumsum(-1) - 1).clamp(min=0)
    return TranscriptBatch(ids, attention, position, loss_mask, turn_index, sampler_lp)
