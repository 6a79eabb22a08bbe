"""Ray and SLURM (submitit) launchers run the grid like the local one, bit for bit, and survive
a killed worker and a pre-emption by resuming from the run's checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import torch

from harness.cli import main
from harness.config import load_experiment
from harness.results import read_record
from harness.sweep import run_sweep
from tests.test_train import TINY

GRID = '[grid]\n"model.variant" = ["swin", "lsla"]\n"train.seed" = [0, 1]\n'
TEXT = (
    TINY.replace("epochs = 3", "epochs = 3").replace("limit_train = 96", "limit_train = 64")
    + "throughput = false\nattn_stats = false\n[launch]\ncpus_per_run = 1\n"
    + GRID
)


def _comparable(root):
    out = {}
    for path in root.rglob("result.json"):
        r = read_record(path)
        history = [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in r["history"]]
        out[r["run_id"]] = (r["status"], r["metrics"], history)
    return out


def _reference(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker uses (cpus_per_run = 1)
    try:
        run_sweep(load_experiment(text=TEXT, overrides=[f"out_dir='{tmp_path}'"]), log=print)
    finally:
        torch.set_num_threads(threads)
    return _comparable(tmp_path / "tiny")


def _kill_one_worker_midway(root, done: list[str]) -> None:
    """SIGKILL the process of the first run seen with a checkpoint but no record yet."""
    deadline = time.time() + 240
    while time.time() < deadline and not done:
        for claim in root.rglob("claim.json"):
            run = claim.parent
            if (run / "checkpoint.pt").exists() and not (run / "result.json").exists():
                try:
                    pid = json.loads(claim.read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                except (ValueError, KeyError, ProcessLookupError, OSError):
                    continue
                done.append(run.name)
                return
        time.sleep(0.05)


def _launch(tmp_path, launcher: str, interrupt) -> tuple[int, list[str]]:
    exp = tmp_path / "exp.toml"
    exp.write_text(TEXT)
    out = tmp_path / launcher
    hit: list[str] = []
    watcher = threading.Thread(target=interrupt, args=(out / "tiny", hit), daemon=True)
    watcher.start()
    code = main(["sweep", str(exp), "--launcher", launcher, "--out", str(out), "--no-progress"])
    watcher.join(timeout=5)
    return code, hit


@pytest.mark.slow
def test_ray_runs_the_grid_bit_for_bit_and_retries_a_killed_worker(tmp_path):
    pytest.importorskip("ray")
    reference = _reference(tmp_path / "local")
    code, killed = _launch(tmp_path, "ray", _kill_one_worker_midway)
    assert code == 0 and killed, killed
    assert _comparable(tmp_path / "ray" / "tiny") == reference
    log = (tmp_path / "ray" / "tiny" / killed[0] / "log.txt").read_text()
    assert "resuming" in log  # the retried task went on from the checkpoint
    table = (tmp_path / "ray" / "tiny" / "results.csv").read_text().splitlines()
    assert len(table) == 1 + 4


@pytest.mark.slow
def test_submitit_job_array_matches_local_and_a_preempted_job_resumes(tmp_path):
    pytest.importorskip("submitit")
    from harness.launch import slurm
    from harness.runtime import Dist
    from harness.sweep import start

    reference = _reference(tmp_path / "local")
    runs = load_experiment(text=TEXT, overrides=[f"out_dir='{tmp_path / 'slurm'}'"])
    start(runs, False, False, Dist(), print)
    jobs = slurm.submit(runs, print)
    assert len(jobs) == 4
    job, cfg = jobs[0]
    deadline = time.time() + 240
    while not cfg.run_dir.checkpoint.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not cfg.run_dir.result.exists(), "finished before it could be pre-empted"
    # what SLURM does before pre-emption: USR2 to the job's task; submitit's handler calls our
    # checkpoint hook and requeues the job
    os.kill(json.loads(cfg.run_dir.claim.read_text())["pid"], signal.SIGUSR2)
    outcome = slurm.follow(jobs, runs, print)
    assert set(outcome) == {"finished"} and sorted(outcome["finished"]) == sorted(reference)
    assert _comparable(tmp_path / "slurm" / "tiny") == reference
    assert "resuming" in cfg.run_dir.log.read_text()
    assert "Requeued" in "".join(p.read_text() for p in (tmp_path / "slurm").rglob("*_log.*"))


def test_a_worker_that_cannot_see_the_output_says_so(tmp_path):
    from harness.launch.worker import UnsharedOutput, run_task

    with pytest.raises(UnsharedOutput, match="must be on a filesystem every worker sees"):
        run_task({}, str(tmp_path / "elsewhere" / ".launch-x"), 1)


def test_status_shows_every_run_from_files(tmp_path, capsys):
    exp = tmp_path / "exp.toml"
    exp.write_text(TEXT)
    out = ["--out", str(tmp_path)]
    assert main(["train", str(exp), *out, "--only", "variant=swin-seed=0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", str(exp), *out]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("variant=swin-seed=0" in x and "finished" in x and "3/3" in x for x in lines)
    assert sum("pending" in x for x in lines[1:-1]) == 3
    assert lines[-1].startswith("1 done, 0 running, 0 failed, 3 pending")
