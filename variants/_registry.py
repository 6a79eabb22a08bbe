"""The attention-variant registry: ``register``, ``names``, ``get``, ``create``.

A variant is a class with a frozen-dataclass ``Config`` (its switch axes) and the constructor
``(dim, num_heads, window_size, shift_size=0, cfg=Config())``; it maps ``[B, H, W, C]`` to
``[B, H, W, C]`` and does its own window partition, shift and mask. Named presets are stacked
``@register("name", **switches)`` lines on the class. Variants are found three ways, none of which
needs an edit elsewhere: modules of the ``variants`` package (discovered, ``_``-prefixed helpers
skipped), the entry-point group ``lsla.variants`` (third-party packages), or a direct ``register``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENTRY_POINT_GROUP = "lsla.variants"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_CONTRACT = ("dim", "num_heads", "window_size", "shift_size", "cfg")


@dataclass(frozen=True)
class VariantSpec:
    """One registered preset: the class, its switch values and where it came from."""

    name: str
    cls: type
    config: Any  # frozen dataclass instance holding this preset's switch values
    source: str
    summary: str = field(default="")

    @property
    def switches(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


_REGISTRY: dict[str, VariantSpec] = {}
_loaded = False


def _source_of(cls: type) -> str:
    module = inspect.getmodule(cls)
    path = getattr(module, "__file__", None) or cls.__module__
    return f"{cls.__module__} ({path})"


def _check_contract(cls: type) -> None:
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"variant class {cls.__qualname__} needs a dataclass attribute 'Config'")
    params = inspect.signature(cls).parameters
    missing = [p for p in _CONTRACT if p not in params]
    if missing:
        raise TypeError(
            f"variant class {cls.__qualname__} must accept {', '.join(_CONTRACT)}; "
            f"missing: {', '.join(missing)}"
        )


def register(name: str, **switches: Any) -> Callable[[type], type]:
    """Class decorator registering ``name`` as a preset of the class with the given switch values.

    Raises ``ValueError`` for a malformed or duplicate name and for unknown/invalid switches, so a
    broken preset fails at import time rather than when a sweep reaches it.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"variant name {name!r} must match {_NAME_RE.pattern}")

    def decorator(cls: type) -> type:
        _check_contract(cls)
        if name in _REGISTRY:
            raise ValueError(
                f"variant {name!r} registered twice: {_REGISTRY[name].source} and {_source_of(cls)}"
            )
        config = make_config(cls, switches, context=f"preset {name!r}")
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        _REGISTRY[name] = VariantSpec(name, cls, config, _source_of(cls), doc[0] if doc else "")
        return cls

    return decorator


def unregister(name: str) -> None:
    """Remove a preset (for tests and interactive work)."""
    _REGISTRY.pop(name, None)


def make_config(cls: type, switches: Mapping[str, Any], base: Any = None, context: str = "") -> Any:
    """Build ``cls.Config`` from ``switches`` on top of ``base``, naming any unknown switch."""
    config_cls = cls.Config
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = [k for k in switches if k not in valid]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], valid, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(
            f"{context + ': ' if context else ''}unknown switch {unknown[0]!r}{did_you_mean}; "
            f"valid switches: {', '.join(valid)}"
        )
    base = base if base is not None else config_cls()
    return dataclasses.replace(base, **switches)


def _discover() -> None:
    """Import every public module of this package, then every ``lsla.variants`` entry point."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()  # importing the module runs its @register lines
        except Exception as exc:  # a broken plug-in must be loud, with its name
            raise ImportError(
                f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                f"failed to load: {exc}"
            ) from exc


def names(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell wildcard (``"lsa*"``)."""
    _discover()
    found = sorted(_REGISTRY)
    return found if pattern is None else [n for n in found if fnmatch.fnmatchcase(n, pattern)]


def get(name: str) -> VariantSpec:
    """The spec of ``name``; unknown names raise ``KeyError`` with close matches and all names."""
    _discover()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise KeyError(
            f"unknown attention variant {name!r}; {hint}registered: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def create(
    name: str,
    dim: int,
    num_heads: int,
    window_size: int,
    shift_size: int = 0,
    **switches: Any,
):
    """Build preset ``name`` with optional switch overrides; maps [B,H,W,C] -> [B,H,W,C]."""
    spec = get(name)
    if dim <= 0 or num_heads <= 0 or dim % num_heads:
        raise ValueError(f"dim={dim} must be a positive multiple of num_heads={num_heads}")
    if window_size <= 0:
        raise ValueError(f"window_size={window_size} must be positive")
    if not 0 <= shift_size < window_size:
        raise ValueError(f"shift_size={shift_size} must be in [0, window_size={window_size})")
    cfg = make_config(spec.cls, switches, base=spec.config, context=f"variant {name!r}")
    return spec.cls(
        dim=dim, num_heads=num_heads, window_size=window_size, shift_size=shift_size, cfg=cfg
    )


def validate_choices(config: Any) -> None:
    """Check every ``Literal``/``bool`` field of a config dataclass; name the bad value and choices.

    Call it from a variant's ``Config.__post_init__`` so that bad switches fail when set.
    """
    import typing

    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints.get(f.name)
        if typing.get_origin(hint) is typing.Literal:
            choices = typing.get_args(hint)
            if value not in choices:
                raise ValueError(
                    f"switch {f.name}={value!r} is not valid; choices: "
                    f"{', '.join(repr(c) for c in choices)}"
                )
        elif hint is bool and not isinstance(value, bool):
            raise ValueError(f"switch {f.name}={value!r} is not valid; choices: True, False")
