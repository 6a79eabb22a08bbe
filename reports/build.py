"""Build one self-contained HTML report (inline CSS, images embedded as data URIs).

python -m reports runs/default -o runs/default/report.html [--bench runs/bench/benchmark.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import sys
from pathlib import Path

import pandas as pd

from harness.layout import PLAN_FILE, RESULT_FILE
from harness.results import atomic_write_text
from reports import plots, tables
from reports.arms import comparison_frame, comparison_note, load_comparisons
from reports.load import (
    bench_frame,
    find_bench_files,
    list_frame,
    load_records,
    planned_runs,
    runs_frame,
)
from reports.metrics import METRICS
from reports.predictions import prediction_table

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1400px;
color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.baseline td{background:#eef6ff;font-weight:600}
.note{background:#fff7e0;border-left:4px solid #f0b400;padding:.5rem .8rem;margin:.8rem 0}
.muted{color:#666;font-size:.85rem}img{max-width:100%;margin:.5rem 0}
details{margin:.3rem 0}summary{cursor:pointer}pre{background:#f7f7f7;padding:.5rem;
overflow:auto;font-size:.75rem}
"""
# Marks the body once images have decoded: lets a headless browser confirm the page rendered.
CHECK_SCRIPT = """<script>window.addEventListener('load',function(){var i=document.images,ok=0;
for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-ok',ok);
document.body.setAttribute('data-images-total',i.length);
document.body.setAttribute('data-tables',document.getElementsByTagName('table').length);});
</script>"""


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) >= 1000 or abs(value) < 0.01 else f"{value:.2f}"
    return html.escape(str(value))


def html_table(df: pd.DataFrame, columns: dict[str, str], highlight: str | None = None) -> str:
    if df.empty:
        return "<p class='muted'>no rows</p>"
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    rows = []
    for _, row in df.iterrows():
        cls = " class='baseline'" if highlight and bool(row.get(highlight)) else ""
        cells = "".join(f"<td>{_fmt(row.get(col))}</td>" for col in columns)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure(png: str | None, alt: str) -> str:
    if png is None:
        return f"<p class='muted'>{html.escape(alt)}: no data</p>"
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{png}'>"


def _metric_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table's display columns, one (plus its delta) per declared metric."""
    t = table.copy()
    cols = {"arm": "arm", "model": "model", "variant": "variant", "seeds": "seeds"}
    for m in METRICS:
        shown = f"{m.column}_shown"
        values = t[m.column] * m.scale
        if m.ci:
            cis = t[f"{m.column}_ci"] * m.scale
            t[shown] = [_with_interval(v, c) for v, c in zip(values, cis, strict=True)]
            cols[shown] = f"{m.label} (mean ± 95% CI)"
        else:
            t[shown] = values
            cols[shown] = m.label
        if m.delta == "diff" and m.ci:
            d = m.delta_column
            t[f"{d}_shown"] = [
                "—" if base else _with_interval(v, c, signed=True)
                for v, c, base in zip(t[d], t[f"{d}_ci"], t["baseline"], strict=True)
            ]
            cols[f"{d}_shown"] = f"{m.delta_label} (paired by seed, 95% CI)"
            cols[f"{d}_verdict"] = "vs baseline"
        elif m.delta:
            cols[m.delta_column] = m.delta_label
    cols["other_status"] = "other"
    return t, cols


def _with_interval(value, half, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "—"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return (
        f"{text} ± {half:.2f}" if half is not None and pd.notna(half) else f"{text} (no interval)"
    )


def ablation_section(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p class='muted'>no finished runs</p>"
    t, cols = _metric_columns(table)
    parts = []
    for ds, group in t.groupby("dataset", sort=False):
        note = ""
        if group["standin"].any():
            note = (
                "<p class='note'><b>Stand-in data.</b> These runs use an embedded dataset "
                f"({html.escape(ds)}) in place of IP102 / Mini-ImageNet; they exercise the "
                "pipeline and rank variants on an easy task, they do not reproduce the "
                "paper's benchmark.</p>"
            )
        parts.append(
            f"<h3>{html.escape(ds)}</h3>{note}"
            f"{html_table(group, cols, highlight='baseline')}"
            "<p class='muted'>Highlighted row: the baseline arm all deltas refer to (the "
            "experiment's own, else Swin / QKV). Throughput: synthetic input, see each run's "
            "settings.</p>"
        )
    return "".join(parts)


def attn_table(attn: pd.DataFrame) -> str:
    if attn.empty:
        return ""
    cols = [
        "entropy_norm",
        "self_weight",
        "self_weight_softmax",
        "mean_distance",
        "mean_distance_softmax",
        "row_sum",
    ]
    mean = attn.groupby(["dataset", "arm"], sort=False)[cols].mean().reset_index()
    return html_table(
        mean,
        {
            "dataset": "dataset",
            "arm": "arm",
            "entropy_norm": "entropy / log N",
            "self_weight": "self weight",
            "self_weight_softmax": "self weight (no B_o)",
            "mean_distance": "distance",
            "mean_distance_softmax": "distance (no B_o)",
            "row_sum": "row sum",
        },
    )


def unrecorded_note(records: list[dict]) -> str:
    """Name the arms whose variant records no attention weights (so they have no statistics)."""
    notes = {r["arm"]: r["attn_stats_note"] for r in records if r.get("attn_stats_note")}
    if not notes:
        return ""
    items = "; ".join(f"{html.escape(arm)}: {html.escape(note)}" for arm, note in notes.items())
    return f"<p class='note'><b>No attention statistics</b> for {len(notes)} arm(s): {items}.</p>"


def pick_maps(records: list[dict]) -> list[tuple[str, dict]]:
    """One attention map per arm (first seed), arms with an outer bias first, at most four."""
    seen, maps = set(), []
    ordered = sorted(
        records, key=lambda r: (not (r.get("switches") or {}).get("outer_bias"), r.get("seed", 0))
    )
    for r in ordered:
        if r.get("attn_map") and r["arm"] not in seen:
            seen.add(r["arm"])
            maps.append((r["arm"], r["attn_map"]))
    return maps[:4]


def _ratio_paragraph(r: pd.Series) -> str:
    """The headline ratio with how it was measured (older JSON lacks the interleaving fields)."""
    verdict = "meets" if r.get("meets_goal") else "misses"
    how = ""
    if pd.notna(r.get("rounds_interleaved")):
        how = (
            f"median of {int(r['rounds_interleaved'])} interleaved rounds, IQR "
            f"{r['ratio_q1']:.2f}–{r['ratio_q3']:.2f}, {_fmt(r.get('timing_threads'))} thread(s); "
        )
        if pd.notna(r.get("ratio_cpu_time")):
            how += f"process CPU time ratio {r['ratio_cpu_time']:.2f}×; "
    return (
        f"<p><b>vit_lsla_t / timm swin_tiny inference speed on "
        f"{_fmt(r.get('device_name'))}: {r['throughput_ratio']:.2f}×</b> "
        f"({how}{r['lsla_images_per_s']:.1f} vs {r['swin_images_per_s']:.1f} img/s, batch "
        f"{int(r['batch'])}, {r['precision']}); {verdict} the ≥{r['goal']} goal "
        "(FLOPs ratio 4.5/3.5).</p>"
    )


def bench_section(bench: pd.DataFrame) -> str:
    if bench.empty:
        return (
            "<p class='muted'>no benchmark JSON found (run <code>tox -e bench</code> or "
            "<code>pytest --benchmark-only --benchmark-json=RESULTS/bench/b.json</code>)</p>"
        )
    files = ", ".join(sorted(set(bench["file"].dropna())))
    out = [f"<p class='muted'>read from {html.escape(files)}</p>"]
    ratio = bench[bench.get("kind") == "ratio"] if "kind" in bench else bench.iloc[0:0]
    for _, r in ratio.iterrows():
        out.append(_ratio_paragraph(r))
    out.append(figure(plots.variant_times(bench), "attention variants"))
    out.append(figure(plots.scaling(bench), "scaling"))
    summary = tables.bench_summary(bench)
    out.append(
        "<details><summary>all benchmark rows</summary>"
        + html_table(summary, {c: c for c in summary.columns})
        + "</details>"
    )
    return "".join(out)


def runs_section(records: list[dict]) -> str:
    items = []
    for r in sorted(records, key=lambda r: (r.get("experiment", ""), r.get("run_id", ""))):
        env = r.get("env") or {}
        head = (
            f"{html.escape(r.get('experiment', ''))}/{html.escape(r.get('run_id', ''))} — "
            f"{html.escape(str(r.get('status')))} — {html.escape(str(env.get('device_name')))}"
            f", torch {html.escape(str(env.get('torch')))}, commit "
            f"{html.escape(str(env.get('git_commit'))[:12])}"
        )
        body = {
            "env": env,
            "config": r.get("config"),
            "switches": r.get("switches"),
            "data": r.get("data"),
            "throughput": r.get("throughput"),
            "error": r.get("error"),
        }
        items.append(
            f"<details><summary>{head}</summary><pre>"
            f"{html.escape(json.dumps(body, indent=2, default=str))}</pre></details>"
        )
    return "".join(items)


def _header(records: list[dict], results_dir: str | Path) -> str:
    exps = sorted({r.get("experiment", "") for r in records}) or ["(none)"]
    commits = sorted({c for r in records if (c := (r.get("env") or {}).get("git_commit"))})
    return (
        f"<h1>ViT-LSLA ablation report: {html.escape(', '.join(exps))}</h1>"
        f"<p class='muted'>{len(records)} runs from {html.escape(str(results_dir))}; generated "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}; "
        f"commits {html.escape(', '.join(commits) or 'not recorded')}</p>"
    )


def arms_section(comparisons: list[dict]) -> str:
    """Speed and memory of the arms measured against each other (``harness compare``)."""
    if not comparisons:
        return (
            "<p class='muted'>not measured together (run <code>python -m harness compare "
            "EXP.toml</code>; the per-run figures above were each taken alone)</p>"
        )
    cols = {
        "arm": "arm",
        "inference_ms": "inference ms",
        "inference_x": "× baseline (IQR)",
        "train_ms": "train step ms",
        "train_x": "× baseline (IQR)",
        "saved_mb": "saved MB / image",
        "saved_x": "× baseline",
    }
    parts = []
    for c in comparisons:
        note = html.escape(comparison_note(c))
        parts.append(f"{html_table(comparison_frame(c), cols)}<p class='muted'>{note}</p>")
    return "".join(parts)


def predictions_section(predicted: pd.DataFrame) -> str:
    """The predicted orderings of positive controls, each with its paired interval and fate."""
    if predicted.empty:
        return ""
    shown = predicted.assign(
        delta=[
            f"{m:+.1f}" + (f" ± {c:.1f}" if c is not None and pd.notna(c) else "")
            for m, c in zip(predicted["delta_top1"], predicted["ci"], strict=True)
        ],
        p=[f"{p:.3g}" if pd.notna(p) else "–" for p in predicted["p"]],
    )
    cols = {
        "experiment": "experiment",
        "dataset": "dataset",
        "prediction": "predicted",
        "delta": "Δ top-1, pp (95% CI, paired by seed)",
        "p": "paired t p",
        "seeds": "seeds",
        "outcome": "outcome",
    }
    return (
        "<h2>Predicted orderings (positive controls)</h2>"
        "<p class='muted'>Orderings the experiment declares in advance (<code>predict</code>), "
        "tested on the same seeds: a prediction holds when the interval of the paired "
        "difference lies above zero.</p>" + html_table(shown, cols)
    )


def status_section(records: list[dict], planned: list[dict]) -> str:
    """Every run planned or recorded, with its status and, when it did not finish, why."""
    rows = {(r.get("experiment"), r.get("run_id")): r for r in records}
    table = [
        {"run": f"{r.get('experiment')}/{r.get('run_id')}", "status": r.get("status"),
         "reason": (r.get("error") or "")[:300]}
        for r in records
    ]  # fmt: skip
    table += [
        {"run": f"{p['experiment']}/{p['run_id']}", "status": "pending", "reason": "no record yet"}
        for p in planned
        if (p["experiment"], p["run_id"]) not in rows
    ]
    if not table:
        return "<p class='muted'>no runs</p>"
    frame = pd.DataFrame(table)
    counts = frame["status"].value_counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    order = {"failed": 0, "diverged": 1, "oom": 2, "pending": 3, "finished": 4}
    frame = frame.sort_values("status", key=lambda s: s.map(order).fillna(5), kind="stable")
    return (
        f"<p><b>{len(frame)} runs: {html.escape(summary)}.</b> Only finished runs enter the "
        "tables below.</p><details open><summary>run status</summary>"
        f"{html_table(frame, {'run': 'run', 'status': 'status', 'reason': 'reason'})}</details>"
    )


def scatter_section(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    throughput = plots.scatter(table, "infer_ips", "inference images/s", "accuracy vs throughput")
    params = plots.scatter(table, "params", "parameters", "accuracy vs parameters")
    return figure(throughput, "accuracy vs throughput") + figure(params, "accuracy vs params")


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
        _header(records, results_dir),
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
