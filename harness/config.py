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
import itertools
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from harness.layout import RunDir
from harness.results import parse_prediction
from variants._config import ConfigError, Pattern, Range, check_fields, check_value, suggest

PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
NonNegative = Annotated[float, Range(0.0)]
Fraction = Annotated[float, Range(0.0, 1.0)]


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "vit_lsla_nano"  # checked against harness.models.PRESETS at load
    variant: str | None = None  # None: the preset's own attention; checked against the registry
    switches: dict = field(default_factory=dict)  # checked against the variant's Config at load
    drop_path_rate: Annotated[float, Range(0.0, 0.99)] | None = None
    # auto: each variant's best kernel (SDPA, flex_attention on CUDA); explicit: every arm on
    # the same explicit attention path, fused kernels off (an apples-to-apples ablation)
    kernel: Literal["auto", "explicit"] = "auto"


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # any registered dataset (harness.datasets), checked at load
    root: str | None = None
    img_size: Annotated[int, Range(8)] = 32
    batch_size: PositiveInt = 64
    eval_batch_size: PositiveInt = 128
    num_workers: NonNegativeInt = 0
    corrupt: Literal["fail", "skip"] = "fail"  # skip counts and reports the bad files
    split_seed: int = 0
    limit_train: PositiveInt | None = None  # cap on training images (quick runs)
    limit_test: PositiveInt | None = None
    options: dict = field(default_factory=dict)  # the dataset's own keys, checked against it


@dataclass(frozen=True)
class TrainConfig:
    recipe: Literal["small", "exact", "paper"] = "small"
    # linear: lr, min_lr and warmup_lr are per lr_reference_batch images and scale with the
    # global batch (all processes x batch size), as the Swin recipe does
    lr_scaling: Literal["none", "linear"] = "none"
    lr_reference_batch: PositiveInt = 512
    epochs: PositiveInt = 10
    seed: int = 0
    lr: NonNegative = 2e-3
    min_lr: NonNegative = 1e-5
    warmup_epochs: NonNegativeInt = 1
    warmup_lr: NonNegative = 1e-6
    weight_decay: NonNegative = 0.05
    clip_grad: NonNegative | None = 5.0  # max grad norm; 0 disables (TOML has no null)
    label_smoothing: Annotated[float, Range(0.0, 0.99)] = 0.0
    mixup: NonNegative = 0.0
    cutmix: NonNegative = 0.0
    auto_augment: str | None = None
    reprob: Fraction = 0.0
    hflip: Fraction = 0.0
    ema: bool = False
    ema_decay: Fraction = 0.9998
    grad_checkpointing: bool = False  # recompute blocks in backward: less memory, ~1/3 more time
    amp: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    device: Annotated[str, Pattern(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")] = "auto"
    deterministic: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        """The schedule's orderings: a warm-up that falls or a cosine that rises is a typo.

        (A warm-up longer than the run is allowed: a quick check of the paper recipe with
        ``--set train.epochs=3`` keeps its 20 warm-up epochs and never reaches the peak.)
        """
        for low, high in (("min_lr", "lr"), ("warmup_lr", "lr")):
            a, b = getattr(self, low), getattr(self, high)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > b:
                raise ConfigError(
                    f"train.{low}={a!r} must not exceed train.{high}={b!r}; "
                    f"lower train.{low} or raise train.{high}"
                )


@dataclass(frozen=True)
class MeasureConfig:
    throughput: bool = True
    batch_size: PositiveInt = 64
    steps: PositiveInt = 20
    warmup: NonNegativeInt = 3
    channels_last: bool = False
    compile: bool = False
    attn_stats: bool = True


@dataclass(frozen=True)
class LaunchConfig:
    """Where runs execute with ``--launcher ray|slurm`` (ignored by the local launcher)."""

    gpus_per_run: NonNegativeInt | None = None  # None: 1 where CUDA is available, else 0
    cpus_per_run: PositiveInt = 1  # also the run's torch thread count
    max_retries: NonNegativeInt = 3  # Ray: re-runs of a task whose worker died
    partition: str | None = None  # SLURM partition
    time_min: PositiveInt = 24 * 60  # SLURM time limit per job (a requeued job resumes)
    array_parallelism: PositiveInt = 64  # SLURM jobs of the array running at once
    sbatch: dict = field(default_factory=dict)  # extra sbatch options, e.g. {account = "x"}


RunName = Annotated[str, Pattern(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*", "letters, digits and _.=+-")]


@dataclass(frozen=True)
class RunConfig:
    experiment: RunName = "default"
    run_id: str = "run"
    arm: str = "run"  # the run id without the seed: what a report averages seeds over
    out_dir: str = "runs"
    baseline: str | None = None  # arm the report measures deltas against (run id minus seed)
    description: str = ""
    # orderings theory predicts, "ARM > ARM" each; the report tests them (paired by seed)
    predict: tuple[str, ...] = ()
    order: int = 0  # position in the expanded grid (reports keep the file's order)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    @property
    def run_dir(self) -> RunDir:
        return RunDir(Path(self.out_dir) / self.experiment / self.run_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (a record read back from disk compares equal)."""
        out = dataclasses.asdict(self)
        out["predict"] = list(out["predict"])
        return out


RECIPES: dict[str, dict[str, Any]] = {
    # CPU-sized: short schedule, light augmentation, no mixing
    "small": {},
    # as small, without any augmentation: positive controls whose labels depend on exact positions
    "exact": {},
    # the Swin / DeiT ImageNet recipe the paper follows (300 epochs at 224)
    "paper": dict(
        epochs=300,
        lr_scaling="linear",  # Swin: 5e-4 per 512 images (warmup 5e-7, min 5e-6), scaled
        lr=5e-4,
        min_lr=5e-6,
        warmup_lr=5e-7,
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
    "launch": LaunchConfig,
}
TOP_LEVEL = ("experiment", "description", "out_dir", "baseline", "predict")
FILE_KEYS = (*TOP_LEVEL, "grid", *SECTIONS)


def _build_section(where: str, name: str, values: dict[str, Any]) -> Any:
    cls = SECTIONS[name]
    if name == "train":
        hint = get_type_hints(cls, include_extras=True)["recipe"]
        recipe = check_value(where, "train.recipe", values.get("recipe", "small"), hint)
        values = {**RECIPES[recipe], **values}
    if name == "data":  # keys the dataset declares itself go to its options (checked at load)
        common = {f.name for f in fields(cls)}
        extra = {k: v for k, v in values.items() if k not in common}
        values = {k: v for k, v in values.items() if k in common}
        values["options"] = {**values.get("options", {}), **extra}
    return cls(**check_fields(cls, values, where, section=name))


def parse_value(text: str) -> Any:
    """A ``--set`` value as a TOML literal (``3``, ``1e-3``, ``true``, ``["a"]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    if len(parts) == 1 and parts[0] in TOP_LEVEL:
        tree[parts[0]] = value
        return
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise ConfigError(
            f"{where}key {dotted!r} must be <section>.<key> with section one of "
            f"{', '.join(SECTIONS)} (or {', '.join(TOP_LEVEL)}){suggest(parts[0], FILE_KEYS)}"
        )
    node = tree.setdefault(parts[0], {})
    for depth, part in enumerate(parts[1:-1], 1):  # model.switches.outer_op
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            inner = ".".join(parts[: depth + 1])
            raise ConfigError(f"{where}key {dotted!r}: {inner} is a value, not a table")
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


def _read_tree(path: str | Path | None, text: str | None, where: str) -> dict[str, Any]:
    if text is None:
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
        text = Path(path).read_text()
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}invalid TOML: {exc}") from exc
    for key in tree:
        if key not in FILE_KEYS:
            raise ConfigError(
                f"{where}unknown top-level key {key!r}{suggest(key, FILE_KEYS)}; "
                f"valid: {', '.join(FILE_KEYS)}"
            )
    return tree


def _check_shape(tree: dict[str, Any], where: str) -> None:
    """Tables where tables belong, and the top-level values' types (after ``--set``)."""
    for key in ("grid", *SECTIONS):
        if key in tree and not isinstance(tree[key], dict):
            raise ConfigError(
                f"{where}{key} = {tree[key]!r} must be a table ([{key}] with keys below it)"
            )
    hints = get_type_hints(RunConfig, include_extras=True)
    for key in TOP_LEVEL:
        if key in tree:
            check_value(where, key, tree[key], hints[key])
    for key, values in tree.get("grid", {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}[grid] {key!r} must be a non-empty list, got {values!r}")


def _build_run(
    tree: dict[str, Any], point: dict[str, Any], order: int, where: str, stem: str
) -> RunConfig:
    run_tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tree.items()}
    for key, value in point.items():
        _set_dotted(run_tree, key, value, f"{where}[grid] ")
    sections = {n: _build_section(where, n, run_tree.get(n, {})) for n in SECTIONS}
    top = {k: run_tree[k] for k in TOP_LEVEL if k in run_tree}
    top.setdefault("experiment", stem)
    if isinstance(top.get("predict"), list):
        top["predict"] = tuple(top["predict"])
    hint = get_type_hints(RunConfig, include_extras=True)["experiment"]
    check_value(where, "experiment", top["experiment"], hint)
    return RunConfig(**top, run_id=run_id_for(point), arm=arm_for(point), order=order, **sections)


def arm_for(point: dict[str, Any]) -> str:
    """The arm of a grid point: its run id without the seed; a lone variant/preset axis bare."""
    rest = {k: v for k, v in point.items() if k != "train.seed"}
    if len(rest) == 1 and next(iter(rest)) in ("model.variant", "model.preset"):
        return str(next(iter(rest.values())))
    return run_id_for(rest)


def _split_option(flag: str, item: str, example: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {example}")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def _grid_values(text: str) -> list[Any]:
    """``--grid`` values: a TOML array without brackets (``0,1``), else comma-separated words."""
    try:
        return tomllib.loads(f"v = [{text}]")["v"]
    except tomllib.TOMLDecodeError:
        return [parse_value(v.strip()) for v in text.split(",")]


def _apply_command_line(tree: dict[str, Any], overrides: list[str], grid: list[str]) -> None:
    """``--set`` (not on grid axes: that would be silently overwritten) and ``--grid``."""
    axes = tree.get("grid", {}) if isinstance(tree.get("grid"), dict) else {}
    for item in overrides:
        key, value = _split_option("--set", item, "train.epochs=3")
        if key in axes:
            raise ConfigError(
                f"--set {key}: {key} is a [grid] axis of this experiment, so --set would not "
                f"change it; use --grid {key}=V1,V2 to choose its values"
            )
        _set_dotted(tree, key, parse_value(value), "--set ")
    for item in grid:
        key, value = _split_option("--grid", item, "train.seed=0,1")
        _set_dotted({}, key, None, "--grid ")  # the same key rules as --set
        tree.setdefault("grid", {})[key] = _grid_values(value)


def load_experiment(
    path: str | Path | None = None,
    overrides: list[str] = (),
    text: str | None = None,
    grid: list[str] = (),
) -> list[RunConfig]:
    """Expand an experiment file (or TOML ``text``) into its runs, applying ``--set`` overrides
    and ``--grid`` axes.

    Everything a run would trip over later is checked here, so ``--dry-run`` catches it: keys,
    types, ranges and choices, and the preset, variant, switches, dataset and dataset keys.
    """
    where = f"{path}: " if path else ""
    tree = _read_tree(path, text, where)
    _apply_command_line(tree, list(overrides), list(grid))
    _check_shape(tree, where)
    grid = tree.pop("grid", {})
    stem = Path(path).stem if path else "experiment"
    combos = itertools.product(*grid.values()) if grid else [()]
    runs = [
        _build_run(tree, dict(zip(grid, combo, strict=True)), order, where, stem)
        for order, combo in enumerate(combos)
    ]
    for run in runs:
        check_names(run, where)
    _check_baseline(runs, tree.get("baseline"), where)
    _check_predictions(runs, where)
    return runs


def _check_predictions(runs: list[RunConfig], where: str) -> None:
    arms = list(dict.fromkeys(r.arm for r in runs))
    for text in runs[0].predict if runs else ():
        pair = parse_prediction(text)
        unknown = [a for a in pair or () if a not in arms]
        if pair is None or unknown:
            raise ConfigError(
                f"{where}predict entry {text!r} must read 'ARM > ARM' with arms of this "
                f"experiment ({', '.join(arms)})"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )


def _check_baseline(runs: list[RunConfig], baseline: str | None, where: str) -> None:
    if baseline is None:
        return
    arms = list(dict.fromkeys(r.arm for r in runs))
    if baseline not in arms:
        raise ConfigError(
            f"{where}baseline={baseline!r} is not an arm of this experiment; "
            f"arms: {', '.join(arms)}"
        )


def check_names(run: RunConfig, where: str = "") -> None:
    """Resolve the run's preset, variant + switches and dataset + dataset keys, or say why not."""
    import variants
    from harness import datasets, models

    label = f"{where}[{run.run_id}] " if run.run_id != "run" else where
    if run.model.preset not in models.PRESETS:
        raise ConfigError(
            f"{label}model.preset={run.model.preset!r} is not valid"
            f"{suggest(run.model.preset, models.PRESETS)}; choices: {', '.join(models.PRESETS)}"
        )
    variant = run.model.variant or models.PRESETS[run.model.preset]["attn"]
    variants.resolve(variant, run.model.switches, where=f"{label}model.switches: ")
    switch = variants.get(variant).capabilities.fused_switch
    if run.model.kernel == "explicit" and switch and run.model.switches.get(switch):
        raise ConfigError(
            f"{label}model.kernel='explicit' turns fused kernels off, but model.switches."
            f"{switch}=true asks for one; drop one of the two"
        )
    try:
        spec = datasets.get(run.data.name)
    except KeyError as exc:
        raise ConfigError(f"{label}{exc.args[0]}") from None
    _check_dataset_keys(spec.options, run.data, label)


def _check_dataset_keys(options: type, data: DataConfig, where: str) -> None:
    own = [f.name for f in fields(options)]
    for key in data.options:
        if key not in own:
            valid = [f.name for f in fields(DataConfig) if f.name != "options"] + own
            raise ConfigError(
                f"{where}[data] unknown key {key!r} for data.name={data.name!r}"
                f"{suggest(key, valid)}; valid: {', '.join(valid)}"
            )
    check_fields(options, data.options, where, section="data")


def run_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``config.json`` (as written by ``RunConfig.to_dict``)."""
    sections = {name: _build_section("", name, dict(data.get(name, {}))) for name in SECTIONS}
    top = {k: data[k] for k in (*TOP_LEVEL, "run_id", "arm", "order") if k in data}
    top["predict"] = tuple(top.get("predict") or ())
    return RunConfig(**top, **sections)
