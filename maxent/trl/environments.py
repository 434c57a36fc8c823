"""TRL's ``tools=[...]`` and ``environment_factory=Cls`` for :mod:`maxent.trl`, translated onto
maxent's multi-turn GRPO (:mod:`maxent.agents.grpo_multiturn`): dataset rows become episodes of a
Gymnasium text env, and TRL's reward functions score the finished episodes.

TRL 1.16's semantics, which the translation keeps:

- Every dataset row starts ``num_generations`` rollouts (one GRPO group). The prompt must be a
  conversation (TRL's tool loop reads messages); its last message is the user turn.
- With ``environment_factory`` each rollout has its own instance: built once by calling the
  factory (no arguments), kept, and reset before every rollout with ``reset(**row)``, the row's
  every column (``prompt`` included). A string it returns is appended to the last user message.
- Tools are typed functions with Google-style docstrings (transformers' ``get_json_schema`` must
  read them); an instance's public methods other than ``reset`` and ``get_reward`` are tools too,
  bound to that rollout's instance. ``reset`` is required, ``get_reward`` optional.
- The model replies; a reply that calls a tool gets the result as a ``tool`` message and the model
  replies again. A reply without a call ends the rollout; so do ``max_tool_calling_iterations``
  rounds of calls (``None``: no limit; the call of the reply past the limit is not run) and
  ``max_completion_length`` tokens over all the turns, tool results included. A tool that raises
  answers with an error message and the rollout goes on.
- Reward functions are called once per batch with ``prompts`` (reset text included),
  ``completions`` (the messages after the prompt: assistant replies with their ``tool_calls``, tool
  results), ``completion_ids``, the row's columns, ``trainer_state``, ``log_metric``,
  ``log_extra`` and ``environments`` (each rollout's instance). An instance's ``get_reward()`` is
  one more reward function, of weight 1, named after its class; ``reward_funcs`` may then be
  omitted. The weighted sum, ``None`` left out (TRL's nansum), is the rollout's reward; its
  group-normalised advantage covers every model token, tool results masked out of the loss.
- Without ``train_dataset`` an ``environment_factory`` supplies the prompt from ``reset()`` (the
  user message starts empty) and ``max_steps`` sets the length.

Where maxent differs: a reply makes one call, the first ``<tool_call>{json}</tool_call>``
(:mod:`maxent.llm.tools`, Hermes/Qwen's format), and the tools are described as text in the first
user message instead of the template's ``tools`` argument; a tool error reads ``error: <tool>
raised <Exception>: <message>``; rows are drawn at random with replacement; text outside printable
ASCII reaches the model as ``?``.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from maxent.envs.prompts import RESERVED, RewardFunctions, load_rows
from maxent.envs.tool_env import ToolTextEnv
from maxent.llm.tools import find_call, public_methods
from maxent.trl.config import GRPOConfig, UnsupportedTRLField

__all__ = ["ToolEpisodes", "ToolLoopRewards", "attach", "check_tools", "tool_episodes"]

_CALL = re.compile(r"<tool_call>", re.IGNORECASE)
# Enough for any prompt a context window holds: observations are cut to this many characters.
_MAX_CHARS = 1_000_000


def check_tools(tools: Sequence[Callable]) -> None:
    """Refuse, in one line, a tool TRL would refuse: no type hints, no docstring or an argument
    the docstring does not describe (transformers' ``get_json_schema``), or an async function."""
    from transformers.utils import get_json_schema

    for tool in tools:
        name = getattr(tool, "__name__", repr(tool))
        if inspect.iscoroutinefunction(tool):
            raise UnsupportedTRLField(f"tool {name} is async; maxent.trl runs tools synchronously: "
                                      "make it a plain def")
        try:
            get_json_schema(tool)
        except Exception as err:  # noqa: BLE001  (transformers' parsing exceptions)
            raise ValueError(f"tool {name} cannot be described to the model: "
                             f"{' '.join(str(err).split())}; give every argument a type hint and "
                             "a Google-style docstring (a summary line, then Args: name: meaning)"
                             ) from None


def _user_turn(prompt: Any, i: int) -> None:
    if not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt)
            and prompt[-1].get("role") == "user" and isinstance(prompt[-1].get("content"), str)):
        raise ValueError(f"row {i}'s prompt is {prompt!r:.80}; with tools or environment_factory "
                         "TRL needs conversational prompts ending in a user message, e.g. "
                         "[{'role': 'user', 'content': '...'}]")
    if any(m.get("role") != "system" for m in prompt[:-1]):
        raise UnsupportedTRLField(f"row {i}'s prompt has earlier {[m.get('role') for m in prompt[:-1]]} "
                                  "turns; maxent.trl's tool episodes start from [system,] user")


class ToolEpisodes(ToolTextEnv):
    """TRL's tool loop as a Gymnasium ``Text`` env, one rollout per episode (see the module
    docstring). ``reset`` draws a row with the env's seeded generator (the G episodes of a group
    share their seed, hence their row), resets the rollout's instance with it and returns the
    tool descriptions and the user message; ``step`` runs a reply's tool call (the result is the
    next observation, role ``tool``) or ends the episode at a reply without one, with reward 0:
    :class:`ToolLoopRewards` scores the episode. ``prompt`` and ``completion`` keep the messages
    TRL's reward functions receive.

    Args:
        rows: the dataset rows (dicts with ``prompt_column``).
        tools: standalone tools, shared by every rollout.
        environment_factory: a zero-argument callable returning an environment instance, or None.
        prompt_column: the column holding the conversation.
        max_tool_calls: rounds of tool calls per episode (TRL's ``max_tool_calling_iterations``).
    """

    conversational = True

    def __init__(self, rows: Sequence[dict], *, tools: Sequence[Callable] = (),
                 environment_factory: Callable[[], Any] | None = None,
                 prompt_column: str = "prompt", max_tool_calls: int = 8):
        self.rows, self.standalone = list(rows), list(tools)
        self.factory, self.prompt_column = environment_factory, prompt_column
        self.instance = None
        methods: list[Callable] = []
        if environment_factory is not None:
            if not callable(environment_factory):
                raise ValueError(f"environment_factory must be callable (a class or a function "
                                 f"returning an instance), got {environment_factory!r}")
            self.instance = environment_factory()
            if not callable(getattr(self.instance, "reset", None)):
                raise ValueError(f"environment_factory's {type(self.instance).__name__} has no "
                                 "reset() method; TRL needs reset(self, **kwargs) returning str or None")
            methods = public_methods(self.instance)
        check_tools([*self.standalone, *methods])
        super().__init__([*self.standalone, *methods], max_tool_calls=max_tool_calls,
                         max_observation_chars=_MAX_CHARS, max_action_chars=_MAX_CHARS)
        self.row: dict = {}
        self.prompt: list[dict] = []
        self.completion: list[dict] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __deepcopy__(self, memo: dict) -> ToolEpisodes:
        # A fresh instance from the factory, as TRL builds one per rollout (a deep copy of a
        # user's environment may hold clients or handles that cannot be copied).
        return ToolEpisodes(self.rows, tools=self.standalone, environment_factory=self.factory,
                            prompt_column=self.prompt_column, max_tool_calls=self.max_tool_calls)

    def _start(self, options: dict | None) -> str:
        self.row = self.rows[int(self.np_random.integers(len(self.rows)))]
        messages = self.row[self.prompt_column]
        text = messages[-1]["content"]
        if self.instance is not None:
            added = self.instance.reset(**copy.copy(self.row))
            if added is not None and not isinstance(added, str):
                raise TypeError(f"{type(self.instance).__name__}.reset() returned "
                                f"{type(added).__name__}; TRL needs str or None")
            text += added or ""
        self.prompt = [*messages[:-1], {**messages[-1], "content": text}]
        self.completion = []
        return text

    def _answer(self, text: str) -> tuple[float, dict[str, Any]]:
        return 0.0, {}

    def step(self, action: str):
        obs, reward, terminated, truncated, info = super().step(action)
        message: dict[str, Any] = {"role": "assistant", "content": action}
        body = find_call(action)
        if body is not None:
            message["content"] = _CALL.split(action, maxsplit=1)[0].strip()
            try:
                call = json.loads(body)
                message["tool_calls"] = [{"type": "function", "function": {
                    "name": call["name"], "arguments": call.get("arguments", {})}}]
            except (ValueError, TypeError, KeyError):
                pass  # unreadable: the model's text stays in content, the error in the tool message
            message["content"] = message["content"] if "tool_calls" in message else action
        self.completion.append(message)
        if info.get("role") == "tool":
            self.completion.append({"role": "tool", "name": info.get("tool") or "", "content": obs})
        return obs, reward, terminated, truncated, info


def _environment_reward(cls: type) -> Callable:
    """An instance's ``get_reward`` as a reward function over ``environments``, as TRL adds it."""
    def get_reward(environments, **kwargs):
        return [e.get_reward() if type(e) is cls else None for e in environments]

    get_reward.__name__ = get_reward.__qualname__ = cls.__name__
    return get_reward


class ToolLoopRewards:
    """TRL's reward functions (and an environment's ``get_reward``) over finished tool episodes:
    the ``episode_scorer`` of :class:`maxent.agents.grpo_multiturn.MultiTurn`.

    Args:
        reward_funcs: TRL's ``reward_funcs`` (functions, reward models, a list or None).
        args: the trainer's config (``reward_weights``).
        env: the prototype episode env (its columns and environment class).
        processing_classes: TRL's ``reward_processing_classes``.
    """

    def __init__(self, reward_funcs: Any, args: GRPOConfig, env: ToolEpisodes,
                 processing_classes: Any = None):
        funcs = [] if reward_funcs is None else (
            list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs])
        weights = None if args.reward_weights is None else list(args.reward_weights)
        if weights is not None and len(weights) != len(funcs):
            raise ValueError(f"reward_weights has {len(weights)} weights for {len(funcs)} reward "
                             "functions; give one per function")
        if env.instance is not None and callable(getattr(type(env.instance), "get_reward", None)):
            funcs.append(_environment_reward(type(env.instance)))
            weights = None if weights is None else [*weights, 1.0]
            if processing_classes is not None and isinstance(processing_classes, (list, tuple)):
                processing_classes = [*processing_classes, None]
        if not funcs:
            raise ValueError("no reward source: pass reward_funcs, or an environment_factory whose "
                             "class defines get_reward()")
        self.functions = RewardFunctions(funcs, weights, "raise", processing_classes)
        self.columns = sorted({c for r in env.rows for c in r} - {env.prompt_column})
        clash = sorted(set(self.columns) & {*RESERVED, "environments"})
        if clash:
            raise ValueError(f"dataset columns {clash} clash with the arguments reward functions "
                             "receive; rename them")
        self.functions.check_signatures([*self.columns, "environments"])
        self.agent: Any = None  # set by attach
        self.metrics: dict[str, float] = {}

    def __call__(self, episodes: Sequence[Any], envs: Sequence[Any]) -> np.ndarray:
        from maxent.agents.grpo_rewards import update_trainer_state

        agent = self.agent
        update_trainer_state(agent)
        episode_envs = [getattr(e, "unwrapped", e) for e in envs]
        columns: dict[str, list] = {c: [e.row.get(c) for e in episode_envs] for c in self.columns}
        columns["environments"] = [e.instance for e in episode_envs]
        completions = [copy.deepcopy(e.completion) for e in episode_envs]
        for ep, messages in zip(episodes, completions):
            if not ep.context_truncated:
                continue
            if sum(m["role"] == "assistant" for m in messages) < ep.turns:
                messages.append({"role": "assistant", "content": ep.replies[-1]})  # cut reply
            elif messages and messages[-1]["role"] == "tool":
                messages.pop()  # a tool result past the budget is rolled back, as in TRL
        scored = self.functions([copy.deepcopy(e.prompt) for e in episode_envs], completions,
                                [list(ep.ids[ep.prompt_length:]) for ep in episodes], columns,
                                agent.trainer_state)
        self.metrics, _ = self.functions.drain_logs()  # log_metric values join the step's row
        if len(self.functions.names) > 1:  # TRL's rewards/<function> columns
            for j, name in enumerate(self.functions.names):
                finite = np.isfinite(scored.per_function[:, j])
                if finite.any():
                    self.metrics[f"rewards/{name}"] = float(scored.per_function[finite, j].mean())
        return np.nan_to_num(scored.rewards, nan=0.0)  # no function rewarded: 0, TRL's nansum


def tool_episodes(train_dataset: Any, reward_funcs: Any, args: GRPOConfig, *, tools: Any,
                  environment_factory: Any, prompt_column: str,
                  reward_processing_classes: Any = None) -> tuple[ToolEpisodes, ToolLoopRewards, dict]:
    """The episode env, the scorer and the maxent GRPOConfig fields of a TRL run with tools or an
    ``environment_factory``."""
    if isinstance(environment_factory, dict):
        raise UnsupportedTRLField("environment_factory={name: factory}: maxent.trl runs one "
                                  "environment class per trainer; pass one factory")
    if args.multi_objective_aggregation != "sum_then_normalize":
        raise UnsupportedTRLField(f"multi_objective_aggregation={args.multi_objective_aggregation!r} "
                                  "with tools: maxent's tool episodes score the weighted sum "
                                  "('sum_then_normalize')")
    tools = [] if tools is None else list(tools)
    if train_dataset is None:
        if environment_factory is None:
            raise ValueError("GRPOTrainer needs train_dataset unless an environment_factory "
                             "supplies the prompts from reset()")
        if args.max_steps is None or args.max_steps <= 0:
            raise ValueError("without train_dataset the environment owns the data: set "
                             "GRPOConfig(max_steps=...) to define the training length, as TRL does")
        rows = [{prompt_column: [{"role": "user", "content": ""}]}]
    else:
        rows = load_rows(train_dataset)
        missing = [i for i, r in enumerate(rows) if prompt_column not in r]
        if missing:
            raise ValueError(f"row {missing[0]} has no {prompt_column!r} column (it has "
                             f"{sorted(rows[missing[0]])}); rename the prompt column")
    for i, row in enumerate(rows):
        _user_turn(row[prompt_column], i)
    systems = {m["content"] for r in rows for m in r[prompt_column][:-1]}
    if len(systems) > 1 or any(len(r[prompt_column]) > 2 for r in rows):
        raise UnsupportedTRLField("rows with different (or several) system messages: maxent.trl's "
                                  "tool episodes take one system message for the whole dataset")
    rounds = args.max_tool_calling_iterations
    if rounds is not None and rounds < 0:
        raise ValueError(f"max_tool_calling_iterations must be >= 0 or None, got {rounds}")
    # No limit: each round adds at least one completion token, so the budget bounds the rounds.
    rounds = args.max_completion_length if rounds is None else int(rounds)
    env = ToolEpisodes(rows, tools=tools, environment_factory=environment_factory,
                       prompt_column=prompt_column, max_tool_calls=rounds)
    scorer = ToolLoopRewards(reward_funcs, args, env, reward_processing_classes)
    overrides = {"max_tool_calls": rounds, "max_turns": rounds + 1, "turn_credit": "episode",
                 "system_prompt": next(iter(systems)) if systems else None}
    return env, scorer, overrides


def attach(agent: Any, scorer: ToolLoopRewards, args: GRPOConfig) -> None:
    """Give a (new or reloaded) agent the scorer and TRL's completion budget over all turns."""
    scorer.agent = agent
    agent.multiturn.episode_scorer = scorer
    agent.multiturn.limits.max_completion_tokens = int(args.max_completion_length)
