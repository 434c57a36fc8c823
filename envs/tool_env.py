"""Text environments in which a language model may call tools before it answers: a base class
that runs the tool calls of a reply (:mod:`maxent.llm.tools`' format) and returns their results
as observations, TRL's ``environment_factory`` convention wrapped as a Gymnasium env (a class
whose public methods are the tools, ``reset()`` returning text or None, optional
``get_reward()``), and an arithmetic task with a calculator tool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

from maxent.envs.text import CHARSET, ArithmeticTask, evaluate_expression
from maxent.llm.tools import ToolBox, find_call, public_methods

__all__ = ["EnvironmentFactoryEnv", "ToolArithmetic", "ToolTextEnv", "calculate", "to_charset"]

_ALLOWED = frozenset(CHARSET)


def to_charset(text: str, max_chars: int) -> str:
    """``text`` with characters outside printable ASCII replaced by ``?`` and cut to
    ``max_chars``, so every observation lies in the env's ``Text`` space."""
    return "".join(c if c in _ALLOWED else "?" for c in str(text)[:max_chars])


class ToolTextEnv(gym.Env):
    """A ``Text`` env whose replies either call a tool or answer.

    A reply with a ``<tool_call>`` runs it: the result (or an error message: a malformed call, an
    unknown tool, a tool that raised) is the next observation, with ``info["role"] = "tool"``,
    ``info["tool_call"] = True`` and ``info["tool_error"]``, reward 0. After ``max_tool_calls``
    calls a further call ends the episode with reward 0 (``info["tool_limit"]``). Any other reply
    is the answer: :meth:`_answer` scores it and the episode ends. The first observation lists the
    tools and the call format.

    Subclasses give the tools and implement :meth:`_start` and :meth:`_answer`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, tools: Sequence[Callable], *, max_tool_calls: int = 4,
                 max_observation_chars: int = 4096, max_action_chars: int = 1024):
        if max_tool_calls < 0:
            raise ValueError(f"max_tool_calls must be >= 0, got {max_tool_calls}")
        self.toolbox = ToolBox(tools)
        self.max_tool_calls = int(max_tool_calls)
        self.observation_space = spaces.Text(int(max_observation_chars), charset=CHARSET)
        self.action_space = spaces.Text(int(max_action_chars), charset=CHARSET)
        self._calls = 0
        self._done = True

    def _start(self, options: dict | None) -> str:
        """The task's first text (after ``reset``'s seeding)."""
        raise NotImplementedError

    def _answer(self, text: str) -> tuple[float, dict[str, Any]]:
        """The reward of a final answer and extra info."""
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._calls, self._done = 0, False
        text = self.toolbox.describe() + self._start(options)
        return to_charset(text, self.observation_space.max_length), {}

    def step(self, action: str):
        if self._done:
            raise RuntimeError("the episode is over (or reset() was never called); call reset()")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the reply), got {type(action).__name__}")
        if find_call(action) is None:
            reward, info = self._answer(action)
            self._done = True
            return "Answer received.\n", float(reward), True, False, {"tool_call": False, **info}
        self._calls += 1
        if self._calls > self.max_tool_calls:
            self._done = True
            over = f"error: more than {self.max_tool_calls} tool calls; the episode is over.\n"
            return over, 0.0, True, False, {"tool_call": True, "tool_error": True,
                                            "tool_limit": True}
        result = self.toolbox.run(action)
        obs = to_charset(result.content, self.observation_space.max_length)
        return obs, 0.0, False, False, {"role": "tool", "tool_call": True,
                                        "tool_error": result.error, "tool": result.name}


class EnvironmentFactoryEnv(ToolTextEnv):
    """TRL's ``environment_factory`` convention as a Gymnasium ``Text`` env, so such a class runs
    unchanged: one instance is built with ``factory()`` and reset every episode; its public
    methods (not ``reset``/``get_reward``) are the tools; ``reset(**row)`` returns text added to
    the prompt, or None; ``get_reward()``, when defined, scores the episode at its end (else the
    reward is 0). The episode ends at the first reply that calls no tool, as TRL's tool loop does.

    Args:
        factory: a zero-argument callable (usually the class) returning an environment instance.
        prompt: the user prompt of every episode (TRL's dataset prompt); ``reset``'s text is
            appended to it.
        rows: optional dataset rows (dicts) passed to the instance's ``reset`` as keywords, one
            drawn per episode from the env's seeded generator (TRL passes the example's columns).
        **kwargs: :class:`ToolTextEnv` limits.
    """

    def __init__(self, factory: Callable[[], Any], prompt: str = "", *,
                 rows: Sequence[dict] | None = None, **kwargs: Any):
        if not callable(factory):
            raise ValueError(f"environment_factory must be callable (e.g. the class), got "
                             f"{factory!r}")
        self.instance = factory()
        if not callable(getattr(self.instance, "reset", None)):
            raise ValueError(f"{type(self.instance).__name__} has no reset() method; TRL's "
                             "environment_factory convention needs one (returning str or None)")
        self.prompt, self.rows = str(prompt), list(rows) if rows is not None else None
        if self.rows is not None and not (self.rows and all(isinstance(r, dict)
                                                             for r in self.rows)):
            raise ValueError("rows must be a non-empty sequence of dicts (dataset examples)")
        super().__init__(public_methods(self.instance), **kwargs)

    def _start(self, options: dict | None) -> str:
        row = {} if self.rows is None else self.rows[int(self.np_random.integers(len(self.rows)))]
        added = self.instance.reset(**row)
        if added is not None and not isinstance(added, str):
            raise TypeError(f"{type(self.instance).__name__}.reset() returned "
                            f"{type(added).__name__}; it must return str or None")
        return self.prompt + (added or "")

    def _answer(self, text: str) -> tuple[float, dict[str, Any]]:
        get_reward = getattr(self.instance, "get_reward", None)
        return (float(get_reward()) if callable(get_reward) else 0.0), {}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression of integers with + - * / and parentheses.

    Args:
        expression: for example "(12 + 7) * 3".
    """
    value = evaluate_expression(expression)
    if value is None:
        raise ValueError(f"cannot evaluate {expression!r}: use integers, + - * / and parentheses")
    result = value[0]
    return str(result.numerator) if result.denominator == 1 else f"{float(result):.6g}"


class ToolArithmetic(ToolTextEnv):
    """Integer arithmetic with a calculator tool (``maxent/ToolArithmetic-v0``): the question of
    :class:`maxent.envs.text.ArithmeticTask`, a ``calculate`` tool, and reward 1 for a final reply
    whose last integer is the answer (0 otherwise; ``info["correct"]``).

    Args:
        difficulty: the task's difficulty (operand digits grow with it).
        **kwargs: :class:`ToolTextEnv` limits.
    """

    def __init__(self, difficulty: int = 2, **kwargs: Any):
        self.task = ArithmeticTask(difficulty)
        super().__init__([calculate], **kwargs)
        self._target: Any = None

    def _start(self, options: dict | None) -> str:
        question, self._target = self.task.sample(self.np_random)
        return f"{question}\nCall the calculator if you need it, then reply with the answer.\n"

    def _answer(self, text: str) -> tuple[float, dict[str, Any]]:
        reward = float(self.task.reward(text, self._target))
        return reward, {"correct": bool(reward >= 1.0), "target": self._target}
