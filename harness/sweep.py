"""Run every point of an experiment grid; skip finished runs, resume unfinished ones.

A run is done when its ``result.json`` exists with status finished / diverged / oom (a
``failed`` run, i.e. an unexpected crash, is retried). Records are written atomically, so
``kill -9`` at any moment loses at most the epoch in flight of the run in flight.
"""

from __future__ import annotations

import fnmatch
import sys
import time
from pathlib import Path
from typing import Any

from harness.config import ConfigError, RunConfig
from harness.results import DONE_STATUSES, RESULT_FILE, read_json, write_json, write_table


def select(runs: list[RunConfig], only: list[str]) -> list[RunConfig]:
    """Keep runs whose id matches every ``--only`` wildcard (e.g. ``'variant=lsla*'``)."""
    for pattern in only:
        kept = [r for r in runs if fnmatch.fnmatchcase(r.run_id, f"*{pattern}*")]
        if not kept:
            raise ConfigError(
                f"--only {pattern!r} matches no run; run ids: {', '.join(r.run_id for r in runs)}"
            )
        runs = kept
    return runs


def status_of(cfg: RunConfig) -> str:
    path = cfg.run_dir / RESULT_FILE
    if path.exists():
        return read_json(path).get("status", "unknown")
    return "partial" if (cfg.run_dir / "checkpoint.pt").exists() else "pending"


def run_sweep(
    runs: list[RunConfig], force: bool = False, stop_after: int | None = None, log=print
) -> dict[str, Any]:
    """Execute ``runs`` in order; returns counts per outcome. Aggregates the table at the end."""
    from harness.data import STANDIN_NOTE, is_standin
    from harness.run import execute, failure_record

    if not runs:
        raise ConfigError("the experiment expands to no runs")
    exp_dir = Path(runs[0].out_dir) / runs[0].experiment
    write_json(
        exp_dir / "experiment.json",
        {"experiment": runs[0].experiment, "runs": [r.to_dict() for r in runs]},
    )
    standins = sorted({r.data.name for r in runs if is_standin(r.data.name)})
    if standins:
        log(f"note: {', '.join(standins)}: {STANDIN_NOTE}")
    outcome: dict[str, list[str]] = {}
    for i, cfg in enumerate(runs, 1):
        state = status_of(cfg)
        if state in DONE_STATUSES and not force:
            log(f"[{i}/{len(runs)}] {cfg.run_id}: {state}, skipped")
            outcome.setdefault("skipped", []).append(cfg.run_id)
            continue
        if force:
            for name in (RESULT_FILE, "checkpoint.pt", "metrics.jsonl"):
                (cfg.run_dir / name).unlink(missing_ok=True)
        log(f"[{i}/{len(runs)}] {cfg.run_id}: {'resuming' if state == 'partial' else 'starting'}")
        start = time.perf_counter()
        try:
            record = execute(cfg, stop_after=stop_after)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one broken run must not stop the sweep; it is recorded
            record = failure_record(cfg, exc)
            write_json(cfg.run_dir / RESULT_FILE, record)
            log(f"    failed: {record['error']}")
        status = "partial" if record is None else record["status"]
        outcome.setdefault(status, []).append(cfg.run_id)
        if record is not None and status == "finished":
            log(f"    top1 {record['metrics']['top1']:.2f}  ({time.perf_counter() - start:.0f}s)")
    table = write_table(exp_dir)
    if table:
        log(f"results: {table}")
    return outcome


def exit_code(outcome: dict[str, list[str]]) -> int:
    if outcome.get("failed"):
        print(
            f"{len(outcome['failed'])} run(s) failed: {', '.join(outcome['failed'])}",
            file=sys.stderr,
        )
        return 1
    return 0
