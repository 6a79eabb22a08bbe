"""Run identity: a fingerprint of everything that can change a run's result.

Written to ``fingerprint.json`` when a run starts. A sweep that finds a finished or partial run
made with another fingerprint stops before training anything and names what differs, so a
changed ``--set`` never passes off old results as new (``--rerun-changed`` re-runs those runs).
Settings that cannot change a result (where files go, progress bars, loader workers) are left
out. No torch import.
"""

from __future__ import annotations

import functools
import os
import subprocess
from importlib import metadata
from typing import Any

from harness.results import flatten

# Keys that name or place a run, or only change how fast it goes, not what it computes.
NOT_IDENTITY = (
    "experiment",
    "run_id",
    "arm",
    "out_dir",
    "baseline",
    "description",
    "order",
    "data.num_workers",
    "data.eval_batch_size",
    "train.progress",
)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes), or None outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def code_version() -> dict[str, Any]:
    try:
        version = metadata.version("vit-lsla-harness")
    except metadata.PackageNotFoundError:
        version = None
    return {"code.version": version, "code.commit": git_commit()}


def fingerprint(config: dict[str, Any], switches: dict[str, Any]) -> dict[str, Any]:
    """Flat ``key -> value`` of a run's config dict (``RunConfig.to_dict``), its resolved
    attention switches and the code version."""
    flat = {
        k: v
        for k, v in flatten(config).items()
        if k not in NOT_IDENTITY and not k.startswith("launch.")  # where, not what
    }
    flat.update({f"switches.{k}": v for k, v in switches.items()})
    flat.update(code_version())
    return dict(sorted(flat.items()))


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key old -> new`` for every key whose value differs (a missing key shows as None)."""
    keys = sorted(set(old) | set(new))
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
