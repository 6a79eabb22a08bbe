"""Sweeps: finished runs are skipped, partial runs resume, kill -9 loses nothing finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.results import read_json
from tests.test_train import TINY, tiny

ROOT = Path(__file__).parents[1]
GRID = '[grid]\n"model.variant" = ["swin", "lsla"]\n'


def test_rerun_skips_finished_and_resumes_partial(tmp_path):
    from harness.sweep import run_sweep

    runs = tiny(tmp_path, "measure.throughput=false", "measure.attn_stats=false", grid=GRID)
    out = run_sweep(runs, stop_after=1, log=lambda *_: None)
    assert out == {"partial": ["variant=swin", "variant=lsla"]}
    log: list[str] = []
    out = run_sweep(runs, log=log.append)
    assert out == {"finished": ["variant=swin", "variant=lsla"]}
    assert any("variant=swin: resuming" in line for line in log)
    first = (runs[0].run_dir.result).read_bytes()
    out = run_sweep(runs, log=lambda *_: None)
    assert out == {"skipped": ["variant=swin", "variant=lsla"]}
    assert (runs[0].run_dir.result).read_bytes() == first
    log_lines = (runs[0].run_dir.log).read_text().splitlines()
    assert any("variant=swin: resuming" in line for line in log_lines)
    assert any("epoch 3/3" in line for line in log_lines) and any("top1" in x for x in log_lines)
    table = pd.read_csv(tmp_path / "tiny" / "results.csv")
    assert sorted(table["variant"]) == ["lsla", "swin"] and "metrics.top1" in table
    assert (tmp_path / "tiny" / "results.parquet").exists()


def test_cli_dry_run_and_force(tmp_path, capsys):
    exp = tmp_path / "exp.toml"
    exp.write_text(f"out_dir = '{tmp_path}'\n" + TINY + GRID)
    assert main(["sweep", str(exp), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("[pending]") == 2
    assert main(["train", str(exp)]) == 2
    assert "train needs exactly one run" in capsys.readouterr().err
    args = [
        "train",
        str(exp),
        "--only",
        "lsla",
        "--set",
        "train.epochs=1",
        "--set",
        "measure.throughput=false",
    ]
    assert main(args) == 0
    first = read_json(tmp_path / "tiny" / "variant=lsla" / "result.json")
    assert main(args + ["--force"]) == 0
    again = read_json(tmp_path / "tiny" / "variant=lsla" / "result.json")
    assert again["wall_time_s"] != first["wall_time_s"]
    assert again["metrics"] == first["metrics"]  # a forced re-run is reproducible


def test_bad_cli_input_exits_2_with_message(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
    exp = tmp_path / "exp.toml"
    exp.write_text(TINY)
    assert main(["sweep", str(exp), "--set", "model.preset=vit_lsla_xl"]) == 2
    assert "model.preset='vit_lsla_xl' is not valid (did you mean" in capsys.readouterr().err
    assert main(["sweep", str(exp), "--set", "model.variant=lsal"]) == 2
    assert "unknown attention variant 'lsal' (did you mean" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_9_mid_sweep_loses_nothing_finished(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(f"out_dir = '{tmp_path}'\n" + TINY.replace("epochs = 3", "epochs = 6") + GRID)
    cmd = [sys.executable, "-m", "harness", "sweep", str(exp), "--set", "measure.throughput=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    done = tmp_path / "tiny" / "variant=swin" / "result.json"
    partial = tmp_path / "tiny" / "variant=lsla" / "checkpoint.pt"
    deadline = time.time() + 240
    while not partial.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done.exists() and partial.exists()
    assert not (partial.parent / "result.json").exists(), "killed too late to test resume"
    first = done.read_bytes()
    finished = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "variant=swin: finished, skipped" in finished.stdout
    assert "variant=lsla: resuming" in finished.stdout
    assert done.read_bytes() == first
    record = read_json(partial.parent / "result.json")
    assert record["status"] == "finished" and len(record["history"]) == 6
