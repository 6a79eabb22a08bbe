"""Predicted orderings (an experiment's ``predict = ["A > B", ...]``), tested paired by seed.

A prediction holds when the paired difference ``A - B`` in top-1 has a 95% interval above zero;
it is reversed when the interval is below zero, and otherwise not shown. A prediction that does
not hold is a finding about the harness (or the theory), and the report says so in words.
"""

from __future__ import annotations

import pandas as pd

from harness.results import parse_prediction
from reports.stats import paired_difference
from reports.tables import values_by_seed

COLUMN = "top1"


def outcome(mean: float, ci: float | None, n: int) -> str:
    """The prediction's fate in words."""
    if n < 2 or ci is None:
        return f"{n} paired seed{'s' if n != 1 else ''}: no interval, not tested"
    if mean - ci > 0:
        return "holds (interval above 0)"
    if mean + ci < 0:
        return "reversed (interval below 0): a finding about the harness"
    return "not shown (interval includes 0): a finding about the harness"


def prediction_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, dataset, prediction) of the finished runs."""
    done = runs[runs["status"] == "finished"] if "status" in runs else runs
    rows = []
    if done.empty or "predict" not in done:
        return pd.DataFrame(rows)
    for (exp, ds), group in done.groupby(["experiment", "dataset"], sort=False):
        texts = dict.fromkeys(t for p in group["predict"] for t in (p or ()))
        for text in texts:
            pair = parse_prediction(text)
            if pair is None:
                continue
            high, low = pair
            by_seed = (values_by_seed(group, arm, COLUMN) for arm in pair)
            d = paired_difference(*by_seed)
            rows.append(
                {
                    "experiment": exp,
                    "dataset": ds,
                    "prediction": f"{high} > {low}",
                    "delta_top1": d["mean"],
                    "ci": d["ci"],
                    "p": d["p"],
                    "seeds": d["n"],
                    "outcome": outcome(d["mean"], d["ci"], d["n"]),
                }
            )
    return pd.DataFrame(rows)
