"""Run identity: changed settings never pass off old results as new; the plan only grows."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.config import ConfigError, load_experiment
from harness.results import read_json
from tests.test_sweep import GRID
from tests.test_train import TINY

QUICK = ["--set", "measure.throughput=false", "--set", "measure.attn_stats=false"]


def _exp(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(f"out_dir = '{tmp_path}'\n" + TINY.replace("epochs = 3", "epochs = 1") + GRID)
    return exp


def test_changed_lr_stops_before_training_and_rerun_changed_redoes_exactly_those(tmp_path, capsys):
    exp = _exp(tmp_path)
    assert main(["sweep", str(exp), *QUICK]) == 0
    lsla = tmp_path / "tiny" / "variant=lsla" / "result.json"
    swin_before = (tmp_path / "tiny" / "variant=swin" / "result.json").read_bytes()
    lsla_before = lsla.read_bytes()
    capsys.readouterr()
    changed = [*QUICK, "--set", "train.lr=1e-4"]
    assert main(["sweep", str(exp), *changed, "--only", "lsla"]) == 2
    err = capsys.readouterr().err
    assert "1 run(s)" in err and "variant=lsla: train.lr 0.002 -> 0.0001" in err
    assert "Nothing was trained" in err and "--rerun-changed" in err
    assert lsla.read_bytes() == lsla_before
    assert main(["sweep", str(exp), *changed, "--only", "lsla", "--rerun-changed"]) == 0
    out = capsys.readouterr().out
    assert "variant=lsla: settings changed (train.lr 0.002 -> 0.0001); re-running it" in out
    assert read_json(lsla)["config"]["train"]["lr"] == 1e-4
    assert (tmp_path / "tiny" / "variant=swin" / "result.json").read_bytes() == swin_before
    plan = read_json(tmp_path / "tiny" / "experiment.json")
    assert sorted(r["run_id"] for r in plan["runs"]) == ["variant=lsla", "variant=swin"]


def test_set_on_a_grid_axis_is_an_error_and_grid_overrides_it(tmp_path):
    with pytest.raises(ConfigError, match=r"--set model.variant: .* is a \[grid\] axis.*--grid"):
        load_experiment(text=TINY + GRID, overrides=["model.variant=msa"])
    runs = load_experiment(text=TINY + GRID, grid=["model.variant=msa,swin", "train.seed=0,1"])
    assert [r.run_id for r in runs][:2] == ["variant=msa-seed=0", "variant=msa-seed=1"]
    assert len(runs) == 4 and runs[0].arm == "msa"
    with pytest.raises(ConfigError, match="variant 'lsal'"):
        load_experiment(text=TINY + GRID, grid=["model.variant=lsal"])
