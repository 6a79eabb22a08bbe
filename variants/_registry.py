"""The attention-variant registry: ``register``, ``names``, ``get``, ``create``, ``resolve``.

What a variant class must be and may declare is written in ``variants/_contract.py`` and checked
here, when the class is registered. Named presets are stacked ``@register("name", **switches)``
lines on the class. Variants are found three ways, none of which needs an edit elsewhere: modules
of the ``variants`` package (discovered, ``_``-prefixed helpers skipped), the entry-point group
``lsla.variants`` (third-party packages), or a direct ``register`` call.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from variants._config import ConfigError, build, suggest
from variants._contract import AttentionRecorder, Capabilities

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

    @property
    def capabilities(self) -> Capabilities:
        return self.cls.capabilities


_REGISTRY: dict[str, VariantSpec] = {}
_loaded = False


def _source_of(cls: type) -> str:
    module = inspect.getmodule(cls)
    path = getattr(module, "__file__", None) or cls.__module__
    return f"{cls.__module__} ({path})"


def _check_contract(cls: type) -> None:
    """The checks of ``variants/_contract.py``; a class that fails them is never registered."""
    name = cls.__qualname__
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"variant class {name} needs a frozen dataclass attribute 'Config'")
    if not config_cls.__dataclass_params__.frozen:
        raise TypeError(f"variant class {name}: Config must be frozen (@dataclass(frozen=True))")
    params = inspect.signature(cls).parameters
    missing = [p for p in _CONTRACT if p not in params]
    if missing:
        raise TypeError(
            f"variant class {name} must accept {', '.join(_CONTRACT)}; "
            f"missing: {', '.join(missing)}"
        )
    caps = cls.__dict__.get("capabilities", None)
    if caps is None:
        cls.capabilities = Capabilities()
    elif not isinstance(caps, Capabilities):
        raise TypeError(f"variant class {name}: capabilities must be a variants.Capabilities")
    caps = cls.capabilities
    if caps.records_attention and not issubclass(cls, AttentionRecorder):
        raise TypeError(
            f"variant class {name} declares records_attention but does not mix in "
            "variants.AttentionRecorder"
        )
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if caps.fused_switch is not None and caps.fused_switch not in fields:
        raise TypeError(
            f"variant class {name}: fused_switch {caps.fused_switch!r} is not a Config field"
        )


def capabilities_of(module: object) -> Capabilities | None:
    """The capabilities a registered variant class declared; None for any other module."""
    _discover()
    cls = type(module)
    if any(spec.cls is cls for spec in _REGISTRY.values()):
        return cls.capabilities
    return None


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
    """``cls.Config`` from ``switches`` on top of ``base``; unknown or bad switches are named."""
    where = f"{context}: " if context else ""
    return build(cls.Config, switches, where=where, base=base, what="switch")


def resolve(name: str, switches: Mapping[str, Any] | None = None, where: str = "") -> Any:
    """The ``Config`` that ``create(name, **switches)`` would use; every error is a ConfigError."""
    try:
        spec = get(name)
    except KeyError as exc:
        raise ConfigError(f"{where}{exc.args[0]}") from None
    return make_config(
        spec.cls, switches or {}, base=spec.config, context=f"{where}variant {name!r}"
    )


def import_public_modules(package_name: str) -> None:
    """Import every module of a package whose name does not start with ``_`` (its helpers):
    how one-file-per-entry registries (variants, datasets) find their entries."""
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")


def _discover() -> None:
    """Import every public module of this package, then every ``lsla.variants`` entry point."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_public_modules(__package__)
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
        raise KeyError(
            f"unknown attention variant {name!r}{suggest(name, _REGISTRY)}; registered: "
            f"{', '.join(sorted(_REGISTRY))} (see python -m harness list)"
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
