"""Claims: a run is trained by one process at a time, whoever starts the workers.

Before a run starts, its worker creates ``claim.json`` atomically (``O_CREAT | O_EXCL``) with its
host, pid, start time and a heartbeat that a background thread refreshes. Another worker that
finds the claim skips the run, unless the claim is stale: its heartbeat is older than the
timeout, or its process is gone from this very host. A stale claim is taken over by renaming it
first (only one renamer can win). This works on any shared filesystem with atomic create and
rename, so plain ``sweep`` processes, Ray tasks and SLURM array jobs can share one directory.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0


def _now() -> float:
    return time.time()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive_here(claim: dict[str, Any]) -> bool:
    if claim.get("host") != socket.gethostname():
        return True  # another host's process: only its heartbeat can tell
    try:
        os.kill(int(claim["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError):
        return True
    return True


def holder(path: Path, stale_after: float = STALE_AFTER_S) -> dict[str, Any] | None:
    """The live claim on ``path``, or None if there is none or it is stale."""
    claim = _read(path)
    if claim is None:  # gone, or caught between its creation and its first bytes
        try:
            claim = {"host": "?", "pid": "?", "heartbeat": path.stat().st_mtime}
        except FileNotFoundError:
            return None
    if _now() - claim.get("heartbeat", 0) > stale_after or not _alive_here(claim):
        return None
    return claim


@dataclass
class Claim:
    """A held claim; ``release()`` (or leaving the ``with`` block) gives it up."""

    path: Path
    token: str
    _stop: threading.Event = field(default_factory=threading.Event)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            claim = _read(self.path)
            if claim is None or claim.get("token") != self.token:
                return  # taken over (we were presumed dead); the record write decides
            claim["heartbeat"] = _now()
            tmp = self.path.with_name(f".{self.path.name}.{self.token}")
            tmp.write_text(json.dumps(claim))
            os.replace(tmp, self.path)

    def release(self) -> None:
        self._stop.set()
        claim = _read(self.path)
        if claim is not None and claim.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _create(path: Path, token: str) -> bool:
    payload = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": token,
        "started": _now(),
        "heartbeat": _now(),
    }
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    return True


def try_claim(path: Path, stale_after: float = STALE_AFTER_S) -> Claim | None:
    """Claim ``path`` for this process, taking over a stale claim; None if someone holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    if not _create(path, token):
        if holder(path, stale_after) is not None:
            return None
        aside = path.with_name(f"{path.name}.stale-{token}")
        try:  # stale: move it aside; of several takers only one rename succeeds
            path.rename(aside)
        except FileNotFoundError:
            return None
        aside.unlink(missing_ok=True)
        if not _create(path, token):
            return None
    claim = Claim(path, token)
    threading.Thread(target=claim._beat, daemon=True).start()
    return claim
