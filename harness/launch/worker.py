"""What a launcher's worker runs for one run: check it sees the output, then claim and train."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any


class UnsharedOutput(RuntimeError):
    """A worker cannot see the experiment directory the driver wrote."""


def write_marker(exp_dir: Path) -> Path:
    """A file only a worker on a shared filesystem can see; its name is unique per launch."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    marker = exp_dir / f".launch-{uuid.uuid4().hex[:12]}"
    marker.write_text(socket.gethostname())
    return marker


def run_task(config: dict[str, Any], marker: str, threads: int) -> dict[str, Any]:
    """Train one run (a ``RunConfig.to_dict``); returns its outcome, host and pid."""
    if not os.path.exists(marker):
        raise UnsharedOutput(
            f"worker {socket.gethostname()} cannot see {os.path.dirname(marker)!r}: the output "
            "directory must be on a filesystem every worker sees (NFS, Lustre, a shared home); "
            "choose one with --out"
        )
    import torch

    from harness import allocator
    from harness.config import run_from_dict
    from harness.sweep import work_on

    allocator.use(allocator.from_env())  # as the harness's own commands run
    torch.set_num_threads(threads)
    cfg = run_from_dict(config)
    status = work_on(cfg, log=lambda message: print(message, flush=True))
    return {
        "run_id": cfg.run_id,
        "status": status,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
