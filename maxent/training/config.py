"""Agent configs: dataclasses that are the single source of an agent's defaults, of its command line,
of the saved ``config.json`` and of validation.

:class:`AgentConfig` checks every field against its annotation before the agent's own
``__post_init__`` runs, in one place for every agent: ``batch_size=2.5`` or ``buffer_size="big"``
fail at construction naming the field, a float field must be finite (``learning_rate=inf`` never
reaches an optimiser), and values are normalised (``1e6`` for an int field becomes ``1000000``,
a list for a tuple field becomes a tuple), so a config read back from JSON equals the original.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

__all__ = ["RESUMABLE_CHANGES", "AgentConfig", "ConfigError", "check_choice", "check_range",
           "closest_field", "unknown_fields_error"]

# Config fields that may differ between a checkpoint and the run resuming it: they change how a
# run executes (where, how fast, how often it logs), not what it learns.
RESUMABLE_CHANGES = frozenset({"device", "compile", "precision", "torch_threads", "log_interval",
                               "vectorization"})


class ConfigError(ValueError, TypeError):
    """A config field has a value of the wrong type or out of range (both a ``ValueError`` and a
    ``TypeError``, so either ``except`` catches it)."""


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "None"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        inner = _describe(args[0]) if args else "values"
        return f"a sequence of {inner}s"
    return {bool: "a bool", int: "an integer", float: "a finite number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


class _Mismatch(Exception):
    """Internal: ``value`` does not fit ``hint`` (turned into a ConfigError naming the field)."""


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` normalised to ``hint``, or :class:`_Mismatch`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        # bool before int/float: True must not become 1 where a bool is allowed.
        for candidate in sorted((a for a in args if a is not type(None)), key=lambda a: a is not bool):
            try:
                return _coerce(value, candidate)
            except _Mismatch:
                continue
        raise _Mismatch
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    if hint is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise _Mismatch
    if hint is int:
        if isinstance(value, (bool, np.bool_)):
            raise _Mismatch
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            return int(value)  # 1e6 from a user who writes step counts as floats
        raise _Mismatch
    if hint is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise _Mismatch
        value = float(value)
        if not math.isfinite(value):
            raise _Mismatch
        return value
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin in (tuple, list):
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (tuple, list, np.ndarray)):
            raise _Mismatch
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise _Mismatch
            return tuple(_coerce(v, a) for v, a in zip(items, args))
        inner = args[0] if args else Any
        converted = [_coerce(v, inner) for v in items]
        return tuple(converted) if origin is tuple else converted
    if hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise _Mismatch
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _field_hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        resolved = typing.get_type_hints(cls)
        hints = {f.name: resolved[f.name] for f in dataclasses.fields(cls) if f.name in resolved}
        _HINTS[cls] = hints
    return hints


def check_field_types(config: Any) -> None:
    """Check and normalise every field of the dataclass ``config`` against its annotation."""
    owner = type(config).__name__
    for name, hint in _field_hints(type(config)).items():
        value = getattr(config, name)
        try:
            normalised = _coerce(value, hint)
        except _Mismatch:
            extra = ""
            if isinstance(value, float) and not math.isfinite(value):
                extra = " (NaN and inf are refused: they would reach the optimiser or the env)"
            raise ConfigError(f"{owner}.{name} must be {_describe(hint)}, got {value!r} "
                              f"({type(value).__name__}){extra}") from None
        if normalised is not value:
            object.__setattr__(config, name, normalised)


def check_choice(owner: str, name: str, value: Any, allowed: Sequence[Any]) -> None:
    """ConfigError ``"<owner>.<name> must be one of [...], got <value>"`` unless ``value`` is in
    ``allowed``; one message for every config's enumerated fields (an empty ``owner`` names just
    the field)."""
    if value not in allowed:
        field = f"{owner}.{name}" if owner else name
        raise ConfigError(f"{field} must be one of {list(allowed)}, got {value!r}")


def check_range(owner: str, name: str, value: Any, low: float, high: float, *,
                open_low: bool = False, open_high: bool = False, allow_none: bool = False,
                kind: str = "") -> None:
    """ConfigError ``"<owner>.<name> must be [kind ]in [low, high], got <value>"`` unless ``value``
    lies in that interval (``open_low`` / ``open_high`` exclude an end; NaN never lies in it);
    with ``allow_none`` a None passes and the message says so."""
    if value is None and allow_none:
        return
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not (above and below):
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        field = f"{owner}.{name}" if owner else name
        raise ConfigError(f"{field} must be {kind + ' ' if kind else ''}in {interval}"
                          f"{' or None' if allow_none else ''}, got {value!r}")


def closest_field(name: str, valid: Sequence[str]) -> str | None:
    """The valid field ``name`` most likely stands for: one whose words' initials it is (``lr`` for
    ``learning_rate``), else the most similar spelling."""
    import difflib

    key = name.lower().replace("-", "_")
    for field_name in valid:
        if len(key) > 1 and key == "".join(word[:1] for word in field_name.split("_") if word):
            return field_name
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.0)
    return match[0] if match else None


def unknown_fields_error(owner: str, unknown: Sequence[str], valid: Sequence[str]) -> ConfigError:
    """The one-line error for fields ``owner`` does not have: each unknown one, the closest valid
    field, and every valid field."""
    valid = sorted(valid)
    first = sorted(unknown)[0]
    closest = closest_field(first, valid)
    names = ", ".join(repr(u) for u in sorted(unknown))
    hint = f" (closest valid field: {closest!r})" if closest else ""
    return ConfigError(f"unknown {owner} field{'s' if len(unknown) > 1 else ''} {names}{hint}; "
                       f"valid fields: {', '.join(valid)}")


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` as one bool; values whose comparison is not one (arrays) count as different."""
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return False


class AgentConfig:
    """Base of an agent's config dataclass: field types checked first, then the config's own
    ``__post_init__`` (its range checks); the JSON form saved in ``config.json`` and read back.

    Tuples become lists in JSON (as JSON has them) and back to tuples on reading, so a saved config
    compares equal to a fresh one. An unknown keyword (``SACConfig(lr=1)``) is refused by name with
    the closest valid field, before the dataclass's own ``__init__`` would raise a bare TypeError.
    :attr:`passed_fields` names the fields the constructor was given, so that a preset can fill
    the others and leave a value the caller chose alone, even one equal to the default.
    """

    def __new__(cls, *args: Any, **kwargs: Any):
        passed: frozenset[str] = frozenset()
        if dataclasses.is_dataclass(cls):
            known = cls.field_names()
            unknown = [k for k in kwargs if k not in known]
            if unknown:
                raise unknown_fields_error(cls.__name__, unknown, known)
            passed = frozenset(known[:len(args)]) | frozenset(kwargs)
        instance = super().__new__(cls)
        object.__setattr__(instance, "_passed_fields", passed)
        return instance

    @property
    def passed_fields(self) -> frozenset[str]:
        """The fields given to the constructor (by keyword or position); the rest took defaults."""
        return self.__dict__.get("_passed_fields", frozenset())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is None or getattr(own, "_checks_types", False):
            return

        def __post_init__(self) -> None:
            check_field_types(self)
            own(self)

        __post_init__._checks_types = True  # type: ignore[attr-defined]
        __post_init__.__doc__ = own.__doc__
        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]

    def __post_init__(self) -> None:
        check_field_types(self)

    def require(self, names: Sequence[str], *, above: float | None = None,
                at_least: float | None = None, allow_none: bool = False) -> None:
        """Range checks for ``__post_init__``: every field in ``names`` must be ``> above`` (or
        ``>= at_least``); with ``allow_none`` a None passes. The first that is not (NaN included)
        raises ConfigError naming it."""
        for name in names:
            value = getattr(self, name)
            if value is None and allow_none:
                continue
            if not (value > above if above is not None else value >= at_least):
                bound = f"> {above:g}" if above is not None else f">= {at_least:g}"
                raise ConfigError(f"{type(self).__name__}.{name} must be {bound}"
                                  f"{' or None' if allow_none else ''}, got {value!r}")

    def require_counts(self, names: Sequence[str]) -> None:
        """Every field in ``names`` must be a whole number >= 1 (a bool is not one); each is stored
        as an int. The first that is not raises ConfigError naming it."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ConfigError(f"{type(self).__name__}.{name} must be an integer >= 1, got "
                                  f"{value!r}")
            setattr(self, name, int(value))

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))  # type: ignore[call-overload]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: dict[str, Any], **overrides: Any):
        """Rebuild from :meth:`to_json` output; unknown fields are rejected by name."""
        known = set(cls.field_names())
        unknown = sorted((set(data) | set(overrides)) - known)
        if unknown:
            raise unknown_fields_error(cls.__name__, unknown, known)
        return cls(**{**data, **overrides})

    def replace(self, **changes: Any):
        """A copy with ``changes`` (validated like a fresh config); unknown fields named. The copy
        is given the fields this config was given or holds away from their defaults, so a field
        that only took its default stays unset (a preset in ``changes`` fills it)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise unknown_fields_error(type(self).__name__, unknown, self.field_names())
        kept = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in changes or not f.init:
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name in self.passed_fields or default is dataclasses.MISSING or not _equal(value, default):
                kept[f.name] = value
        return type(self)(**kept, **changes)
