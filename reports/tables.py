"""Aggregations for the report: the paper-style ablation table, paper numbers, benchmarks."""

from __future__ import annotations

import pandas as pd

from reports.metrics import METRICS
from reports.stats import holm, paired_difference, t_halfwidth, verdict

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
    """Half-width of the 95% t-interval of the mean (``reports.stats``); NaN for n < 2."""
    half = t_halfwidth(list(values.dropna()))
    return float("nan") if half is None else half


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
        ["model", "variant", "kernel", "form", "inner_bias", "outer_bias", "standin"]
        + ["declared_baseline"]
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
    table["seeds"] = table["seeds"].fillna(0).astype(int)
    parts = []
    for ds, group in table.groupby("dataset", sort=False):
        group = group.copy()
        base = choose_baseline(group)
        ref = group[group["arm"] == base].iloc[0]
        group["baseline"] = group["arm"] == base
        for m in METRICS:
            if m.delta:
                group[m.delta_column] = _delta(m.delta, group[m.column], ref[m.column])
            if m.delta == "diff" and m.ci:
                _paired(group, done[done["dataset"] == ds], m.column, base)
        parts.append(group)
    return pd.concat(parts, ignore_index=True)


def values_by_seed(runs: pd.DataFrame, arm: str, column: str) -> dict[int, float]:
    """``seed -> value`` of ``column`` for the runs of ``arm`` (the pairing key of differences)."""
    rows = runs[runs["arm"] == arm].dropna(subset=[column])
    return dict(zip(rows["seed"].astype(int), rows[column].astype(float), strict=True))


def _paired(group: pd.DataFrame, runs: pd.DataFrame, column: str, base: str) -> None:
    """Paired-by-seed differences to the baseline arm, Holm-corrected across the other arms."""

    def by_seed(arm: str) -> dict[int, float]:
        return values_by_seed(runs, arm, column)

    base_values = by_seed(base)
    results = [paired_difference(by_seed(arm), base_values) for arm in group["arm"]]
    is_base = (group["arm"] == base).tolist()
    adjusted = holm(
        [r["p"] if not b else float("nan") for r, b in zip(results, is_base, strict=True)]
    )
    name = f"d_{column}"
    group[name] = [r["mean"] for r in results]
    group[f"{name}_ci"] = [r["ci"] for r in results]
    group[f"{name}_p"] = [r["p"] for r in results]
    group[f"{name}_p_holm"] = adjusted
    group[f"{name}_verdict"] = [
        "baseline" if b else verdict(r["mean"], r["ci"], p, r["n"])
        for r, p, b in zip(results, adjusted, is_base, strict=True)
    ]


def _delta(kind: str, values: pd.Series, ref: float) -> pd.Series:
    if kind == "diff":
        return values - ref
    if kind == "pct":
        return 100 * (values / ref - 1)
    return values / ref


PAPER_IMG_SIZE = 224


def _ours(top1: pd.Series, ran: pd.DataFrame) -> str:
    """Our top-1 at the paper's image size, or why there is none to show beside the paper's."""
    if len(top1) >= 2:
        return f"{top1.mean():.1f} ± {ci95(top1):.1f} (n={len(top1)})"
    if len(top1) == 1:
        return f"{top1.iloc[0]:.1f} (1 seed, no interval)"
    if len(ran):
        sizes = ", ".join(str(int(s)) for s in sorted(ran["img_size"].dropna().unique()))
        return f"only at {sizes} px (not comparable)"
    return "not run"


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
        ran = (
            runs[(runs["model"] == p["ours"]) & (runs["status"] == "finished")]
            if p["ours"]
            else runs.iloc[0:0]
        )
        mine = ran[ran["img_size"] == PAPER_IMG_SIZE] if "img_size" in ran else ran
        for ds, col in (("ip102", "ours IP102"), ("mini_imagenet", "ours Mini-ImageNet")):
            row[col] = _ours(mine[mine["dataset"] == ds]["top1"], ran[ran["dataset"] == ds])
        row["our params (M)"] = ran["params"].iloc[0] / 1e6 if len(ran) else None
        row["our GMACs at 224 px"] = mine["gmacs"].iloc[0] if len(mine) else None
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
