"""Aggregations for the report: the paper-style ablation table, paper numbers, benchmarks."""

from __future__ import annotations

import math

import pandas as pd

from reports.metrics import METRICS

# Student-t 0.975 quantiles for df = 1..30 (beyond: normal 1.96); avoids a scipy dependency.
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]

# What the paper reports (top-1 %, params, GMACs); "-" where it gives no number.
PAPER = pd.DataFrame(
    [
        {
            "model": "Swin-T",
            "ours": "swin_t_ref",
            "ip102": 69.2,
            "mini_imagenet": 83.5,
            "params_M": 27.6,
            "gmacs": 4.5,
        },
        {
            "model": "MPViT-S",
            "ours": None,
            "ip102": 70.4,
            "mini_imagenet": 86.1,
            "params_M": None,
            "gmacs": None,
        },
        {
            "model": "ViT-LSLA",
            "ours": "vit_lsla_t",
            "ip102": 71.6,
            "mini_imagenet": 87.2,
            "params_M": 18.9,
            "gmacs": 3.5,
        },
    ]
)


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (t-distribution); NaN for n < 2."""
    v = values.dropna()
    n = len(v)
    if n < 2:
        return float("nan")
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return t * v.std(ddof=1) / math.sqrt(n)


def choose_baseline(arms: pd.DataFrame) -> str | None:
    """The arm deltas are measured against: the experiment's ``baseline`` if set, else variant
    'swin' or preset 'swin_t_ref', else the first QKV arm with the inner bias, else the first."""
    declared = arms["declared_baseline"].dropna() if "declared_baseline" in arms else []
    if len(declared) and (arms["arm"] == declared.iloc[0]).any():
        return declared.iloc[0]
    for test in (
        arms["variant"] == "swin",
        arms["model"] == "swin_t_ref",
        (arms["form"] == "qkv") & arms["inner_bias"].fillna(False).astype(bool),
    ):
        hit = arms[test]
        if len(hit):
            return hit.iloc[0]["arm"]
    return arms.iloc[0]["arm"] if len(arms) else None


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, arm): mean +- 95% CI over seeds and deltas to the baseline arm."""
    if runs.empty:
        return pd.DataFrame()
    done = runs[runs["status"] == "finished"]
    keys = ["dataset", "arm"]
    firsts = runs.groupby(keys, sort=False)[
        ["model", "variant", "form", "inner_bias", "outer_bias", "standin", "declared_baseline"]
    ].first()
    spec = {"seeds": ("seed", "nunique")}
    for m in METRICS:
        spec[m.column] = (m.column, m.agg)
        if m.ci:
            spec[f"{m.column}_ci"] = (m.column, ci95)
    numeric = done.astype({m.column: float for m in METRICS})
    agg = numeric.groupby(keys, sort=False).agg(**spec)
    status = runs.groupby(keys, sort=False)["status"].agg(
        lambda s: ", ".join(f"{k} {v}" for k, v in s.value_counts().items() if k != "finished")
    )
    table = firsts.join(agg, how="left").join(status.rename("other_status"))
    table = table.reset_index()
    parts = []
    for _, group in table.groupby("dataset", sort=False):
        group = group.copy()
        base = choose_baseline(group)
        ref = group[group["arm"] == base].iloc[0]
        group["baseline"] = group["arm"] == base
        for m in METRICS:
            if m.delta:
                group[m.delta_column] = _delta(m.delta, group[m.column], ref[m.column])
        parts.append(group)
    return pd.concat(parts, ignore_index=True)


def _delta(kind: str, values: pd.Series, ref: float) -> pd.Series:
    if kind == "diff":
        return values - ref
    if kind == "pct":
        return 100 * (values / ref - 1)
    return values / ref


def paper_comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers beside ours, matched by model preset on the real datasets only."""
    if runs.empty:
        runs = pd.DataFrame(columns=["model", "status", "dataset", "top1", "params", "gmacs"])
    rows = []
    for _, p in PAPER.iterrows():
        row = {
            "model": p["model"],
            "paper IP102": p["ip102"],
            "paper Mini-ImageNet": p["mini_imagenet"],
            "paper params (M)": p["params_M"],
            "paper GMACs": p["gmacs"],
            "our preset": p["ours"] or "-",
        }
        mine = (
            runs[(runs["model"] == p["ours"]) & (runs["status"] == "finished")]
            if p["ours"]
            else runs.iloc[0:0]
        )
        for ds, col in (("ip102", "ours IP102"), ("mini_imagenet", "ours Mini-ImageNet")):
            sel = mine[mine["dataset"] == ds]["top1"]
            row[col] = (
                f"{sel.mean():.1f} ± {ci95(sel):.1f} (n={len(sel)})" if len(sel) else "not run"
            )
        row["our params (M)"] = mine["params"].iloc[0] / 1e6 if len(mine) else None
        row["our GMACs"] = mine["gmacs"].iloc[0] if len(mine) else None
        rows.append(row)
    return pd.DataFrame(rows)


def bench_summary(bench: pd.DataFrame) -> pd.DataFrame:
    """Median time per benchmarked case, one row each, attention/block/model kinds."""
    if bench.empty:
        return bench
    cols = [
        c
        for c in (
            "kind",
            "variant",
            "device",
            "mode",
            "side",
            "tokens",
            "batch",
            "median_ms",
            "iqr_ms",
            "rounds",
        )
        if c in bench
    ]
    keep = (
        bench[bench.get("kind").isin(["attention", "block", "model"])] if "kind" in bench else bench
    )
    return (
        keep[cols]
        .sort_values([c for c in ("kind", "mode", "side", "median_ms") if c in keep])
        .reset_index(drop=True)
    )
