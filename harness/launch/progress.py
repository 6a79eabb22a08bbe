"""The state of an experiment's runs, read from its files alone (any launcher, any machine)."""

from __future__ import annotations

import time
from collections import Counter

from harness.claims import holder
from harness.config import RunConfig
from harness.results import DONE_STATUSES, read_jsonl
from harness.sweep import status_of

ENDED = (*DONE_STATUSES, "failed")  # a failed run is retried by the next sweep, but has ended


def state_of(cfg: RunConfig) -> str:
    """finished / diverged / oom / failed, running (a live claim), or pending."""
    status = status_of(cfg)
    if status in ENDED:
        return status
    return "running" if holder(cfg.run_dir.claim) is not None else "pending"


def table(runs: list[RunConfig]) -> list[dict[str, object]]:
    """One row per run: state, epochs done, host of a running one, top-1 of a finished one."""
    from harness.results import read_record

    rows = []
    for cfg in runs:
        state = state_of(cfg)
        claim = holder(cfg.run_dir.claim) or {}
        epochs = len(read_jsonl(cfg.run_dir.metrics))
        top1 = None
        if state == "finished":
            top1 = read_record(cfg.run_dir.result).get("metrics", {}).get("top1")
        host = f"{claim.get('host')}:{claim.get('pid')}" if state == "running" else ""
        rows.append(
            {"run": cfg.run_id, "state": state, "epochs": f"{epochs}/{cfg.train.epochs}",
             "host": host, "top1": top1}
        )  # fmt: skip
    return rows


class Progress:
    """One line of counts (done / running / failed / pending) and an ETA, printed on change."""

    def __init__(self, runs: list[RunConfig], log) -> None:
        self.runs, self.log, self.started, self.last = runs, log, time.monotonic(), ""

    def line(self) -> str:
        counts = Counter(state_of(cfg) for cfg in self.runs)
        done = sum(counts[s] for s in ("finished", "diverged", "oom"))
        left = counts["running"] + counts["pending"]
        eta = ""
        if done and left:
            per_run = (time.monotonic() - self.started) / done
            eta = f", ETA {per_run * left / max(1, counts['running']) / 60:.0f} min"
        return (
            f"{done} done, {counts['running']} running, {counts['failed']} failed, "
            f"{counts['pending']} pending{eta}"
        )

    def update(self) -> None:
        line = self.line()
        if line.split(", ETA")[0] != self.last.split(", ETA")[0]:
            self.log(line)
        self.last = line
