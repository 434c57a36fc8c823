"""Parsing a command's flags with tyro, in the command line's own style: a rejected flag or value is
one line (``maxent train sac: unrecognized options: --bogus; did you mean ...``) raised as a
:class:`~maxent.training.run.UsageError`, and ``--help`` reads as plain text (the reStructuredText
of the config docstrings it is made from rendered, module constants shown by their values).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import tyro

from maxent.training.run import UsageError

__all__ = ["OneLineArgumentParser", "clean_help", "one_line_error", "parse"]

# :class:`~a.b.C`, :func:`f`, :mod:`m`... -> the target (its last part with ~).
_ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|obj|exc|const|ref|doc|term):"
                   r"`(~?)([^`<]*?)(?:\s*<([^`>]*)>)?`")
_LITERAL = re.compile(r"``(.*?)``")
_CONSTANT = re.compile(r"``([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)``")
_BOX = "│╭╮╰╯"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A constant's value is shown in place of its name only when it is this short.
_SHORT = 24


def _role(match: re.Match) -> str:
    tilde, text, target = match.groups()
    text = text.strip() or (target or "")
    return text.rsplit(".", 1)[-1] if tilde else text


def _constant(match: re.Match, namespaces: Sequence[ModuleType]) -> str:
    name = match.group(1)
    for module in namespaces:
        if name in vars(module):
            value = vars(module)[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                break
            text = repr(value) if isinstance(value, str) else str(value)
            return text if len(text) <= _SHORT else f"{module.__name__}.{name}"
    return name  # not one of ours (an environment variable, say): the name is what a user types


def clean_help(text: str, namespaces: Iterable[ModuleType] = ()) -> str:
    """``text`` (tyro's help) with reStructuredText roles and literals rendered as plain text and
    ``UPPER_CASE`` constants of ``namespaces`` replaced by their values (or their full import
    path when long); box borders stay aligned."""
    namespaces = list(namespaces)
    lines = []
    for line in text.splitlines():
        new = _CONSTANT.sub(lambda m: _constant(m, namespaces), line)
        new = _ROLE.sub(_role, new)
        new = _LITERAL.sub(r"\1", new).replace("``", "")
        border = new.rfind("│")
        if new != line and border > 0:  # keep the box's right border where it was
            delta = len(line) - len(new)
            head, tail = new[:border], new[border:]
            if delta > 0:
                head += " " * delta
            else:
                spare = len(head) - len(head.rstrip(" ")) - 1
                head = head[:len(head) - max(0, min(spare, -delta))]
            new = head + tail
        lines.append(new)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def _segments(text: str) -> tuple[str, list[list[str]]]:
    """Title and separator-delimited blocks of lines of one of tyro's error boxes (drawn with
    Unicode lines, or ASCII ones where stdout is not UTF-8)."""
    lines = [line.strip().strip(_BOX).strip() for line in _ANSI.sub("", text).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "", []
    title, blocks, block = lines[0].strip("─- "), [], []
    for line in lines[1:]:
        if not line.strip("─-"):
            blocks.append(block)
            block = []
        else:
            block.append(line)
    blocks.append(block)
    return title, [b for b in blocks if b]


def one_line_error(text: str, prog: str) -> str:
    """One line for tyro's error box ``text``: the problem, the flags it suggests, and where the
    help is."""
    title, blocks = _segments(text)
    if not blocks:
        blocks = [[title or "bad command line"]]
    message = " ".join(blocks[0])
    # A union's per-type failures follow "Got errors:"; the sentence before says what failed.
    message = message.split(" Got errors:")[0]
    if message.startswith("Error parsing "):
        message = message[len("Error parsing "):]
    suggestions = []
    for block in blocks[1:]:
        if block[0].startswith("Perhaps you meant"):
            suggestions = [m.group(0) for line in block[1:]
                           if (m := re.match(r"--[\w.-]+", line))]
    message = message[:1].lower() + message[1:]
    if suggestions:
        message += f"; did you mean {' or '.join(suggestions[:3])}?"
    message = " ".join(message.split())
    return f"{prog}: {message} (see `{prog} --help`)"


def parse(cls: Any, argv: Sequence[str], prog: str,
          namespaces: Iterable[ModuleType] = ()) -> Any:
    """``tyro.cli(cls, args=argv, prog=prog)``, its help cleaned by :func:`clean_help` and its
    errors raised as a one-line :class:`UsageError`."""
    out, err = _Capture(sys.stdout), _Capture(sys.stderr)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            parsed = tyro.cli(cls, args=list(argv), prog=prog)
    except SystemExit as exit_:
        if exit_.code in (0, None):  # --help
            sys.stdout.write(clean_help(out.getvalue(), namespaces))
            raise
        raise UsageError(one_line_error(err.getvalue() or out.getvalue(), prog)) from None
    # What else was printed while parsing (a default factory's warning, say) is passed on.
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())
    return parsed


class _Capture(io.StringIO):
    """A buffer that tyro takes for the stream it replaces (the same encoding and terminal), so
    the help it renders looks as it would have on that stream."""

    def __init__(self, like: Any):
        super().__init__()
        self._like = like

    @property
    def encoding(self) -> str:
        return getattr(self._like, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        try:
            return bool(self._like.isatty())
        except (AttributeError, ValueError):
            return False


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one :class:`UsageError` line, as tyro's are here
    (argparse itself prints the whole usage block before its message)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")
