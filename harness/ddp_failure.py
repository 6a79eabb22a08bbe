"""When one rank of a DDP job fails, every rank stops, and the record keeps the real error.

A rank that raises cannot join the collectives its peers wait in, so the job cannot go on to the
next run: each rank writes what it saw (``failure.rankN.json``), rank 0 writes the run's record
with the first real error (a peer's "Connection closed" is only the echo of another rank's
failure), and every rank leaves the process group, so ``torchrun`` ends the job in seconds
instead of waiting out the collective timeout.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from harness.config import RunConfig
from harness.results import read_json, write_json
from harness.run import one_line
from harness.runtime import Dist

# Messages of errors that only echo a peer's failure (gloo and NCCL wording).
ECHOES = ("connection closed by peer", "connection reset", "broken pipe", "nccl", "timed out")


class JobAborted(RuntimeError):
    """A DDP run failed on some rank; the message names the rank, the error and the next step."""


def _is_echo(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "distbackenderror" in text or any(word in text for word in ECHOES)


def _peer_notes(cfg: RunConfig, wait_s: float) -> list[dict[str, Any]]:
    """Every rank's note, waiting briefly for a real (non-echo) one to be written."""
    deadline = time.monotonic() + wait_s
    while True:
        notes = []
        for path in cfg.run_dir.rank_failures():
            try:
                notes.append(read_json(path))
            except (OSError, ValueError):
                continue  # being written right now
        if any(not n["echo"] for n in notes) or time.monotonic() > deadline:
            return sorted(notes, key=lambda n: (n["echo"], n["time"]))
        time.sleep(0.1)


def abort_run(cfg: RunConfig, ddp: Dist, exc: BaseException, record: dict[str, Any]) -> None:
    """Record this rank's failure (rank 0: the run's record too), then raise ``JobAborted``."""
    note = {
        "rank": ddp.rank,
        "error": one_line(exc),
        "echo": _is_echo(exc),
        "time": time.time(),
        "traceback": traceback.format_exc(limit=8),
    }
    write_json(cfg.run_dir.rank_failure(ddp.rank), note)
    notes = _peer_notes(cfg, wait_s=10.0 if note["echo"] else 0.0)
    first = notes[0] if notes else note
    if ddp.main:
        record.update(
            error=f"rank {first['rank']}: {first['error']}",
            ranks={str(n["rank"]): n["error"] for n in notes},
        )
        write_json(cfg.run_dir.result, record)
    raise JobAborted(
        f"{cfg.experiment}/{cfg.run_id} failed on rank {first['rank']}: {first['error']}; "
        "every rank stops. Fix the cause and run the same command again: finished runs are kept "
        "and this one is retried."
    )
