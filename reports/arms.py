"""The arms' speed and memory measured together (``python -m harness compare``: ``arms.json``),
as table rows: each arm against the baseline, with the spread of the per-round ratios."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from harness.layout import ARMS_FILE


def load_comparisons(roots: list[str | Path]) -> list[dict[str, Any]]:
    """Every readable ``arms.json`` below ``roots``, each tagged with its experiment folder."""
    found = []
    for root in roots:
        for path in sorted(Path(root).rglob(ARMS_FILE)):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                print(f"warning: {path} is unreadable ({exc}); left out", file=sys.stderr)
                continue
            if isinstance(data, dict) and isinstance(data.get("arms"), dict):
                found.append({**data, "experiment": path.parent.name})
    return found


def _ratio(values: list[float]) -> str:
    med, q1, q3 = values
    return f"{med:.2f}× ({q1:.2f}–{q3:.2f})"


def _count(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def comparison_frame(comparison: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for arm, s in comparison["arms"].items():
        rows.append(
            {
                "arm": arm,
                "inference_ms": s["inference_ms_median"],
                "inference_x": _ratio(s["inference_speedup"]),
                "train_ms": s["train_ms_median"],
                "train_x": _ratio(s["train_speedup"]),
                "saved_mb": s["saved_mb_per_image"],
                "saved_x": f"{s['saved_ratio']:.3f}×",
                # fresh memory first touched, per call (arms.json of 2026-12-05 on; CPU)
                "inference_faults": _count(s.get("inference_page_faults")),
                "train_faults": _count(s.get("train_page_faults")),
            }
        )
    return pd.DataFrame(rows)


def comparison_note(c: dict[str, Any]) -> str:
    load = c.get("load_avg")
    load_text = ", ".join(f"{x:.2f}" for x in load) if load else "not recorded"
    return (
        f"{c['experiment']}: speed-up over {c['baseline']} (above 1: faster), median of "
        f"{c['rounds']} interleaved rounds ({c.get('round_order', 'rotating')} order) with the "
        "interquartile range of the per-round ratio; "
        f"{c['device']}, {c['precision']}, {c['threads']} thread(s), batch {c['batch_size']} at "
        f"{c['img_size']} px, untrained models; load average before: {load_text}; allocator: "
        f"{c.get('allocator') or 'not recorded'}. Saved activations: bytes autograd keeps for "
        "backward per image, each storage once."
    )
