"""The report's sections, each rendered from result files (records, plans, benchmark JSON)."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

import pandas as pd

from reports import plots, tables
from reports.arms import comparison_frame, comparison_note
from reports.metrics import METRICS
from reports.page import figure, fmt, html_table, with_interval


def _metric_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table's display columns, one (plus its delta) per declared metric."""
    t = table.copy()
    cols = {"arm": "arm", "model": "model", "variant": "variant", "kernel": "kernel"}
    cols["seeds"] = "seeds"
    for m in METRICS:
        shown = f"{m.column}_shown"
        values = t[m.column] * m.scale
        if m.ci:
            cis = t[f"{m.column}_ci"] * m.scale
            t[shown] = [with_interval(v, c) for v, c in zip(values, cis, strict=True)]
            cols[shown] = f"{m.label} (mean ± 95% CI)"
        else:
            t[shown] = values
            cols[shown] = m.label
        if m.delta == "diff" and m.ci:
            d = m.delta_column
            t[f"{d}_shown"] = [
                "—" if base else with_interval(v, c, signed=True)
                for v, c, base in zip(t[d], t[f"{d}_ci"], t["baseline"], strict=True)
            ]
            cols[f"{d}_shown"] = f"{m.delta_label} (paired by seed, 95% CI)"
            cols[f"{d}_verdict"] = "vs baseline"
        elif m.delta:
            cols[m.delta_column] = m.delta_label
    cols["other_status"] = "other"
    return t, cols


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
            f"{r['ratio_q1']:.2f}–{r['ratio_q3']:.2f}, {fmt(r.get('timing_threads'))} thread(s); "
        )
        if pd.notna(r.get("ratio_cpu_time")):
            how += f"process CPU time ratio {r['ratio_cpu_time']:.2f}×; "
        if isinstance(r.get("allocator"), str):  # benchmark JSON of 2026-12-05 on
            how += f"allocator {r['allocator']}; "
        order = r.get("round_order")  # rounds rotated before 2026-12-06, balanced since
        how += f"rounds in {order if isinstance(order, str) else 'rotating'} order; "
    return (
        f"<p><b>vit_lsla_t / timm swin_tiny inference speed on "
        f"{fmt(r.get('device_name'))}: {r['throughput_ratio']:.2f}×</b> "
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


def header_section(records: list[dict], results_dir: str | Path) -> str:
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
        "inference_faults": "page faults / inference",
        "train_faults": "page faults / train step",
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
