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
    ],
)
def test_recipe_orderings_are_checked_at_load(tmp_path, override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        tiny(tmp_path, override)


@pytest.mark.parametrize(
    "text, overrides, fragment",
    [
        ("grid = 5\n", [], "grid = 5 must be a table"),
        ('model = "x"\n', [], "model = 'x' must be a table"),
        ("experiment = 5\n", [], "experiment=5: expected str"),
        ("", ["experiment=2024-05-01"], "experiment=datetime.date(2024, 5, 1): expected str"),
        ("out_dir = 5\n", [], "out_dir=5: expected str"),
        ("", ["train.epochs.x=3"], "train.epochs is a value, not a table"),
        ('experiment = "../../escaped"\n', [], "experiment='../../escaped' is not valid"),
        ('experiment = "a/b"\n', [], "experiment='a/b' is not valid; expected letters, digits"),
    ],
)
def test_malformed_files_give_one_line(text, overrides, fragment):
    from harness.config import load_experiment

    rest = TINY.replace('experiment = "tiny"\n', "")
    if text.startswith("model"):
        rest = rest.replace('[model]\npreset = "vit_lsla_micro"\n', "")
    with pytest.raises(ConfigError) as info:
        load_experiment(text=text + rest, overrides=overrides)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_corrupt_image_in_a_worker_is_one_line(tmp_path):
    from tests.fakedata import make_ip102

    data = make_ip102(tmp_path / "ip", per_split=(16, 8, 8))
    bad = data / "images" / "00003.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    args = ("data.name='ip102'", f"data.root='{data}'", "data.num_workers=1", "data.batch_size=4")
    runs = tiny(tmp_path / "runs", *QUIET, *args, "train.epochs=1", grid=GRID)
    log: list[str] = []
    assert run_sweep(runs[:1], log=log.append) == {"failed": ["variant=swin"]}
    error = read_json(runs[0].run_dir.result)["error"]
    assert error.startswith("DataError: ip102/train: cannot decode image") and "\n" not in error
    assert any(line.strip().startswith("failed: DataError") for line in log)


def test_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    exp = tmp_path / "exp.toml"
    exp.write_text(TINY)
    assert main(["sweep", str(exp), "--out", str(blocker / "runs")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "file" in err


def test_report_output_errors_and_foreign_bench_json(tmp_path, capsys):
    from reports.build import main as report_main

    _finished_pair(tmp_path)
    bench = tmp_path / "tiny" / "bench"
    bench.mkdir()
    (bench / "cut.json").write_text('{"benchmarks": [{"name"')
    (bench / "foreign.json").write_text('{"hello": 1}')
    assert report_main([str(tmp_path / "tiny"), "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    out = tmp_path / "r.html"
    assert report_main([str(tmp_path / "tiny"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "cut.json is unreadable" in err and "foreign.json is not pytest-benchmark JSON" in err
    (tmp_path / "blocker").write_text("a file, not a folder")
    assert report_main([str(tmp_path / "tiny"), "-o", str(tmp_path / "blocker" / "r.html")]) == 1
    assert "cannot write the report" in capsys.readouterr().err


def _ended_or_stacks(proc, within_s: float) -> tuple[str, str]:
    """The process's output once it exits; a failure with its threads' stacks (faulthandler,
    on SIGABRT) if it has not exited within ``within_s``, the process then stopped."""
    import signal
    import subprocess

    try:
        return proc.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        pytest.fail(f"no exit {within_s:.0f} s after the signal; its stacks:\n{err[-6000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_is_one_line_exit_130_and_the_run_resumes_bitwise(tmp_path, signame, code):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).parents[1]
    exp = tmp_path / "exp.toml"
    # 12 epochs: the signal must land before the run ends, even when this process is descheduled
    exp.write_text(TINY.replace("epochs = 3", "epochs = 12") + "throughput = false\n")
    # faulthandler: should the run hang after the signal, SIGABRT makes it print every thread
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "harness", "sweep", str(exp), "--no-progress"]
    ref = subprocess.run([*cmd, "--out", str(tmp_path / "ref")], cwd=root, env=env, timeout=300)
    assert ref.returncode == 0
    run = ["--out", str(tmp_path / "int")]
    proc = subprocess.Popen(
        [*cmd, *run], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a test runner started in the background ignores SIGINT, and a
        # child inherits that (Python then installs no KeyboardInterrupt handler)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    checkpoint = tmp_path / "int" / "tiny" / "run" / "checkpoint.pt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(getattr(signal, signame))
    out, err = _ended_or_stacks(proc, within_s=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and err.strip().startswith(f"interrupted ({signame}):")
    assert len(err.strip().splitlines()) == 1
    again = subprocess.run([*cmd, *run], cwd=root, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "resuming" in again.stdout
    a = read_json(tmp_path / "ref" / "tiny" / "run" / "result.json")
    b = read_json(checkpoint.parent / "result.json")
    assert a["metrics"] == b["metrics"]
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]
