"""Run every point of an experiment grid; skip finished runs, resume unfinished ones.

A run is done when its ``result.json`` exists with status finished / diverged / oom (a
``failed`` run, i.e. an unexpected crash, is retried). Records are written atomically, so
``kill -9`` at any moment loses at most the epoch in flight of the run in flight.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
import time
from typing import Any

from harness.config import ConfigError, RunConfig
from harness.results import (
    DONE_STATUSES,
    UnreadableRecord,
    read_record,
    write_json,
    write_table,
)


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
    """finished / diverged / oom / failed (from the record), unreadable, partial or pending."""
    files = cfg.run_dir
    if files.result.exists():
        try:
            return read_record(files.result)["status"]
        except UnreadableRecord:
            return "unreadable"
    resumable = files.checkpoint.exists() or files.previous_checkpoint.exists()
    return "partial" if resumable else "pending"


def _set_aside_unreadable(cfg: RunConfig, log) -> str:
    """Keep an unreadable record for inspection under another name; the run then goes on."""
    bad = cfg.run_dir.result
    try:
        read_record(bad)
    except UnreadableRecord as exc:
        log(f"    warning: {exc}; kept as {bad.name}.unreadable, the run goes on")
    bad.replace(bad.with_name(bad.name + ".unreadable"))
    return status_of(cfg)


def _notes(runs: list[RunConfig], log) -> None:
    """Say once per dataset what its results are (stand-in datasets are not the benchmark)."""
    from harness.data import dataset_note

    for name in sorted({r.data.name for r in runs}):
        if dataset_note(name):
            log(f"note: {name}: {dataset_note(name)}")


def _run_one(cfg: RunConfig, ddp, stop_after: int | None, log) -> dict[str, Any] | None:
    """Execute one run; an unexpected error becomes a ``failed`` record and the sweep goes on
    (under DDP the whole job stops instead: see ``harness.ddp_failure``)."""
    from harness.ddp_failure import abort_run
    from harness.run import execute, failure_record

    try:
        return execute(cfg, stop_after=stop_after, ddp=ddp)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        record = failure_record(cfg, exc)
        if ddp.enabled:
            abort_run(cfg, ddp, exc, record)
        write_json(cfg.run_dir.result, record)
        log(f"    failed: {record['error']}")
        return record


def _reset(cfg: RunConfig) -> None:
    for path in cfg.run_dir.restart_files():
        path.unlink(missing_ok=True)


def _claim(cfg: RunConfig, ddp, log, head: str):
    """Claim the run (rank 0 decides for the job); None when another worker holds it or it
    got done meanwhile."""
    from harness.claims import holder, try_claim

    claim = try_claim(cfg.run_dir.claim) if ddp.main else None
    if ddp.main and claim is not None and status_of(cfg) in DONE_STATUSES:
        claim.release()  # finished by another worker between our look and our claim
        claim = None
        log(f"{head}: {status_of(cfg)} by another worker meanwhile, skipped")
    elif ddp.main and claim is None:
        who = holder(cfg.run_dir.claim) or {}
        where = f"{who.get('host', '?')}:{who.get('pid', '?')}" if who else "another worker"
        log(f"{head}: taken by {where}, skipped here")
    if ddp.agree(claim is not None):
        return claim if ddp.main else contextlib.nullcontext()  # rank 0 holds it for the job
    return None


def _run_log(cfg: RunConfig, log):
    """``log`` that also keeps each line in the run's ``log.txt``."""
    from harness.runtime import append_line

    def both(message: str) -> None:
        log(message)
        if log is not _quiet:
            append_line(cfg.run_dir.log, message)

    return both


def _execute_claimed(cfg: RunConfig, ddp, stop_after: int | None, log, head: str):
    """Set an unreadable record aside, write the fingerprint, then run (all under the claim)."""
    from harness.plan import run_fingerprint

    if ddp.main:
        if status_of(cfg) == "unreadable":
            _set_aside_unreadable(cfg, log)
        write_json(cfg.run_dir.fingerprint, run_fingerprint(cfg))
    ddp.barrier()
    state = status_of(cfg)
    log(f"{head}: {'resuming' if state == 'partial' else 'starting'}")
    return _run_one(cfg, ddp, stop_after, log)


def _quiet(*_: Any) -> None:
    """The log of ranks other than 0."""


def start(runs: list[RunConfig], force: bool, rerun_changed: bool, ddp, log) -> None:
    """Rank 0: check identities, merge the plan, clear forced or changed runs; before training."""
    from harness.data import check_data
    from harness.plan import check_unchanged, write_plan

    if not ddp.main:
        return
    check_data(runs, log)
    reset = runs if force else check_unchanged(runs, rerun_changed, log)
    write_plan(runs)
    _notes(runs, log)
    for cfg in reset:
        _reset(cfg)


def run_sweep(
    runs: list[RunConfig],
    force: bool = False,
    stop_after: int | None = None,
    log=print,
    rerun_changed: bool = False,
) -> dict[str, Any]:
    """Execute ``runs`` in order; returns run ids per outcome. Aggregates the table at the end.

    Runs another worker holds are skipped (``elsewhere``). Under DDP every rank runs this; only
    rank 0 logs and writes the experiment's files.
    """
    from harness.runtime import distributed

    if not runs:
        raise ConfigError("the experiment expands to no runs")
    outcome: dict[str, list[str]] = {}
    with distributed(runs[0].train.device) as ddp:
        log = log if ddp.main else _quiet
        start(runs, force, rerun_changed, ddp, log)
        ddp.barrier()
        for i, cfg in enumerate(runs, 1):
            status = _one(cfg, ddp, stop_after, log, f"[{i}/{len(runs)}] {cfg.run_id}")
            outcome.setdefault(status, []).append(cfg.run_id)
    exp_dir = runs[0].run_dir.path.parent
    table = write_table(exp_dir) if ddp.main else None
    if table:
        log(f"results: {table}")
    return outcome


def _one(cfg: RunConfig, ddp, stop_after: int | None, log, head: str) -> str:
    """Skip a done run, else claim and execute it; its outcome (``skipped``, ``elsewhere`` when
    another worker holds it, ``partial``, or the record's status)."""
    state = status_of(cfg)
    if state in DONE_STATUSES:
        log(f"{head}: {state}, skipped")
        return "skipped"
    claim = _claim(cfg, ddp, log, head)
    if claim is None:
        return "elsewhere"
    started, run_log = time.perf_counter(), _run_log(cfg, log)
    with claim:
        record = _execute_claimed(cfg, ddp, stop_after, run_log, head)
    status = "partial" if record is None else record["status"]
    _log_outcome(record, status, time.perf_counter() - started, run_log)
    return status


def work_on(cfg: RunConfig, log=print) -> str:
    """One run as a launcher's worker does it (Ray task, SLURM job): claim, execute, release.

    The driver has already checked identities and written the plan (``start``).
    """
    from harness.runtime import distributed

    with distributed(cfg.train.device) as ddp:
        return _one(cfg, ddp, None, log if ddp.main else _quiet, cfg.run_id)


def _log_outcome(record: dict[str, Any] | None, status: str, took: float, log) -> None:
    if status == "finished":
        log(f"    top1 {record['metrics']['top1']:.2f}  ({took:.0f}s)")
    elif status in ("diverged", "oom"):
        log(f"    {status}: {record.get('error', '')}  ({took:.0f}s)")


def exit_code(outcome: dict[str, list[str]]) -> int:
    """0 when every run of this call finished (or was already done), else 1, naming the rest."""
    bad = {s: ids for s, ids in outcome.items() if s in ("failed", "diverged", "oom") and ids}
    for status, ids in bad.items():
        print(f"{len(ids)} run(s) {status}: {', '.join(ids)}", file=sys.stderr)
    return 1 if bad else 0
