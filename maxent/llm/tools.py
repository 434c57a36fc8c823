"""Tool calls for language-model agents: typed Python functions with docstrings become tools
(as TRL takes them), calls are parsed from the model's text in one fixed format and run, and
every failure (a malformed call, an unknown tool, bad arguments, a tool that raises) comes back
as an error message the model reads, never as an exception.

The call format is the one many chat templates (Hermes, Qwen2.5) use::

    <tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>

Only the first ``<tool_call>`` of a reply is read; its JSON is parsed with ``json.loads`` and the
tool is called with the arguments as keywords: model output is never evaluated.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CALL_CLOSE", "CALL_OPEN", "MAX_RESULT_CHARS", "ToolBox", "ToolResult", "find_call",
           "public_methods"]

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
# A tool's result is cut to this many characters: a tool that returns a megabyte must not fill
# the model's context window in one turn.
MAX_RESULT_CHARS = 2000
_OPEN = re.compile(re.escape(CALL_OPEN), re.IGNORECASE)
_CLOSE = re.compile(re.escape(CALL_CLOSE), re.IGNORECASE)
_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array",
               dict: "object"}


@dataclass
class ToolResult:
    """The outcome of one call: the tool's name (``""`` when the call could not be read), the text
    returned to the model, and whether it is an error."""

    name: str
    content: str
    error: bool


def find_call(text: str) -> str | None:
    """The text inside the first ``<tool_call>...</tool_call>`` of ``text`` (an unclosed tag runs
    to the end), or None when the reply makes no call."""
    start = _OPEN.search(text)
    if start is None:
        return None
    end = _CLOSE.search(text, start.end())
    return text[start.end():end.start() if end else len(text)].strip()


def public_methods(obj: Any, exclude: Sequence[str] = ("reset", "get_reward")) -> list[Callable]:
    """The bound public methods of ``obj`` defined by its class (TRL's ``environment_factory``
    convention: they are the tools), listed on the class so properties are not evaluated."""
    return [getattr(obj, name) for name, _ in inspect.getmembers(type(obj), inspect.isfunction)
            if not name.startswith("_") and name not in exclude]


def _describe(fn: Callable) -> dict[str, Any]:
    """A JSON-schema-like description of a function from its signature and docstring."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise ValueError(f"tool {fn!r} has no readable signature; pass a plain Python "
                         "function") from None
    doc = inspect.getdoc(fn)
    if not doc:
        raise ValueError(f"tool {getattr(fn, '__name__', fn)!r} has no docstring: the model reads "
                         "it to know what the tool does; add one")
    properties, required = {}, []
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation
        if isinstance(annotation, str):  # postponed annotations: read the builtin's name
            annotation = {t.__name__: t for t in _JSON_TYPES}.get(annotation, annotation)
        properties[name] = {"type": _JSON_TYPES.get(annotation, "string")}
        if param.default is param.empty:
            required.append(name)
    return {"name": fn.__name__, "description": doc.split("\n\n")[0].replace("\n", " "),
            "parameters": {"type": "object", "properties": properties, "required": required}}


class ToolBox:
    """Tools by name, their descriptions for the prompt, and the parser and runner of calls.

    Args:
        tools: callables with a ``__name__`` and a docstring (functions or bound methods).

    Raises:
        ValueError: a tool without a name or docstring, or two tools with one name.
    """

    def __init__(self, tools: Sequence[Callable]):
        self.tools: dict[str, Callable] = {}
        self.schemas: list[dict[str, Any]] = []
        for fn in tools:
            if not callable(fn) or not getattr(fn, "__name__", None):
                raise ValueError(f"a tool must be a named callable (a function), got {fn!r}")
            if fn.__name__ in self.tools:
                raise ValueError(f"two tools are named {fn.__name__!r}; tool names must differ")
            self.schemas.append({"type": "function", "function": _describe(fn)})
            self.tools[fn.__name__] = fn

    def __bool__(self) -> bool:
        return bool(self.tools)

    def describe(self) -> str:
        """The tools and the call format, as plain text for a system message or a prompt."""
        lines = ["You can call these tools; to call one, reply with exactly one line "
                 f'{CALL_OPEN}{{"name": <tool>, "arguments": {{...}}}}{CALL_CLOSE}']
        for schema in self.schemas:
            fn = schema["function"]
            args = ", ".join(f"{k}: {v['type']}" for k, v in fn["parameters"]["properties"].items())
            lines.append(f"- {fn['name']}({args}): {fn['description']}")
        return "\n".join(lines) + "\n"

    def run(self, text: str) -> ToolResult | None:
        """Run the call in the model's reply ``text``; None when it makes no call. Whatever goes
        wrong becomes an error result that names the problem, so the model can correct itself."""
        body = find_call(text)
        if body is None:
            return None
        try:
            call = json.loads(body)
        except ValueError as err:
            return ToolResult("", f"error: the tool call is not valid JSON ({err.msg}); write "
                              f'{CALL_OPEN}{{"name": ..., "arguments": {{...}}}}{CALL_CLOSE}', True)
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return ToolResult("", 'error: a tool call is a JSON object with a "name" string', True)
        name, arguments = call["name"], call.get("arguments", {})
        if name not in self.tools:
            return ToolResult(name, f"error: no tool named {name!r}; the tools are "
                              f"{sorted(self.tools)}", True)
        if not isinstance(arguments, dict):
            return ToolResult(name, f'error: "arguments" of {name} must be a JSON object', True)
        try:
            inspect.signature(self.tools[name]).bind(**arguments)
        except TypeError as err:
            return ToolResult(name, f"error: bad arguments for {name}: {err}", True)
        try:
            value = self.tools[name](**arguments)
        except Exception as err:  # noqa: BLE001  (a tool's failure is the model's observation)
            return ToolResult(name, f"error: {name} raised {type(err).__name__}: {err}", True)
        return ToolResult(name, str(value)[:MAX_RESULT_CHARS], False)
