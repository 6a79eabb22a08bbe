"""Build one self-contained HTML report (inline CSS, images embedded as data URIs).

python -m reports runs/default -o runs/default/report.html [--bench runs/bench/benchmark.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.layout import PLAN_FILE, RESULT_FILE
from harness.results import atomic_write_text
from reports import plots, tables
from reports.arms import load_comparisons
from reports.load import (
    bench_frame,
    find_bench_files,
    list_frame,
    load_records,
    planned_runs,
    runs_frame,
)
from reports.page import CHECK_SCRIPT, CSS, figure, html_table
from reports.predictions import prediction_table
from reports.sections import (
    ablation_section,
    arms_section,
    attn_table,
    bench_section,
    header_section,
    pick_maps,
    predictions_section,
    runs_section,
    scatter_section,
    status_section,
    unrecorded_note,
)


def build(results_dir: str | Path | list[str | Path], bench_paths: list[str] | None = None) -> str:
    """The report of the runs below ``results_dir`` (one folder, or several shown together;
    benchmark JSON is looked for beside the first)."""
    dirs = list(results_dir) if isinstance(results_dir, (list, tuple)) else [results_dir]
    records = [r for d in dirs for r in load_records(d)]
    planned = [p for d in dirs for p in planned_runs(d)]
    results_dir = ", ".join(map(str, dirs))
    runs = runs_frame(records)
    table = tables.ablation_table(runs)
    bench = bench_frame(find_bench_files(dirs[0], bench_paths))
    attn = list_frame(records, "attn_stats")
    paper = tables.paper_comparison(runs)
    sections = [
        header_section(records, results_dir),
        "<h2>Run status</h2>",
        status_section(records, planned),
        "<h2>Ablation table</h2>",
        ablation_section(table),
        predictions_section(prediction_table(runs)),
        "<h2>Paper's numbers beside ours</h2>",
        html_table(paper, {c: c for c in paper.columns}),
        "<p class='muted'>Ours only on the real datasets; stand-in runs are not comparable.</p>",
        "<h2>Speed and memory between arms (measured together)</h2>",
        arms_section(load_comparisons(dirs)),
        "<h2>Accuracy vs throughput and parameters</h2>",
        scatter_section(table),
        "<h2>Training curves</h2>",
        figure(plots.curves(list_frame(records, "history")), "curves"),
        "<h2>Attention statistics</h2>",
        "<p class='muted'>Held-out batch, per layer: normalised entropy, weight on the query "
        "itself and weight-averaged distance, with and without the outer bias B_o.</p>",
        figure(plots.attention_stats(attn), "attention statistics"),
        attn_table(attn),
        unrecorded_note(records),
        "<h2>Attention maps</h2>",
        figure(plots.attention_maps(pick_maps(records)), "maps"),
        "<h2>Benchmarks</h2>",
        bench_section(bench),
        "<h2>Runs: environment and settings</h2>",
        runs_section(records),
    ]
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>ViT-LSLA "
        f"report</title><style>{CSS}</style>{CHECK_SCRIPT}</head><body>"
        f"{''.join(sections)}</body></html>"
    )


def _results_problem(root: Path) -> str | None:
    """Why ``root`` cannot be reported on, in one line (None: it can)."""
    if not root.is_dir():
        return f"error: results directory {str(root)!r} does not exist"
    if not any(next(root.rglob(name), None) for name in (RESULT_FILE, PLAN_FILE)):
        return (
            f"error: no results under {str(root)!r} (no result.json or experiment.json); "
            "run a sweep first, or point at the folder it wrote (e.g. runs/default)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__)
    parser.add_argument(
        "results_dir",
        nargs="+",
        help="directory holding runs (searched recursively); several are shown in one report",
    )
    parser.add_argument("-o", "--output", default="report.html")
    parser.add_argument(
        "--bench",
        action="append",
        default=[],
        help="pytest-benchmark JSON, or a folder (e.g. .benchmarks) whose newest JSON is read "
        "(default: RESULTS_DIR/bench/*.json, else the newest autosave in ./.benchmarks)",
    )
    args = parser.parse_args(argv)
    missing = [b for b in args.bench if not Path(b).exists()]
    if missing:
        print(f"error: benchmark file {missing[0]!r} does not exist", file=sys.stderr)
        return 2
    for folder in args.results_dir:
        problem = _results_problem(Path(folder))
        if problem:
            print(problem, file=sys.stderr)
            return 2
    out = Path(args.output)
    if out.is_dir():
        print(
            f"error: -o {str(out)!r} is a directory; give a file, e.g. {out / 'report.html'}",
            file=sys.stderr,
        )
        return 2
    page = build(args.results_dir, args.bench)
    try:
        atomic_write_text(out, page)
    except OSError as exc:
        print(
            f"error: cannot write the report to {str(out)!r}: {exc.strerror or exc}; "
            "choose a writable -o",
            file=sys.stderr,
        )
        return 1
    print(f"report: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
