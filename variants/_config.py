"""The one checker for typed, frozen-dataclass configs (not a variant: leading underscore).

Variant switches (``LSLAAttention.Config``), backbone layouts and every table of an experiment
file are frozen dataclasses whose annotations say what is valid, and this module checks values
against them. Nothing else in the project keeps a list of choices or bounds:

* ``Literal["a", "b"]``: one of the choices; ``bool``, ``int``, ``float`` (ints accepted),
  ``str``, ``tuple[int, ...]``, ``dict``, and ``X | None``.
* ``Annotated[int, Range(1)]``: inclusive bounds; ``Annotated[str, Pattern(r"cuda(:\\d+)?")]``.

``check_fields(cls, values, where)`` rejects unknown keys (with a suggestion) and bad values with
one ``ConfigError`` line naming where, the key, the value and what is valid. ``validate(obj)`` does
the same for an instance, from ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A user-caused configuration problem; the message names the key, the value and the choices."""


@dataclass(frozen=True)
class Range:
    """Inclusive bounds for a number field: ``Annotated[float, Range(0.0, 1.0)]``."""

    low: float | None = None
    high: float | None = None

    def check(self, value: Any) -> str | None:
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            low = "-inf" if self.low is None else self.low
            high = "inf" if self.high is None else self.high
            return f"is out of range [{low}, {high}]"
        return None


@dataclass(frozen=True)
class Pattern:
    """A regular expression a string field must match in full, and its readable form."""

    regex: str
    readable: str

    def check(self, value: Any) -> str | None:
        if re.fullmatch(self.regex, value):
            return None
        return f"is not valid; expected {self.readable}"


def suggest(word: object, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(str(word), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def _split(hint: Any) -> tuple[list[Any], list[Any]]:
    """(allowed types, Range/Pattern metadata) of an annotation."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *meta = typing.get_args(hint)
        return _split(base)[0], list(meta)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        allowed: list[Any] = []
        meta: list[Any] = []
        for arg in typing.get_args(hint):
            a, m = _split(arg)
            allowed += a
            meta += m
        return allowed, meta
    return [hint], []


def _matches(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits one plain (non-union) annotation, and the value to store."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None, value
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return any(value == c and type(value) is type(c) for c in choices), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        item = args[0] if args else Any
        if item is Any:
            return True, tuple(value)
        pairs = [_matches(v, item) for v in value]
        return all(ok for ok, _ in pairs), tuple(v for _, v in pairs)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    if hint is Any:
        return True, value
    return isinstance(value, hint) if isinstance(hint, type) else True, value


def check_value(where: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` (and its Range/Pattern); returns the value to store."""
    allowed, meta = _split(hint)
    for option in allowed:
        ok, stored = _matches(value, option)
        if ok:
            break
    else:
        literal = next((a for a in allowed if typing.get_origin(a) is typing.Literal), None)
        if literal is not None:
            choices = ", ".join(repr(c) for c in typing.get_args(literal))
            raise ConfigError(f"{where}{key}={value!r} is not valid; choices: {choices}")
        names = " or ".join(_type_name(a) for a in allowed)
        raise ConfigError(f"{where}{key}={value!r}: expected {names}")
    if stored is not None:
        for rule in meta:
            problem = rule.check(stored)
            if problem:
                raise ConfigError(f"{where}{key}={value!r} {problem}")
    return stored


def check_fields(
    cls: type, values: Mapping[str, Any], where: str = "", section: str = "", what: str = "key"
) -> dict[str, Any]:
    """``values`` checked against the fields of dataclass ``cls``; unknown keys are named.

    Messages start with ``where`` (a file, say); ``section`` prefixes key names (``train.lr``).
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    checked = {}
    for key, value in values.items():
        if key not in valid:
            table = f"[{section}] " if section else ""
            raise ConfigError(
                f"{where}{table}unknown {what} {key!r}{suggest(key, valid)}; "
                f"valid: {', '.join(valid)}"
            )
        name = f"{section}.{key}" if section else key
        checked[key] = check_value(where, name, value, hints[key])
    return checked


def build(
    cls: type, values: Mapping[str, Any], where: str = "", base: Any = None, what: str = "key"
) -> Any:
    """An instance of ``cls`` from checked ``values`` on top of ``base`` (default: defaults)."""
    checked = check_fields(cls, values, where, what=what)
    return dataclasses.replace(base, **checked) if base is not None else cls(**checked)


def validate(obj: Any, where: str = "") -> None:
    """Check every field of a dataclass instance (call it from ``__post_init__``)."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        check_value(where, f.name, getattr(obj, f.name), hints[f.name])
