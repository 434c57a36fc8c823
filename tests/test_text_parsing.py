"""Tests that the completion parsers of envs/text.py and envs/text_bandit.py do bounded,
linear work on adversarial completions, never raise, and agree with simple reference parsers."""

from __future__ import annotations

import re
import string
import types
from fractions import Fraction
from unittest import mock

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from maxent.envs import text as text_mod
from maxent.envs import text_bandit as bandit_mod
from maxent.envs.text import (
    ANSWER_WINDOW,
    ArithmeticTask,
    CountdownTarget,
    CountdownTask,
    SequenceTask,
    evaluate_expression,
    make_arithmetic,
    make_countdown,
    parse_final_integer,
)
from maxent.envs.text_bandit import MAX_ACTION_CHARS, parse_action

MB = 1 << 20
NAMES = ("Button 1", "Button 2")

# --------------------------------------------------------------------------- reference parsers
# The parsers as they were before the linear-time rewrite (regexes over the whole text), with
# one documented change: an answer tag's content holds no further <answer>, so unclosed tags
# before the final answer are skipped. They are quadratic on adversarial text: use them on
# short texts only.

_REF_TAG = re.compile(r"<answer>((?:(?!<answer>).)*?)</answer>", re.DOTALL | re.IGNORECASE)
_REF_MARK = re.compile(r"(?:answer\s*(?:is)?\s*[:=]?|####|=)\s*", re.IGNORECASE)
_REF_NUMBER = re.compile(r"(?<![\w.])([-\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")


def ref_parse_final_integer(completion):
    tags = _REF_TAG.findall(completion)
    marks = list(_REF_MARK.finditer(completion))
    if tags:
        region, marked = tags[-1], True
    elif marks:
        region, marked = completion[marks[-1].end():], True
    else:
        region, marked = completion, False
    numbers = list(_REF_NUMBER.finditer(region))
    if not numbers:
        return None
    sign, digits, frac = (numbers[0] if marked else numbers[-1]).groups()
    digits = digits.replace(",", "")
    if len(digits) > 30 or (frac and frac.strip(".0")):
        return None
    return -int(digits) if sign else int(digits)


def ref_countdown_parse(completion):
    tags = _REF_TAG.findall(completion)
    if tags:
        texts = [tags[-1].strip()]
    else:
        lines = [ln.strip() for ln in completion.strip().splitlines() if ln.strip()]
        texts = []
        if lines:
            text = lines[-1].rstrip(".")
            for line in reversed(lines):
                if "=" in line:
                    text = line.split("=")[0]
                    break
            text = text.strip()[-200:]
            texts = [text[i:] for i, ch in enumerate(text) if ch.isdigit() or ch == "("]
    for text in texts:
        result = evaluate_expression(text)
        if result is not None:
            value = result[0]
            return int(value) if value.denominator == 1 else value
    return None


_REF_ACTION_LINE = re.compile(r"^\s*\**\s*action\s*\**\s*:\s*(.*)$", re.IGNORECASE)
_REF_VERBS = re.compile(r"^(?:i\s+)?(?:will\s+)?(?:choose|press|pick|select)\s+", re.IGNORECASE)


def ref_parse_action(completion, names):
    rest = None
    for line in completion.splitlines():
        m = _REF_ACTION_LINE.match(line)
        if m:
            rest = m.group(1)
            break
    if rest is None:
        return None
    lowered = _REF_VERBS.sub("", rest.strip()).lstrip("*\"'` ").lower()
    for i in sorted(range(len(names)), key=lambda j: -len(names[j])):
        name = names[i].lower()
        if lowered.startswith(name) and not lowered[len(name):len(name) + 1].isalnum():
            tail = lowered[len(name):]
            others = [n.lower() for j, n in enumerate(names) if j != i]
            if any(re.search(rf"(?<![a-z0-9]){re.escape(o)}(?![a-z0-9])", tail) for o in others):
                return None
            return i
    return None


# --------------------------------------------------------------------------- work is bounded

_TEXT_METHODS = ("match", "fullmatch", "search", "finditer", "findall", "split", "sub", "subn")


class _Recorder:
    """Stands in for ``re`` patterns: records the length of every text a regex is run on, and
    refuses one longer than ``limit`` (so a parser that scans the whole completion fails at once
    instead of running its quadratic regex on a megabyte)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.calls = limit, []

    def record(self, method: str, text: str, pos: int = 0, endpos: int | None = None) -> None:
        end = len(text) if endpos is None else min(endpos, len(text))
        scanned = max(0, end - pos)
        self.calls.append((method, scanned))
        if scanned > self.limit:
            raise AssertionError(f"{method} ran on {scanned} characters, more than {self.limit}")

    def pattern(self, compiled: re.Pattern) -> object:
        recorder = self

        class Spy:
            def __getattr__(self, name):
                attr = getattr(compiled, name)
                if name not in _TEXT_METHODS:
                    return attr

                def spy(*args, **kwargs):
                    method = f"{compiled.pattern[:20]}.{name}"
                    if name in ("sub", "subn"):
                        recorder.record(method, args[1])
                    elif name == "split":
                        recorder.record(method, args[0])
                    else:  # (string, pos, endpos)
                        recorder.record(method, *args[:3])
                    return attr(*args, **kwargs)
                return spy
        return Spy()

    def module(self) -> types.SimpleNamespace:
        """A stand-in for the ``re`` module whose text functions record too."""
        ns = types.SimpleNamespace(**{k: getattr(re, k) for k in dir(re) if not k.startswith("__")})
        for name in _TEXT_METHODS:
            def spy(pattern, *args, _name=name, **kwargs):
                return getattr(self.pattern(re.compile(pattern)), _name)(*args, **kwargs)
            setattr(ns, name, spy)
        return ns

    def install(self, monkeypatch, module) -> None:
        for name, value in list(vars(module).items()):
            if isinstance(value, re.Pattern):
                monkeypatch.setattr(module, name, self.pattern(value))
        monkeypatch.setattr(module, "re", self.module())


def adversarial(size: int) -> str:
    """Text of at least ``size`` characters built from what made the old parsers slow: unclosed
    <answer> tags, long digit runs, runs of "=", deep parentheses, whitespace, thousands commas,
    dotted numbers, repeated answer markers and "Action" headers without a colon."""
    pieces = ["<answer>" * 200, "9" * 3000 + "x", "=" * 2000, "(" * 1500 + "1" + ")" * 1500,
              " " * 3000, "<ANSWER>1,234," * 100, "1." * 800, "answer is " * 100,
              "action" + " " * 2000 + "\n", "*" * 500 + " " * 500 + "\n", "#### =\n" * 50,
              "\u22121" * 300, "<answer>(" * 300 + "\n"]
    out, n = [], 0
    while n < size:
        for p in pieces:
            out.append(p)
            n += len(p)
    return "".join(out)


JUNK = adversarial(MB)
JUNK2 = adversarial(2 * MB)


# Pushes the junk's answer markers and "=" lines out of the answer window.
BLANK = " \n" * ANSWER_WINDOW


@pytest.mark.parametrize("tail, expected", [
    ("<answer>42</answer>", 42),          # after many unclosed <answer> tags
    ("\nThe answer is 42.", 42),
    ("\n#### -7", -7),
    (BLANK + "so it is 1,234", 1234),     # no marker in the window: the last number
])
def test_parse_final_integer_reads_a_bounded_suffix_of_a_megabyte(monkeypatch, tail, expected):
    recorder = _Recorder(ANSWER_WINDOW)
    recorder.install(monkeypatch, text_mod)
    assert parse_final_integer(JUNK + tail) == expected
    calls = list(recorder.calls)
    assert calls and max(n for _, n in calls) <= ANSWER_WINDOW
    # The work does not grow with the completion: twice the junk, the same regex calls.
    recorder.calls.clear()
    assert parse_final_integer(JUNK2 + tail) == expected
    assert recorder.calls == calls


@pytest.mark.parametrize("tail", ["<answer>(3 + 4) * 5</answer>", "\nso (3 + 4) * 5 = 35",
                                  BLANK + "Answer: 5 * (4 + 3)"])
def test_countdown_reads_a_bounded_suffix_of_a_megabyte(monkeypatch, tail):
    recorder = _Recorder(ANSWER_WINDOW)
    recorder.install(monkeypatch, text_mod)
    task = CountdownTask()
    assert task.parse(JUNK + tail) == 35
    calls = list(recorder.calls)
    assert calls and max(n for _, n in calls) <= ANSWER_WINDOW
    recorder.calls.clear()
    assert task.reward(JUNK2 + tail, CountdownTarget((3, 4, 5), 35)) == 1.0
    assert recorder.calls == calls


def test_text_envs_score_a_megabyte_completion(monkeypatch):
    recorder = _Recorder(ANSWER_WINDOW)
    recorder.install(monkeypatch, text_mod)
    env = make_arithmetic(difficulty=3)
    _, info = env.reset(seed=0)
    _, reward, *_, step_info = env.step(JUNK + f"<answer>{info['target']}</answer>")
    assert reward == 1.0 and step_info["parsed"] == info["target"]
    env = make_countdown(difficulty=1)
    env.reset(seed=0)
    _, reward, *_, step_info = env.step(JUNK)
    assert reward == 0.0 and step_info["parsed"] is None
    assert max(n for _, n in recorder.calls) <= ANSWER_WINDOW


def test_answer_tags_skip_unclosed_ones_and_extra_closing_ones():
    assert parse_final_integer("<answer>3 <answer>4</answer>") == 4
    assert parse_final_integer("<answer>" * 5000 + "17</answer>") == 17
    assert parse_final_integer("<answer>4</answer></answer>") == 4
    assert parse_final_integer("<Answer>1</answer> then <answer>2</ANSWER> <answer>9") == 2
    assert CountdownTask().parse("<answer>(3 + <answer>(3 + 4) * 5</answer>") == 35


def test_only_the_last_window_is_read():
    assert parse_final_integer("The answer is 42." + " " * ANSWER_WINDOW) is None
    assert parse_final_integer("The answer is 42." + " " * (ANSWER_WINDOW - 20)) == 42
    assert CountdownTask().parse("<answer>3 * 4</answer>" + "\n" * ANSWER_WINDOW) is None
    assert parse_action(" " * MAX_ACTION_CHARS + "\nAction: Button 1", NAMES) is None
    assert parse_action(" " * (MAX_ACTION_CHARS - 20) + "\nAction: Button 1", NAMES) == 0


def test_parse_action_reads_a_bounded_prefix_of_a_megabyte(monkeypatch):
    recorder = _Recorder(MAX_ACTION_CHARS)
    recorder.install(monkeypatch, bandit_mod)
    head = " " * 4000 + "\n" + "action" + " " * 4000 + "\n" + "** " * 1000 + "\n"
    assert parse_action(head + "Action: I choose Button 2.\n" + JUNK, NAMES) == 1
    calls = list(recorder.calls)
    assert calls and max(n for _, n in calls) <= MAX_ACTION_CHARS
    recorder.calls.clear()
    assert parse_action(head + "Action: I choose Button 2.\n" + JUNK2, NAMES) == 1
    assert recorder.calls == calls
    # The action line is cut at the prefix's end; a second button before the cut still counts.
    assert parse_action("**Action:** Button 1" + " " * 5000 + "." + JUNK, NAMES) == 0
    assert parse_action("Action: Button 1" + " " * 5000 + "or Button 2" + JUNK, NAMES) is None
    # An action line that starts after the prefix is not read: the completion is invalid.
    assert parse_action(JUNK + "\nAction: I choose Button 1.", NAMES) is None
    assert max(n for _, n in recorder.calls) <= MAX_ACTION_CHARS


# --------------------------------------------------------------------------- properties

# Text assembled from the pieces the parsers react to, plus arbitrary characters.
_PIECES = ["<answer>", "</answer>", "<ANSWER>", "</Answer>", "answer", "Answer is", "answer:",
           ":", "=", "####", " ", "  ", "\n", "\t", "0", "7", "12", "999", "1234567", ",", ".",
           "-", "\u2212", "(", ")", "+", "*", "/", "x", "\u00d7", "\u017f", "Action", "action:",
           "**", "I choose", "press", "Button 1", "button 2", "Button 10"]
texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=3)), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), texts))
def test_parsers_never_raise(text):
    value = parse_final_integer(text)
    assert value is None or isinstance(value, int)
    for task in (ArithmeticTask(), SequenceTask(), CountdownTask()):
        task.parse(text)
    target = CountdownTarget((3, 4, 5), 35)
    assert CountdownTask().reward(text, target) in (0.0, 1.0)
    assert evaluate_expression(text) is None or isinstance(evaluate_expression(text)[0], Fraction)
    assert parse_action(text, NAMES) in (None, 0, 1)
    assert parse_action(text, ("Button 1", "Button 10", "red")) in (None, 0, 1, 2)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_parsers_agree_with_the_reference_on_short_texts(text):
    assert parse_final_integer(text) == ref_parse_final_integer(text)
    assert CountdownTask().parse(text) == ref_countdown_parse(text)
    assert parse_action(text, NAMES) == ref_parse_action(text, NAMES)
    names = ("Button 1", "Button 10")
    assert parse_action(text, names) == ref_parse_action(text, names)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6).map("".join))
def test_long_texts_are_read_through_the_window(text):
    with mock.patch.object(text_mod, "ANSWER_WINDOW", 32), \
            mock.patch.object(bandit_mod, "MAX_ACTION_CHARS", 32):
        assert parse_final_integer(text) == ref_parse_final_integer(text[-32:])
        assert CountdownTask().parse(text) == ref_countdown_parse(text[-32:])
        assert parse_action(text, NAMES) == ref_parse_action(text[:32], NAMES)


# Prose: no digits, no markers, no tags, no "Action:".
prose = st.text(alphabet=string.ascii_letters + " ,;!?'", max_size=40).filter(
    lambda p: "answer" not in p.lower() and "action" not in p.lower())
integers = st.integers(-10**12, 10**12)


def _written(n: int, style: int) -> str:
    if style == 1:
        return f"{n:,}"
    if style == 2:
        return f"{n}.0"
    if style == 3 and n < 0:
        return f"\u2212{-n}"
    return str(n)


@settings(max_examples=300, deadline=None)
@given(before=prose, after=prose, n=integers, style=st.integers(0, 3), form=st.integers(0, 4))
def test_well_formed_integer_answers_are_read(before, after, n, style, form):
    written = _written(n, style)
    completion = [f"{before}<answer>{written}</answer>{after}",
                  f"{before} The answer is {written}. {after}",
                  f"{before}\nAnswer: {written}\n{after}",
                  f"{before}\n#### {written}",
                  f"{before} {written}"][form]
    assert parse_final_integer(completion) == n
    assert ArithmeticTask().reward(completion, n) == 1.0


def _expressions(depth: int):
    leaf = st.integers(1, 50).map(lambda v: (str(v), Fraction(v), [v]))
    if depth == 0:
        return leaf

    def combine(args):
        (left, lv, ln), op, (right, rv, rn) = args
        if op == "/" and rv == 0:
            return None
        value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else None}[op]
        return f"({left} {op} {right})", value, ln + rn
    sub = _expressions(depth - 1)
    node = st.tuples(sub, st.sampled_from("+-*/"), sub).map(combine).filter(lambda e: e)
    return st.one_of(leaf, node)


@settings(max_examples=300, deadline=None)
@given(expr=_expressions(3), before=prose, form=st.integers(0, 2))
def test_well_formed_countdown_answers_are_read(expr, before, form):
    text, value, numbers = expr
    assume(len(text) <= 150)  # the no-tag forms look at a line's last 200 characters
    completion = [f"{before}\n<answer>{text}</answer>",
                  f"{before}\nso {text} = {value}",
                  f"{before}\nAnswer: {text}"][form]
    expected = int(value) if value.denominator == 1 else value
    assert CountdownTask().parse(completion) == expected
    if value.denominator == 1 and 1 <= value:
        target = CountdownTarget(tuple(sorted(numbers)), int(value))
        assert CountdownTask().reward(completion, target) == 1.0


names_st = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits + " ", min_size=1, max_size=10)
    .map(str.strip).filter(lambda s: s and not re.match(r"(?i)(i|will|choose|press|pick|select)"
                                                        r"(\s|$)", s)),
    min_size=2, max_size=5, unique_by=str.lower)


@settings(max_examples=300, deadline=None)
@given(names=names_st, data=st.data(), thought=prose, verb=st.sampled_from(
    ["", "I choose ", "I press ", "pick ", "I will select ", "**"]))
def test_well_formed_actions_are_read(names, data, thought, verb):
    i = data.draw(st.integers(0, len(names) - 1))
    completion = f"Thought: {thought}\nAction: {verb}{names[i]}.\nignored: {names[0]}"
    assert parse_action(completion, names) == i
