"""Result files: atomic JSON records, per-epoch JSONL logs, the aggregated table. No torch import.

Where each file lives is ``harness.layout``'s business; this module reads and writes them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.layout import RESULT_FILE, ExperimentDir

DONE_STATUSES = ("finished", "diverged", "oom")
_SEED_RE = re.compile(r"(^|-)seed=\d+")


def arm_of(run_id: str) -> str:
    """The arm of a run id, for records written before runs carried ``arm``: the id without its
    seed (``variant=lsla-seed=0`` -> ``lsla``; a lone ``variant=``/``preset=`` axis bare)."""
    arm = _SEED_RE.sub("", run_id).strip("-")
    for key in ("variant=", "preset="):
        if arm.startswith(key) and arm.count("=") == 1:
            arm = arm[len(key) :]
    return arm or "run"


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as strings so a diverged run's record stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file in the same directory and ``os.replace``: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(data), indent=2, default=_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


class UnreadableRecord(ValueError):
    """A ``result.json`` that is cut, empty or not a run record; the message names the file."""


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """One run record, or ``UnreadableRecord`` saying which file and why."""
    try:
        record = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableRecord(f"{path} is unreadable ({exc})") from None
    if not isinstance(record, dict) or "status" not in record:
        raise UnreadableRecord(f"{path} is not a run record (no 'status' in it)")
    return record


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite a whole JSONL file atomically (e.g. the per-epoch log after each checkpoint)."""
    atomic_write_text(path, "".join(json.dumps(_clean(r), default=_default) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (killed writer) is ignored."""
    rows = []
    if not Path(path).exists():
        return rows
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def iter_records(root: str | os.PathLike, warn=None) -> Iterator[dict[str, Any]]:
    """Every readable ``result.json`` below ``root``, with its run directory as ``run_dir``.

    An unreadable one is left out and reported through ``warn`` (default: a line on stderr).
    """
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    for path in sorted(Path(root).rglob(RESULT_FILE)):
        try:
            record = read_record(path)
        except UnreadableRecord as exc:
            warn(f"{exc}; left out (re-run it with: python -m harness sweep EXP.toml --only ...)")
            continue
        record["run_dir"] = str(path.parent)
        yield record


def flatten(record: dict[str, Any], prefix: str = "", skip: Iterable[str] = ()) -> dict[str, Any]:
    """Nested dicts become dotted columns; lists (curves, per-layer stats) are left out."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        elif not isinstance(value, list):
            flat[name] = value
    return flat


def write_table(root: str | os.PathLike) -> Path | None:
    """Aggregate every record below ``root`` into ``results.csv`` (and ``.parquet`` if possible)."""
    import pandas as pd

    rows = [flatten(r) for r in iter_records(root)]
    if not rows:
        return None
    table = pd.DataFrame(rows)
    exp = ExperimentDir(Path(root))
    out = exp.table_csv
    atomic_write_text(out, table.to_csv(index=False))
    fd, tmp = tempfile.mkstemp(dir=exp.path, prefix=".results.", suffix=".parquet.tmp")
    os.close(fd)
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, exp.table_parquet)
    except (ImportError, ValueError, TypeError):
        pass  # CSV is the canonical table; Parquet is a convenience when pyarrow is present
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


_PREDICTION = re.compile(r"^\s*(\S+)\s*>\s*(\S+)\s*$")


def parse_prediction(text: str) -> tuple[str, str] | None:
    """An experiment's predicted ordering ``"A > B"`` (its ``predict`` list, kept in every
    record's config) -> ``("A", "B")``; None when the text is not of that form."""
    match = _PREDICTION.match(text)
    return (match.group(1), match.group(2)) if match else None
