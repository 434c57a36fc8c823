"""Reading the command line's config files (TOML, YAML, JSON) and ``--set`` values into plain
data, safely: every problem is one line naming the file and the fix, YAML builds no Python objects,
and nesting and size are bounded, so a hostile or broken file gives an error, never a
``RecursionError``, code execution or memory exhaustion.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_VALUES", "check_nesting", "load_config_file",
           "parse_value"]

# Levels of tables and lists a config may nest (a sweep file needs three or four).
MAX_DEPTH = 32
# Values a config may hold once YAML aliases are expanded (as json.dumps of it would).
MAX_VALUES = 1_000_000
MAX_FILE_BYTES = 16 * 2**20
FORMATS = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}


class _Refused(Exception):
    """Internal: raised inside the YAML loader, turned into the caller's error."""


def check_nesting(value: Any, where: str, error: type[Exception] = ValueError) -> None:
    """Refuse ``value`` (read from ``where``) when its tables and lists nest deeper than
    :data:`MAX_DEPTH` or it holds more than :data:`MAX_VALUES` values with shared parts counted
    each time they appear (a YAML alias bomb is small in memory but not once written out)."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, (Mapping, list, tuple)):
            return 1
        if depth >= MAX_DEPTH:
            raise error(f"{where} nests tables or lists more than {MAX_DEPTH} levels deep; a config "
                        "holds plain values in a few levels of tables: flatten it")
        known = sizes.get(id(node))
        if known is None:
            children = node.values() if isinstance(node, Mapping) else node
            known = 1 + sum(size(child, depth + 1) for child in children)
            sizes[id(node)] = known
        return known

    total = size(value, 0)
    if total > MAX_VALUES:
        raise error(f"{where} holds {total:,} values once its YAML aliases are expanded, more than "
                    f"{MAX_VALUES:,}; write the values out or use fewer aliases")


def _yaml_load(text: str, path: Path, error: type[Exception]) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader (no Python tags) that bounds nesting while composing, before the recursive
        composer could exhaust the stack."""

        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.depth >= MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"{path} nests tables or lists more than {MAX_DEPTH} levels deep (line "
                               f"{mark.line + 1}); a config holds plain values in a few levels of "
                               "tables: flatten it")
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (Loader is a SafeLoader)
    except _Refused as err:
        raise error(str(err)) from None
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise error(f"{path}{at}: {' '.join(str(err.problem).split())}; config files hold plain "
                    "values (strings, numbers, lists, tables), so tags that build Python objects "
                    "(!!python/...) or custom tags are refused") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(err.problem or err.context or "unreadable").split())
        raise error(f"{path} is not valid YAML: {problem}{at}; fix the file") from None
    except yaml.YAMLError as err:
        raise error(f"{path} is not valid YAML: {' '.join(str(err).split())}; fix the file") from None


def load_config_file(path: str | Path, error: type[Exception] = ValueError,
                     formats: tuple[str, ...] = tuple(FORMATS)) -> Any:
    """The plain data of the TOML, YAML or JSON file ``path`` (by its suffix, one of ``formats``);
    every problem raises ``error`` with a one-line message naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"config file {path} does not exist")
    if path.suffix not in formats:
        raise error(f"config file {path} must end in {', '.join(formats)}")
    kind = FORMATS[path.suffix]
    if path.stat().st_size > MAX_FILE_BYTES:
        raise error(f"{path} is {path.stat().st_size:,} bytes, more than a config file needs "
                    f"({MAX_FILE_BYTES:,} at most); is it the right file?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as "
                    "UTF-8") from None
    try:
        if kind == "YAML":
            try:
                import yaml  # noqa: F401
            except ImportError:
                raise error(f"{path} is YAML, which needs PyYAML: pip install pyyaml (or write "
                            "it as TOML)") from None
            loaded = _yaml_load(text, path, error)
        elif kind == "TOML":
            try:
                loaded = tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                raise error(f"{path} is not valid TOML: {err}") from None
        else:
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as err:
                raise error(f"{path} is not valid JSON: {err}") from None
    except RecursionError:
        raise error(f"{path} nests tables or lists too deeply to read; a config holds plain values "
                    "in a few levels of tables: flatten it") from None
    except ValueError as err:
        if isinstance(err, error):
            raise
        # e.g. an integer of thousands of digits, which int() refuses
        raise error(f"{path} holds a value {kind} cannot read ({' '.join(str(err).split())}); fix "
                    "that value") from None
    check_nesting(loaded, str(path), error)
    return loaded


def parse_value(text: str, where: str = "the value", error: type[Exception] = ValueError) -> Any:
    """A command-line value read as TOML (numbers, booleans, [lists], {tables}, "strings"), else
    the bare string; nesting bounded as in files."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise error(f"{where} nests lists or tables too deeply to read; give a plain value") from None
    except ValueError as err:
        raise error(f"{where} cannot be read: {' '.join(str(err).split())}") from None
    check_nesting(value, where, error)
    return value
