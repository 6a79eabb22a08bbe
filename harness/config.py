"""Typed run configuration, TOML experiment files, ``--set`` overrides and grid expansion.

An experiment file is data only::

    experiment = "default"
    [model]
    preset = "vit_lsla_nano"
    [data]
    name = "digits"
    [train]
    recipe = "small"
    epochs = 10
    [grid]                                  # cartesian product, one run per point
    "model.variant" = ["swin", "lsla"]
    "train.seed" = [0, 1, 2]

Every key is checked against the dataclasses below; errors name the file, the key, the bad value
and the valid choices. Recipes (``small``, ``paper``) fill training/augmentation defaults that any
explicit key overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import tomllib

from harness.results import arm_of


class ConfigError(ValueError):
    """A user-caused configuration problem; the message names the key, value and choices."""


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "vit_lsla_nano"
    variant: str | None = None  # None: the preset's own attention
    switches: dict = field(default_factory=dict)  # attention switch overrides
    drop_path_rate: float | None = None


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # digits | mnist5k (embedded stand-ins) | ip102 | mini_imagenet
    root: str | None = None
    img_size: int = 32
    batch_size: int = 64
    eval_batch_size: int = 128
    num_workers: int = 0
    corrupt: str = "fail"  # fail | skip (skip counts and reports the bad files)
    train_per_class: int = 500  # Mini-ImageNet re-split
    test_per_class: int = 100
    split_seed: int = 0
    limit_train: int | None = None  # cap on training images (quick runs)
    limit_test: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "small"  # small | paper
    epochs: int = 10
    seed: int = 0
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_epochs: int = 1
    warmup_lr: float = 1e-6
    weight_decay: float = 0.05
    clip_grad: float | None = 5.0  # max grad norm; 0 disables (TOML has no null)
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    auto_augment: str | None = None
    reprob: float = 0.0
    hflip: float = 0.0
    ema: bool = False
    ema_decay: float = 0.9998
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = True
    progress: bool = True


@dataclass(frozen=True)
class MeasureConfig:
    throughput: bool = True
    batch_size: int = 64
    steps: int = 20
    warmup: int = 3
    channels_last: bool = False
    compile: bool = False
    attn_stats: bool = True


@dataclass(frozen=True)
class RunConfig:
    experiment: str = "default"
    run_id: str = "run"
    out_dir: str = "runs"
    baseline: str | None = None  # arm the report measures deltas against (run id minus seed)
    order: int = 0  # position in the expanded grid (reports keep the file's order)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.experiment / self.run_id

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPES: dict[str, dict[str, Any]] = {
    # CPU-sized: short schedule, light augmentation, no mixing
    "small": {},
    # the Swin / DeiT ImageNet recipe the paper follows (300 epochs at 224)
    "paper": dict(
        epochs=300,
        lr=1e-3,
        min_lr=1e-5,
        warmup_epochs=20,
        weight_decay=0.05,
        clip_grad=5.0,
        label_smoothing=0.1,
        mixup=0.8,
        cutmix=1.0,
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        hflip=0.5,
        ema=False,
    ),
}
SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "measure": MeasureConfig,
}
CHOICES = {
    "data.name": ("digits", "mnist5k", "ip102", "mini_imagenet"),
    "data.corrupt": ("fail", "skip"),
    "train.recipe": tuple(RECIPES),
    "train.amp": ("auto", "bf16", "fp16", "fp32"),
}
TOP_LEVEL = ("experiment", "description", "out_dir", "baseline", "grid", *SECTIONS)
# (low, high) inclusive bounds; None = unbounded on that side
RANGES = {
    "data.img_size": (8, None),
    "data.batch_size": (1, None),
    "data.eval_batch_size": (1, None),
    "data.num_workers": (0, None),
    "data.train_per_class": (1, None),
    "data.test_per_class": (1, None),
    "data.limit_train": (1, None),
    "data.limit_test": (1, None),
    "train.epochs": (1, None),
    "train.lr": (0.0, None),
    "train.min_lr": (0.0, None),
    "train.warmup_epochs": (0, None),
    "train.weight_decay": (0.0, None),
    "train.clip_grad": (0.0, None),
    "train.label_smoothing": (0.0, 0.99),
    "train.mixup": (0.0, None),
    "train.cutmix": (0.0, None),
    "train.reprob": (0.0, 1.0),
    "train.hflip": (0.0, 1.0),
    "train.ema_decay": (0.0, 1.0),
    "model.drop_path_rate": (0.0, 0.99),
    "measure.batch_size": (1, None),
    "measure.steps": (1, None),
    "measure.warmup": (0, None),
}


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(where: str, dotted: str, value: Any, hint: Any) -> Any:
    """Type-check one value against a dataclass annotation; ints are accepted for floats."""
    if dotted in CHOICES and value not in CHOICES[dotted]:
        raise ConfigError(
            f"{where}{dotted}={value!r} is not valid; choices: {', '.join(CHOICES[dotted])}"
        )
    allowed = getattr(hint, "__args__", None) or (hint,)
    if value is None and type(None) in allowed:
        return value
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int):
        ok = int in allowed or float in allowed
        value = float(value) if int not in allowed else value
    else:
        ok = any(isinstance(value, t) for t in allowed if isinstance(t, type))
    if not ok:
        names = "/".join(getattr(t, "__name__", str(t)) for t in allowed)
        raise ConfigError(f"{where}{dotted}={value!r}: expected {names}")
    low, high = RANGES.get(dotted, (None, None))
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and ((low is not None and value < low) or (high is not None and value > high))
    ):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"{where}{dotted}={value!r} is out of range {bounds}")
    return value


def _build_section(where: str, name: str, values: dict[str, Any]) -> Any:
    cls = SECTIONS[name]
    hints = get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    if name == "train" and values.get("recipe", "small") in RECIPES:
        values = {**RECIPES[values.get("recipe", "small")], **values}
    checked = {}
    for key, value in values.items():
        if key not in valid:
            raise ConfigError(
                f"{where}[{name}] unknown key {key!r}{_suggest(key, valid)}; "
                f"valid: {', '.join(valid)}"
            )
        checked[key] = _check_value(where, f"{name}.{key}", value, hints[key])
    return cls(**checked)


def parse_value(text: str) -> Any:
    """A ``--set`` value as a TOML literal (``3``, ``1e-3``, ``true``, ``["a"]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    if len(parts) == 1 and parts[0] in ("experiment", "out_dir", "description", "baseline"):
        tree[parts[0]] = value
        return
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise ConfigError(
            f"{where}key {dotted!r} must be <section>.<key> with section one of "
            f"{', '.join(SECTIONS)} (or experiment/out_dir)"
        )
    node = tree.setdefault(parts[0], {})
    for part in parts[1:-1]:  # model.switches.outer_op
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def run_id_for(point: dict[str, Any]) -> str:
    if not point:
        return "run"

    def show(value: Any) -> str:
        if isinstance(value, dict):
            return "+".join(f"{k}.{v}" for k, v in value.items()) or "preset"
        return str(value)

    parts = [f"{key.split('.')[-1]}={show(value)}" for key, value in point.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))


def load_experiment(
    path: str | Path | None = None, overrides: list[str] = (), text: str | None = None
) -> list[RunConfig]:
    """Expand an experiment file (or TOML ``text``) into its runs, applying ``--set`` overrides."""
    where = f"{path}: " if path else ""
    if text is None:
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
        text = Path(path).read_text()
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}invalid TOML: {exc}") from exc
    for key in tree:
        if key not in TOP_LEVEL:
            raise ConfigError(
                f"{where}unknown top-level key {key!r}{_suggest(key, TOP_LEVEL)}; "
                f"valid: {', '.join(TOP_LEVEL)}"
            )
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        key, value = item.split("=", 1)
        _set_dotted(tree, key.strip(), parse_value(value.strip()), "--set ")
    grid = tree.pop("grid", {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}[grid] {key!r} must be a non-empty list, got {values!r}")
    runs = []
    combos = itertools.product(*grid.values()) if grid else [()]
    for order, combo in enumerate(combos):
        point = dict(zip(grid, combo, strict=True))
        run_tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tree.items()}
        for key, value in point.items():
            _set_dotted(run_tree, key, value, f"{where}[grid] ")
        sections = {n: _build_section(where, n, run_tree.get(n, {})) for n in SECTIONS}
        runs.append(
            RunConfig(
                experiment=run_tree.get("experiment", Path(path or "x").stem),
                run_id=run_id_for(point),
                out_dir=run_tree.get("out_dir", "runs"),
                baseline=run_tree.get("baseline"),
                order=order,
                **sections,
            )
        )
    baseline = tree.get("baseline")
    if baseline is not None:
        arms = list(dict.fromkeys(arm_of(r.run_id) for r in runs))
        if baseline not in arms:
            raise ConfigError(
                f"{where}baseline={baseline!r} is not an arm of this experiment; "
                f"arms: {', '.join(arms)}"
            )
    return runs


def run_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``config.json`` (as written by ``RunConfig.to_dict``)."""
    sections = {n: SECTIONS[n](**data[n]) for n in SECTIONS}
    top = {
        k: data[k] for k in ("experiment", "run_id", "out_dir", "baseline", "order") if k in data
    }
    return RunConfig(**top, **sections)
