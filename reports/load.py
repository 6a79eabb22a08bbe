"""Read run records and benchmark JSON into pandas frames (no torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from harness.layout import PLAN_FILE
from harness.results import arm_of, iter_records
from reports.metrics import METRICS


def load_records(root: str | Path) -> list[dict[str, Any]]:
    """Records below ``root`` in experiment-file order, each with its ``arm``."""
    records = list(iter_records(root))
    for r in records:
        if not r.get("arm"):  # records written before runs carried their arm
            r["arm"] = arm_of(r["run_id"]) if r.get("run_id") else r.get("variant", "run")
    return sorted(
        records, key=lambda r: (r.get("experiment", ""), (r.get("config") or {}).get("order", 0))
    )


def planned_runs(root: str | Path) -> list[dict[str, Any]]:
    """``(experiment, run_id, arm)`` of every run the experiments below ``root`` planned."""
    planned = []
    for path in sorted(Path(root).rglob(PLAN_FILE)):
        try:
            runs = json.loads(path.read_text()).get("runs", [])
        except (OSError, ValueError, AttributeError):
            print(f"warning: {path} is unreadable; its pending runs are not shown", file=sys.stderr)
            continue
        planned += [
            {"experiment": r.get("experiment"), "run_id": r.get("run_id"), "arm": r.get("arm")}
            for r in runs
            if isinstance(r, dict)
        ]
    return planned


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run with the columns the tables and plots need."""
    rows = []
    for r in records:
        rows.append(
            {
                "experiment": r.get("experiment"),
                "run_id": r.get("run_id"),
                "arm": r["arm"],
                "dataset": r.get("dataset"),
                "standin": bool(r.get("dataset_note")),
                "model": r.get("model"),
                "variant": r.get("variant"),
                "seed": r.get("seed"),
                "status": r.get("status"),
                "img_size": r.get("img_size"),
                **{m.column: m.read(r) for m in METRICS},
                "form": (r.get("switches") or {}).get("form"),
                "inner_bias": (r.get("switches") or {}).get("inner_bias"),
                "outer_bias": (r.get("switches") or {}).get("outer_bias"),
                "kernel": ", ".join(r.get("attention_kernels") or []) or None,
                "device": (r.get("env") or {}).get("device_name"),
                "precision": (r.get("env") or {}).get("precision"),
                "declared_baseline": (r.get("config") or {}).get("baseline"),
                "predict": tuple((r.get("config") or {}).get("predict") or ()),
            }
        )
    return pd.DataFrame(rows)


def list_frame(records: list[dict[str, Any]], field: str) -> pd.DataFrame:
    """One row per element of a record's list ``field`` (``history``, ``attn_stats``), tagged
    with the run's arm, dataset and seed."""
    rows = [
        {"arm": r["arm"], "dataset": r.get("dataset"), "seed": r.get("seed"), **item}
        for r in records
        for item in r.get(field) or []
    ]
    return pd.DataFrame(rows)


AUTOSAVE_DIR = Path(".benchmarks")  # where ``pytest --benchmark-autosave`` (tox -e bench) saves


def newest_json(folder: Path) -> Path | None:
    """The most recently written JSON under ``folder`` (autosave keeps one file per run)."""
    found = [p for p in folder.rglob("*.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_bench_files(root: str | Path, extra: list[str] | None = None) -> list[Path]:
    """``bench/*.json`` under the results dir and next to it, plus the given paths (a folder
    such as ``.benchmarks`` gives its newest JSON). With none of these, the newest autosaved
    run under ``./.benchmarks`` is read."""
    root = Path(root)
    found = sorted(root.glob("bench/*.json")) + sorted(root.parent.glob("bench/*.json"))
    for given in map(Path, extra or []):
        found.append(newest_json(given) if given.is_dir() else given)
    if not found and AUTOSAVE_DIR.is_dir():
        found.append(newest_json(AUTOSAVE_DIR))
    return [p for p in dict.fromkeys(found) if p is not None and p.is_file()]


def _bench_rows(path: Path) -> list[dict[str, Any]]:
    """The benchmarks of one pytest-benchmark JSON; anything else is left out with a warning."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"warning: benchmark file {path} is unreadable ({exc}); left out", file=sys.stderr)
        return []
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list):
        print(
            f"warning: {path} is not pytest-benchmark JSON (no 'benchmarks' list); left out",
            file=sys.stderr,
        )
        return []
    return [b for b in benchmarks if isinstance(b, dict)]


def bench_frame(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for path in paths:
        for b in _bench_rows(path):
            stats = b.get("stats", {})
            rows.append(
                {
                    "name": b.get("name"),
                    "group": b.get("group"),
                    "file": path.name,
                    "median_ms": 1e3 * stats.get("median", float("nan")),
                    "iqr_ms": 1e3 * stats.get("iqr", float("nan")),
                    "rounds": stats.get("rounds"),
                    **b.get("extra_info", {}),
                }
            )
    return pd.DataFrame(rows)
