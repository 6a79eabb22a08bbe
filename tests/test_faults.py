"""Faults and bad files end in one clear line and lose nothing finished (issue: reliability)."""

from __future__ import annotations

import errno

import pytest
import torch

from harness import train as train_mod
from harness.cli import main
from harness.config import ConfigError
from harness.results import read_json, write_json
from harness.run import execute
from harness.sweep import run_sweep, status_of
from reports.build import build
from tests.test_sweep import GRID
from tests.test_train import TINY, tiny

QUIET = ("measure.throughput=false", "measure.attn_stats=false")


def _finished_pair(tmp_path):
    runs = tiny(tmp_path, *QUIET, "train.epochs=1", grid=GRID)
    assert run_sweep(runs, log=lambda *_: None) == {"finished": ["variant=swin", "variant=lsla"]}
    return runs


@pytest.mark.parametrize("damage", ["cut", "empty", "list"])
def test_unreadable_record_is_named_and_the_run_is_redone(tmp_path, damage, capsys):
    runs = _finished_pair(tmp_path)
    good = read_json(runs[1].run_dir.result)
    path = runs[0].run_dir.result
    text = path.read_text()
    path.write_text({"cut": text[:200], "empty": "", "list": "[]"}[damage])
    assert status_of(runs[0]) == "unreadable"
    exp = tmp_path / "exp.toml"
    exp.write_text(f"out_dir = '{tmp_path}'\n" + TINY + GRID)
    assert main(["sweep", str(exp), "--dry-run", "--set", "train.epochs=1"]) == 0
    assert "[unreadable]" in capsys.readouterr().out
    page = build(tmp_path / "tiny")  # the report leaves it out, with a warning naming it
    assert str(path) in capsys.readouterr().err and "variant=lsla" in page
    log: list[str] = []
    assert run_sweep(runs, log=log.append) == {
        "finished": ["variant=swin"],
        "skipped": ["variant=lsla"],
    }
    assert any(str(path) in line and "unreadable" in line for line in log)
    assert path.with_name("result.json.unreadable").exists()  # kept for inspection
    assert read_json(path)["status"] == "finished"
    assert read_json(runs[1].run_dir.result) == good  # nothing finished is touched


@pytest.mark.parametrize("damage", [b"", b"\x00" * 64, b"PK\x03\x04 half a zip"])
def test_damaged_checkpoint_falls_back_and_the_run_finishes(tmp_path, damage):
    cfg = tiny(tmp_path, *QUIET)[0]
    assert execute(cfg, stop_after=2) is None  # two epochs: latest and previous checkpoints
    cfg.run_dir.checkpoint.write_bytes(damage)
    record = execute(cfg)
    assert record["status"] == "finished" and record["metrics"]["epochs"] == 3
    assert (cfg.run_dir.path / "checkpoint.pt.unreadable").read_bytes() == damage
    ref = execute(tiny(tmp_path / "ref", *QUIET)[0])
    assert record["metrics"] == ref["metrics"]  # resumed from epoch 1 exactly


def test_checkpoint_write_failure_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    cfg = tiny(tmp_path, *QUIET)[0]
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        execute(cfg)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in cfg.run_dir.path.iterdir() if "tmp" in p.name] == []


def test_blow_up_on_the_last_step_is_diverged_not_finished(tmp_path, monkeypatch, capsys):
    real = train_mod.train_epoch

    def poison_last_epoch(ctx, trainer, train_ds, state):
        row = real(ctx, trainer, train_ds, state)
        if state.epoch + 1 == ctx.cfg.train.epochs:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))
        return row

    monkeypatch.setattr(train_mod, "train_epoch", poison_last_epoch)
    runs = tiny(tmp_path, *QUIET, grid='[grid]\n"model.variant" = ["lsla"]\n')
    log: list[str] = []
    outcome = run_sweep(runs, log=log.append)
    assert outcome == {"diverged": ["variant=lsla"]}
    record = read_json(runs[0].run_dir.result)
    assert record["status"] == "diverged" and "validation after epoch 3" in record["error"]
    assert any("diverged: validation after epoch 3" in line for line in log)
    from harness.sweep import exit_code

    assert exit_code(outcome) == 1 and "1 run(s) diverged: variant=lsla" in capsys.readouterr().err


def test_report_reads_nan_written_as_text(tmp_path):
    runs = _finished_pair(tmp_path)
    record = read_json(runs[0].run_dir.result)
    record["metrics"]["loss"] = float("nan")
    record["history"][0]["val_loss"] = float("inf")
    write_json(runs[0].run_dir.result, record)  # JSON has no NaN: stored as "nan" / "inf"
    assert "variant=swin" in build(tmp_path / "tiny")


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.min_lr=0.01", "train.min_lr=0.01 must not exceed train.lr=0.002"),
        ("train.warmup_lr=0.1", "train.warmup_lr=0.1 must not exceed train.lr=0.002"),
        ("train.warmup_epochs=9", "train.warmup_epochs=9 must not exceed train.epochs=3"),
    ],
)
def test_recipe_orderings_are_checked_at_load(tmp_path, override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        tiny(tmp_path, override)
