"""Experiment files: validation messages, --set overrides, grid expansion, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ConfigError, load_experiment, parse_value, run_from_dict
from harness.sweep import select

CONFIGS = sorted((Path(__file__).parents[1] / "harness" / "configs").glob("*.toml"))

BASE = """
experiment = "t"
[model]
preset = "vit_lsla_micro"
[train]
epochs = 2
[grid]
"model.variant" = ["swin", "lsla"]
"train.seed" = [0, 1, 2]
"""


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_experiment_files_expand(path):
    runs = load_experiment(path)
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_paper_configs_use_the_paper_recipe():
    for name in ("ip102.toml", "mini_imagenet.toml"):
        run = load_experiment(CONFIGS[0].parent / name)[0]
        assert (run.train.epochs, run.train.mixup, run.train.cutmix, run.data.img_size) == (
            300,
            0.8,
            1.0,
            224,
        )


def test_grid_expands_to_cartesian_product_with_readable_ids():
    runs = load_experiment(text=BASE)
    assert [r.run_id for r in runs[:2]] == ["variant=swin-seed=0", "variant=swin-seed=1"]
    assert len(runs) == 6 and {r.model.variant for r in runs} == {"swin", "lsla"}
    assert [r.arm for r in runs[:4]] == ["swin", "swin", "swin", "lsla"]  # seeds share an arm
    assert runs[0].train.epochs == 2 and runs[0].run_dir.path == Path("runs/t/variant=swin-seed=0")


def test_set_overrides_are_parsed_as_toml_literals():
    runs = load_experiment(
        text=BASE,
        overrides=["train.epochs=5", "train.lr=1", "data.root=/x", "model.switches.outer_op=mul"],
    )
    r = runs[0]
    assert r.train.epochs == 5 and r.train.lr == 1.0 and isinstance(r.train.lr, float)
    assert r.data.root == "/x" and r.model.switches == {"outer_op": "mul"}
    assert parse_value("[1, 2]") == [1, 2] and parse_value("hello") == "hello"


@pytest.mark.parametrize(
    "text, overrides, fragment",
    [
        (
            BASE.replace("epochs = 2", "epochz = 2"),
            [],
            "[train] unknown key 'epochz' (did you mean 'epochs'?)",
        ),
        (BASE, ["train.epochs='ten'"], "train.epochs='ten': expected int"),
        (
            BASE,
            ["data.name=imagenet"],
            "data.name='imagenet' is not valid (did you mean 'mini_imagenet'?); choices: digits",
        ),
        (BASE, ["train.recipe=huge"], "choices: 'small', 'exact', 'paper'"),
        (BASE, ["epochs=3"], "must be <section>.<key>"),
        (BASE, ["train.epochs=0"], "train.epochs=0 is out of range [1, inf]"),
        (BASE, ["train.reprob=1.5"], "train.reprob=1.5 is out of range [0.0, 1.0]"),
        (BASE, ["train.epochs"], "expected KEY=VALUE"),
        ("sweep = 1\n" + BASE, [], "unknown top-level key 'sweep'"),
        (BASE + "\nsweep = 1\n", [], "[grid] 'sweep' must be a non-empty list"),
        (BASE.replace('["swin", "lsla"]', "[]"), [], "must be a non-empty list"),
        ("x = [", [], "invalid TOML"),
    ],
)
def test_config_errors_name_key_value_and_choices(text, overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_experiment(text=text, overrides=overrides)
    assert fragment in str(info.value)


def test_baseline_must_name_an_arm():
    runs = load_experiment(text='baseline = "lsla"\n' + BASE)
    assert runs[0].baseline == "lsla" and [r.order for r in runs] == list(range(6))
    with pytest.raises(ConfigError, match="baseline='msa' is not an arm.*arms: swin, lsla"):
        load_experiment(text='baseline = "msa"\n' + BASE)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_experiment(tmp_path / "nope.toml")


def test_only_filters_and_reports_no_match():
    runs = load_experiment(text=BASE)
    assert [r.run_id for r in select(runs, ["lsla", "seed=1"])] == ["variant=lsla-seed=1"]
    with pytest.raises(ConfigError, match="matches no run"):
        select(runs, ["variant=msa"])


def test_recipe_defaults_yield_to_explicit_keys():
    run = load_experiment(text=BASE, overrides=["train.recipe=paper", "train.epochs=3"])[0]
    assert run.train.epochs == 3 and run.train.mixup == 0.8 and run.train.label_smoothing == 0.1


def test_config_round_trips_through_dict():
    run = load_experiment(text=BASE)[3]
    assert run_from_dict(run.to_dict()) == run


@pytest.mark.parametrize(
    "override, fragments",
    [
        (
            "model.switches.scael=div",
            ["model.switches", "unknown switch 'scael' (did you mean 'scale'?)", "valid: form,"],
        ),
        (
            "model.switches.window=sliding",
            ["window='sliding' is not valid; choices: 'global', 'window', 'shifted'"],
        ),
        ("train.device=gpu", ["train.device='gpu' is not valid; expected auto, cpu, cuda"]),
    ],
)
def test_dry_run_rejects_what_a_run_would_trip_over(tmp_path, capsys, override, fragments):
    from harness.cli import main

    exp = tmp_path / "exp.toml"
    exp.write_text(BASE)
    assert main(["sweep", str(exp), "--dry-run", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(exp) in err
    for fragment in fragments:
        assert fragment in err
