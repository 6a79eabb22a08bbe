"""The dataset registry: ``register``, ``get``, ``names`` (mirrors ``variants``' registry).

A dataset is one module of this package with a decorated loader::

    @dataclass(frozen=True)
    class Options:                       # the dataset's own [data] keys, typed and checked
        train_per_class: Annotated[int, Range(1)] = 500

    @register("mini_imagenet", options=Options)
    def load(split: str, transform, data: DataConfig, options: Options) -> Dataset: ...

The loader returns a dataset of ``(image tensor, label)`` with ``num_classes`` and ``skipped``
(the files a ``corrupt="skip"`` policy dropped). Modules are discovered, ``_``-prefixed helpers
skipped, so adding a dataset is one new file.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from variants._config import suggest
from variants._registry import import_public_modules


@dataclass(frozen=True)
class NoOptions:
    """For datasets with no keys of their own."""


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset: its loader, its options and how results should be labelled."""

    name: str
    load: Callable[..., Any]
    options: type
    needs_root: bool
    note: str  # shown beside every result of it (stand-in datasets say so); "" for real ones
    source: str


_REGISTRY: dict[str, DatasetSpec] = {}
_loaded = False


def register(
    name: str, options: type = NoOptions, needs_root: bool = True, note: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``load(split, transform, data, options)`` as dataset ``name``."""

    def decorator(load: Callable[..., Any]) -> Callable[..., Any]:
        if not dataclasses.is_dataclass(options):
            raise TypeError(f"dataset {name!r}: options must be a dataclass")
        source = inspect.getsourcefile(load) or load.__module__
        if name in _REGISTRY:
            raise ValueError(
                f"dataset {name!r} registered twice: {_REGISTRY[name].source} and {source}"
            )
        _REGISTRY[name] = DatasetSpec(
            name=name, load=load, options=options, needs_root=needs_root, note=note, source=source
        )
        return load

    return decorator


def _discover() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import_public_modules(__package__)


def names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec of ``name``; an unknown name raises ``KeyError`` naming the registered ones."""
    _discover()
    if name not in _REGISTRY:
        raise KeyError(
            f"data.name={name!r} is not valid{suggest(name, _REGISTRY)}; "
            f"choices: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]
