"""Verifiable-reward text tasks for RL on language models (RLVR, as in DeepSeekMath's GRPO and
TinyZero's Countdown): an observation is a prompt, an action is a completion, and the reward
comes from parsing the completion's final answer and checking it, never from running it.

Tasks are generated on the fly from a seeded ``numpy.random.Generator`` with a difficulty knob:
integer arithmetic, Countdown (reach a target with + - * / over given numbers) and integer
sequence completion. Parsing uses regular expressions, ``int`` and a small hand-written
recursive-descent parser over integers, + - * / and parentheses: model output is never passed
to ``eval``, ``exec`` or ``ast``. Parsing is linear-time and reads only a completion's last
``ANSWER_WINDOW`` characters, so its work is bounded whatever the model writes.
"""

from __future__ import annotations

import operator
import re
import string
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "ANSWER_WINDOW",
    "CHARSET",
    "ArithmeticTask",
    "CountdownTarget",
    "CountdownTask",
    "SequenceTask",
    "TextTaskEnv",
    "VerifiableTask",
    "evaluate_expression",
    "make_arithmetic",
    "make_countdown",
    "make_sequence",
    "parse_final_integer",
]

# Printable ASCII (letters, digits, punctuation, space, \t \n \r \x0b \x0c): every prompt we
# generate uses only these. Completions outside it are still scored (see TextTaskEnv).
CHARSET = string.printable

# The final answer must lie in a completion's last ANSWER_WINDOW characters: the parsers read
# only that suffix (a reasoning trace ends with its answer), so a 1 MB completion costs what an
# 8 KB one does. Shorter completions are read whole; in longer ones a tag or number cut by the
# window's left edge is read from the edge.
ANSWER_WINDOW = 8192

_MAX_DIGITS = 30        # longer digit runs are not answers (and int() of huge strings is slow)
_MAX_TOKENS = 256       # expression parser limits: bounded work whatever the model writes
_MAX_DEPTH = 32


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


# --------------------------------------------------------------------------- answer parsing

# A number: optional sign (ASCII or Unicode minus), digits with optional thousands commas,
# optional decimals. Decimals are matched so that "3.5" is read as 3.5 (rejected), not as 5.
_NUMBER = re.compile(r"(?<![\w.])([-\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")
# Answer tags are found by literal searches (linear time), not by one lazy regex
# "<answer>(.*?)</answer>": that one rescans the rest of the text from every unclosed <answer>,
# quadratic in the number of unclosed tags.
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_ANSWER_MARK = re.compile(r"(?:answer\s*(?:is)?\s*[:=]?|####|=)\s*", re.IGNORECASE)


def _last(matches: Iterable[re.Match]) -> re.Match | None:
    """The last of ``matches``, or None; one pass, keeping nothing else."""
    tail = deque(matches, maxlen=1)
    return tail[0] if tail else None


def _answer_window(completion: str) -> str:
    """The last ``ANSWER_WINDOW`` characters of a completion: all any parser reads."""
    return completion[-ANSWER_WINDOW:]


def _last_answer_tag(text: str) -> str | None:
    """Content of the last <answer>...</answer> of ``text`` (tags case-insensitive), or None.

    That is the text between the last opening tag that some closing tag follows and the first
    closing tag after it; so in "<answer>3 <answer>4</answer>" it is "4" (unclosed tags before
    the final answer are skipped) and in "<answer>4</answer></answer>" it is "4". Three
    left-to-right scans: linear time.
    """
    last_close = _last(_ANSWER_CLOSE.finditer(text))
    if last_close is None:
        return None
    last_open = _last(_ANSWER_OPEN.finditer(text, 0, last_close.start()))
    if last_open is None:
        return None
    first_close = _ANSWER_CLOSE.search(text, last_open.end())  # exists: last_close at the latest
    return text[last_open.end():first_close.start()]


def _answer_region(text: str) -> str:
    """The part of a (windowed) completion that holds the final answer: the last
    <answer>...</answer>, else the text after the last "answer:", "####" or "=", else all of it
    (the same object, which tells ``parse_final_integer`` that no marker was found)."""
    tag = _last_answer_tag(text)
    if tag is not None:
        return tag
    last_mark = _last(_ANSWER_MARK.finditer(text))
    if last_mark is not None:
        return text[last_mark.end():]
    return text


def parse_final_integer(completion: str) -> int | None:
    """The final integer answer of a completion, or None.

    Looks in ``_answer_region`` and takes its FIRST number (the answer after the marker; with no
    marker, the LAST number of the completion). Accepts "-12", "\u221212", "1,234", "7.0"; rejects
    non-integers ("3.5"), digit runs longer than 30 and text without a number. Regex and ``int``
    only: nothing in the completion is executed. Only the last ``ANSWER_WINDOW`` characters are
    read.
    """
    if not isinstance(completion, str):
        return None
    text = _answer_window(completion)
    region = _answer_region(text)
    marked = region is not text
    # The number after the marker; with no marker, the completion's last number.
    match = _NUMBER.search(region) if marked else _last(_NUMBER.finditer(region))
    if match is None:
        return None
    sign, digits, frac = match.groups()
    digits = digits.replace(",", "")
    if len(digits) > _MAX_DIGITS:
        return None
    if frac and frac.strip(".0"):
        return None
    value = int(digits)
    return -value if sign else value


class _ExpressionError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(?:(\d+)|(\S))")
_OPERATOR_ALIASES = {"\u00d7": "*", "\u00f7": "/", "\u2212": "-", "x": "*", "X": "*"}


def _tokenize(text: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace left
            break
        pos = m.end()
        number, char = m.groups()
        if number is not None:
            if len(number) > 12:
                raise _ExpressionError(f"number too long: {number[:20]}...")
            tokens.append(int(number))
        else:
            char = _OPERATOR_ALIASES.get(char, char)
            if char not in "+-*/()":
                raise _ExpressionError(f"character {char!r} is not allowed in an expression")
            tokens.append(char)
        if len(tokens) > _MAX_TOKENS:
            raise _ExpressionError(f"expression longer than {_MAX_TOKENS} tokens")
    return tokens


_OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


class _Parser:
    """expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*;
    factor := INT | '(' expr ')'. Exact rational arithmetic; no unary minus."""

    def __init__(self, tokens: list[str | int]) -> None:
        self.tokens, self.i, self.numbers = tokens, 0, []

    def _peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse(self) -> Fraction:
        if not self.tokens:
            raise _ExpressionError("empty expression")
        value = self._expr(0)
        if self.i != len(self.tokens):
            raise _ExpressionError(f"unexpected {self.tokens[self.i]!r}")
        return value

    def _expr(self, depth: int) -> Fraction:
        return self._chain(depth, ("+", "-"), self._term)

    def _term(self, depth: int) -> Fraction:
        return self._chain(depth, ("*", "/"), self._factor)

    def _chain(self, depth: int, ops: tuple[str, str], operand: Callable[[int], Fraction]
               ) -> Fraction:
        """``operand (op operand)*`` for ``op`` in ``ops``, folded left to right."""
        value = operand(depth)
        while self._peek() in ops:
            op = self.tokens[self.i]
            self.i += 1
            rhs = operand(depth)
            if op == "/" and rhs == 0:
                raise _ExpressionError("division by zero")
            value = _OPERATIONS[op](value, rhs)
        return value

    def _factor(self, depth: int) -> Fraction:
        tok = self._peek()
        if isinstance(tok, int):
            self.i += 1
            self.numbers.append(tok)
            return Fraction(tok)
        if tok == "(":
            if depth >= _MAX_DEPTH:
                raise _ExpressionError(f"parentheses nested deeper than {_MAX_DEPTH}")
            self.i += 1
            value = self._expr(depth + 1)
            if self._peek() != ")":
                raise _ExpressionError("missing ')'")
            self.i += 1
            return value
        raise _ExpressionError(f"expected a number or '(', got {tok!r}")


def evaluate_expression(text: str) -> tuple[Fraction, list[int]] | None:
    """Value and the integers used, of an arithmetic expression over non-negative integers with
    + - * / and parentheses, evaluated exactly (``Fraction``) by a recursive-descent parser;
    None for anything else (names, calls, strings, '**', unary minus, division by zero)."""
    if not isinstance(text, str):
        return None
    try:
        parser = _Parser(_tokenize(text))
        value = parser.parse()
    except _ExpressionError:
        return None
    return value, parser.numbers


# --------------------------------------------------------------------------- tasks


@runtime_checkable
class VerifiableTask(Protocol):
    """A generated task with a checkable answer."""

    name: str

    def sample(self, rng: np.random.Generator) -> tuple[str, Any]:
        """(question text, target answer) drawn with ``rng``."""

    def parse(self, completion: str) -> Any | None:
        """The completion's final answer (hashable), None if unparsable; never evaluates code."""

    def reward(self, completion: str, target: Any) -> float:
        """Reward of a completion, e.g. 1.0 correct, 0.0 wrong."""


class _IntegerAnswerTask:
    """Shared parse/reward for tasks whose answer is one integer."""

    format_reward: float = 0.0

    def parse(self, completion: str) -> int | None:
        return parse_final_integer(completion)

    def reward(self, completion: str, target: Any) -> float:
        answer = self.parse(completion)
        if answer is None:
            return 0.0
        return 1.0 if answer == target else self.format_reward


def _check_format_reward(value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"format_reward must be in [0, 1) (reward of a parsable wrong answer), "
                         f"got {value}")
    return value


class ArithmeticTask(_IntegerAnswerTask):
    """Integer arithmetic such as "What is 47 - 8 * 12?" (usual operator precedence).

    Difficulty d >= 1 sets, unless given explicitly: operands of up to d digits, 2 + (d - 1) // 2
    operands, operators {+, -} for d <= 2 and {+, -, *} from d = 3.

    Args:
        difficulty: the knob d; default 1 ("What is 3 + 5?").
        digits: maximum digits per operand (overrides d).
        n_operands: number of operands, >= 2 (overrides d).
        operators: string of operators drawn from "+-*" (overrides d).
        format_reward: reward of a parsable but wrong answer, in [0, 1); default 0.
    """

    name = "arithmetic"

    def __init__(self, difficulty: int = 1, *, digits: int | None = None,
                 n_operands: int | None = None, operators: str | None = None,
                 format_reward: float = 0.0) -> None:
        self.difficulty = _check_int("difficulty", difficulty, 1, 12)
        d = self.difficulty
        self.digits = _check_int("digits", d if digits is None else digits, 1, 12)
        self.n_operands = _check_int("n_operands", 2 + (d - 1) // 2 if n_operands is None
                                     else n_operands, 2, 16)
        ops = ("+-" if d <= 2 else "+-*") if operators is None else operators
        if not ops or any(o not in "+-*" for o in ops):
            raise ValueError(f"operators must be a non-empty string over '+-*', got {ops!r}")
        self.operators = ops
        self.format_reward = _check_format_reward(format_reward)

    def sample(self, rng: np.random.Generator) -> tuple[str, int]:
        hi = 10 ** self.digits
        nums = rng.integers(0 if self.digits > 1 else 1, hi, self.n_operands)
        ops = rng.choice(list(self.operators), self.n_operands - 1)
        expr = str(int(nums[0]))
        for op, n in zip(ops, nums[1:]):
            expr += f" {op} {int(n)}"
        value, _ = evaluate_expression(expr)  # our own generated string, evaluated exactly
        return f"What is {expr}?", int(value)

    def __repr__(self) -> str:
        return (f"ArithmeticTask(difficulty={self.difficulty}, digits={self.digits}, "
                f"n_operands={self.n_operands}, operators={self.operators!r})")


@dataclass(frozen=True)
class CountdownTarget:
    """A Countdown instance: reach ``target`` using each of ``numbers`` exactly once."""

    numbers: tuple[int, ...]
    target: int


class CountdownTask:
    """Countdown (as in TinyZero): combine the given numbers, each exactly once, with
    + - * / and parentheses to reach the target. The target is built from a random expression
    over all the numbers, so every instance is solvable.

    The completion's answer is the expression in its last ``<answer>...</answer>`` tag, else the
    left side of its last "=" on the last line containing one, else its last non-empty line; it is
    read by ``evaluate_expression`` (integers, + - * / and parentheses only).
    ``parse`` returns the expression's value (int, or Fraction if not whole).

    Difficulty d >= 1 sets, unless given: d + 2 numbers drawn from 1..(10 d).

    Args:
        difficulty: the knob d; default 1 (3 numbers in 1..10).
        n_numbers: how many numbers, >= 2 (overrides d).
        max_number: numbers drawn from 1..max_number (overrides d).
        max_target: targets lie in 1..max_target; default 1000.
        format_reward: reward of a valid expression that misses (wrong value or wrong numbers),
            in [0, 1); default 0 (TinyZero uses 0.1).
    """

    name = "countdown"

    def __init__(self, difficulty: int = 1, *, n_numbers: int | None = None,
                 max_number: int | None = None, max_target: int = 1000,
                 format_reward: float = 0.0) -> None:
        self.difficulty = _check_int("difficulty", difficulty, 1, 12)
        d = self.difficulty
        self.n_numbers = _check_int("n_numbers", d + 2 if n_numbers is None else n_numbers, 2, 8)
        self.max_number = _check_int("max_number", 10 * d if max_number is None else max_number,
                                     2)
        self.max_target = _check_int("max_target", max_target, 1)
        self.format_reward = _check_format_reward(format_reward)

    def _random_value(self, nums: list[int], rng: np.random.Generator) -> Fraction | None:
        """Value of a random binary expression tree over ``nums`` (all used once)."""
        vals = [Fraction(n) for n in nums]
        while len(vals) > 1:
            i, j = rng.choice(len(vals), 2, replace=False)
            a, b = vals[i], vals[j]
            op = rng.choice(["+", "-", "*", "/"])
            if op == "+":
                v = a + b
            elif op == "-":
                v = a - b
            elif op == "*":
                v = a * b
            else:
                if b == 0:
                    return None
                v = a / b
            vals = [x for k, x in enumerate(vals) if k not in (i, j)] + [v]
        return vals[0]

    def sample(self, rng: np.random.Generator) -> tuple[str, CountdownTarget]:
        for _ in range(100):
            nums = [int(n) for n in rng.integers(1, self.max_number + 1, self.n_numbers)]
            for _ in range(50):
                v = self._random_value(nums, rng)
                if v is not None and v.denominator == 1 and 1 <= v <= self.max_target:
                    listed = ", ".join(map(str, nums))
                    question = (f"Using the numbers {listed}, each exactly once, and + - * / "
                                f"with parentheses, write an expression equal to {int(v)}.")
                    return question, CountdownTarget(tuple(nums), int(v))
        raise RuntimeError(f"no Countdown instance with a target in 1..{self.max_target} found for "
                           f"{self.n_numbers} numbers in 1..{self.max_number}; raise max_target")

    @staticmethod
    def _expression_texts(completion: str) -> list[str]:
        """Candidate expression strings: the last <answer> tag's content; else, on the last line
        with an "=", the text left of it; else the last non-empty line. Prose before the
        expression is skipped by also trying every suffix that starts at a digit or "(",
        longest first (within the last 200 characters). Only the last ``ANSWER_WINDOW``
        characters of the completion are read."""
        text = _answer_window(completion)
        tag = _last_answer_tag(text)
        if tag is not None:
            return [tag.strip()]
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return []
        text = lines[-1].rstrip(".")
        for line in reversed(lines):
            if "=" in line:  # "(3 + 4) * 5 = 35" or "so (3 + 4) * 5 = 35"
                text = line.split("=")[0]
                break
        text = text.strip()[-200:]
        return [text[i:] for i, ch in enumerate(text) if ch.isdigit() or ch == "("]

    def _evaluate(self, completion: str) -> tuple[Fraction, list[int]] | None:
        if not isinstance(completion, str):
            return None
        for text in self._expression_texts(completion):
            result = evaluate_expression(text)
            if result is not None:
                return result
        return None

    def parse(self, completion: str) -> int | Fraction | None:
        result = self._evaluate(completion)
        if result is None:
            return None
        value = result[0]
        return int(value) if value.denominator == 1 else value

    def reward(self, completion: str, target: CountdownTarget) -> float:
        result = self._evaluate(completion)
        if result is None:
            return 0.0
        value, used = result
        if sorted(used) == sorted(target.numbers) and value == target.target:
            return 1.0
        return self.format_reward

    def __repr__(self) -> str:
        return (f"CountdownTask(difficulty={self.difficulty}, n_numbers={self.n_numbers}, "
                f"max_number={self.max_number})")


class SequenceTask(_IntegerAnswerTask):
    """Integer sequence completion: "What number comes next: 3, 7, 11, 15, ?".

    Difficulty: 1 arithmetic progressions; 2 also geometric (ratio 2..3); 3 and above also
    quadratic sequences (constant second difference) and alternating two-step patterns.

    Args:
        difficulty: the knob, >= 1; default 1.
        n_shown: terms shown, >= 3; default 5.
        format_reward: reward of a parsable but wrong answer, in [0, 1); default 0.
    """

    name = "sequence"

    def __init__(self, difficulty: int = 1, *, n_shown: int = 5, format_reward: float = 0.0):
        self.difficulty = _check_int("difficulty", difficulty, 1, 12)
        self.n_shown = _check_int("n_shown", n_shown, 3, 20)
        self.format_reward = _check_format_reward(format_reward)

    def sample(self, rng: np.random.Generator) -> tuple[str, int]:
        kinds = ["arithmetic"] + (["geometric"] if self.difficulty >= 2 else []) + \
            (["quadratic", "alternating"] if self.difficulty >= 3 else [])
        kind = kinds[int(rng.integers(len(kinds)))]
        n = self.n_shown + 1
        scale = 5 * self.difficulty
        a0 = int(rng.integers(-scale, scale + 1))
        if kind == "arithmetic":
            step = int(rng.integers(1, scale + 1)) * (1 if rng.random() < 0.7 else -1)
            seq = [a0 + step * k for k in range(n)]
        elif kind == "geometric":
            ratio = int(rng.integers(2, 4))
            start = int(rng.integers(1, 6))
            seq = [start * ratio**k for k in range(n)]
        elif kind == "quadratic":
            d1, d2 = int(rng.integers(-scale, scale + 1)), int(rng.integers(1, 4))
            seq = [a0 + d1 * k + d2 * k * (k - 1) // 2 for k in range(n)]
        else:
            s1, s2 = int(rng.integers(1, scale + 1)), -int(rng.integers(1, scale + 1))
            seq = [a0]
            for k in range(n - 1):
                seq.append(seq[-1] + (s1 if k % 2 == 0 else s2))
        shown = ", ".join(map(str, seq[:-1]))
        return f"What number comes next: {shown}, ?", seq[-1]

    def __repr__(self) -> str:
        return f"SequenceTask(difficulty={self.difficulty}, n_shown={self.n_shown})"


# --------------------------------------------------------------------------- environment


class TextTaskEnv(gym.Env):
    """One prompt per episode, one completion per step: a contextual bandit over text.

    ==============  =================================================================
    Observation     ``Text(max_prompt_chars, charset=CHARSET)``: the prompt,
                    ``prompt_template.format(question=...)``
    Action          ``Text(max_completion_chars, charset=CHARSET)``: the completion
    Reward          ``task.reward(completion, target)``: 1.0 for a correct final answer,
                    ``format_reward`` (default 0) for a parsable wrong one, else 0
    Termination     after every step (terminated=True); never truncated
    Info            reset: ``target``, ``question``; step: ``parsed`` (the parsed answer or
                    None), ``correct`` (bool), ``target``
    ==============  =================================================================

    Completions are scored as given: characters outside ``CHARSET`` (e.g. Unicode from a
    tokenizer) and text beyond ``max_completion_chars`` are not rejected (the space bounds what
    ``action_space.sample()`` produces, not what a model may write). Stepping again before
    ``reset`` scores another attempt at the same prompt.

    Args:
        task: a ``VerifiableTask``.
        max_prompt_chars: observation space length bound, default 512; ``reset`` raises if a
            prompt exceeds it.
        max_completion_chars: action space length bound, default 2048.
        prompt_template: format string with ``{question}``; default ``"{question}"``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, task: VerifiableTask, *, max_prompt_chars: int = 512,
                 max_completion_chars: int = 2048, prompt_template: str = "{question}") -> None:
        if not isinstance(task, VerifiableTask):
            raise TypeError(f"task must implement VerifiableTask (name, sample, parse, reward), "
                            f"got {type(task).__name__}")
        self.task = task
        self.max_prompt_chars = _check_int("max_prompt_chars", max_prompt_chars, 1)
        self.max_completion_chars = _check_int("max_completion_chars", max_completion_chars, 1)
        if not isinstance(prompt_template, str) or "{question}" not in prompt_template:
            raise ValueError(f"prompt_template must contain '{{question}}', got {prompt_template!r}")
        bad = sorted(set(prompt_template.replace("{question}", "")) - set(CHARSET))
        if bad:
            raise ValueError(f"prompt_template has characters outside CHARSET (printable ASCII): "
                             f"{bad}")
        self.prompt_template = prompt_template
        self.observation_space = spaces.Text(max_prompt_chars, charset=CHARSET)
        self.action_space = spaces.Text(max_completion_chars, charset=CHARSET)
        self._prompt: str | None = None
        self._target: Any = None

    def _make_prompt(self, question: str) -> str:
        prompt = self.prompt_template.format(question=question)
        if len(prompt) > self.max_prompt_chars:
            raise ValueError(f"a prompt has {len(prompt)} characters, more than "
                             f"max_prompt_chars={self.max_prompt_chars}; raise max_prompt_chars")
        return prompt

    def sample_prompts(self, n: int, rng: np.random.Generator) -> list[tuple[str, Any]]:
        """``n`` fresh (prompt, target) pairs drawn with ``rng`` (independent of ``reset``)."""
        n = _check_int("n", n, 0)
        out = []
        for _ in range(n):
            question, target = self.task.sample(rng)
            out.append((self._make_prompt(question), target))
        return out

    def score(self, completions: Sequence[str], targets: Sequence[Any]) -> np.ndarray:
        """Rewards of ``completions[i]`` against ``targets[i]``, float64 array."""
        if len(completions) != len(targets):
            raise ValueError(f"completions ({len(completions)}) and targets ({len(targets)}) "
                             "must have the same length")
        return np.array([self.task.reward(c, t) for c, t in zip(completions, targets)],
                        dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        question, self._target = self.task.sample(self.np_random)
        self._prompt = self._make_prompt(question)
        return self._prompt, {"target": self._target, "question": question}

    def step(self, action: str):
        if self._prompt is None:
            raise RuntimeError("call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the completion), got {type(action).__name__}")
        parsed = self.task.parse(action)
        reward = float(self.task.reward(action, self._target))
        info = {"parsed": parsed, "correct": reward >= 1.0, "target": self._target}
        return self._prompt, reward, True, False, info

    def __repr__(self) -> str:
        return f"TextTaskEnv({self.task!r})"


_ENV_KEYS = ("max_prompt_chars", "max_completion_chars", "prompt_template")


def _make(task_cls, kwargs: dict) -> TextTaskEnv:
    env_kwargs = {k: kwargs.pop(k) for k in _ENV_KEYS if k in kwargs}
    kwargs.pop("render_mode", None)  # gymnasium.make may pass it; nothing to render
    return TextTaskEnv(task_cls(**kwargs), **env_kwargs)


def make_arithmetic(**kwargs: Any) -> TextTaskEnv:
    """``TextTaskEnv(ArithmeticTask(...))``; env keywords (max_prompt_chars,
    max_completion_chars, prompt_template) go to the env, the rest to the task."""
    return _make(ArithmeticTask, dict(kwargs))


def make_countdown(**kwargs: Any) -> TextTaskEnv:
    """``TextTaskEnv(CountdownTask(...))``; keywords split as in ``make_arithmetic``."""
    return _make(CountdownTask, dict(kwargs))


def make_sequence(**kwargs: Any) -> TextTaskEnv:
    """``TextTaskEnv(SequenceTask(...))``; keywords split as in ``make_arithmetic``."""
    return _make(SequenceTask, dict(kwargs))
