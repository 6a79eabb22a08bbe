"""The metrics the report shows, declared once: a new metric is one line in ``METRICS``.

Each one says where it lives in a run's ``result.json``, how seeds combine, whether it gets a
95% interval, and how it compares with the baseline arm. ``runs_frame`` reads them, the ablation
table aggregates them and the HTML table shows them, all from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Metric:
    column: str  # column name in the frames
    path: str  # dotted path in result.json
    label: str  # table header
    agg: Literal["mean", "first"] = "mean"  # how the seeds of an arm combine
    ci: bool = False  # show mean ± 95% CI
    delta: Literal["diff", "pct", "ratio"] | None = None  # against the baseline arm
    scale: float = 1.0  # shown as value * scale (params in millions, say)

    @property
    def delta_column(self) -> str | None:
        names = {"diff": f"d_{self.column}", "pct": f"d_{self.column}_pct"}
        return names.get(self.delta, f"{self.column}_ratio") if self.delta else None

    @property
    def delta_label(self) -> str:
        short = self.label.split(" (")[0]
        return {"diff": f"Δ {short}", "pct": f"Δ {short} %", "ratio": "× baseline"}[self.delta]

    def read(self, record: dict[str, Any]) -> Any:
        value: Any = record
        for key in self.path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value


METRICS = [
    Metric("top1", "metrics.top1", "top-1 %", ci=True, delta="diff"),
    Metric("top5", "metrics.top5", "top-5 %"),
    Metric("params", "params", "params (M)", agg="first", delta="pct", scale=1e-6),
    Metric("gmacs", "gmacs", "GMACs", agg="first", delta="pct"),
    Metric("infer_ips", "throughput.inference.images_per_s", "infer img/s", delta="ratio"),
    Metric("train_ips", "throughput.train.images_per_s", "train img/s"),
    Metric("peak_mem_mb", "memory.peak_allocated_mb", "peak GPU MB"),
    Metric("nvml_mb", "memory.nvml_used_mb", "NVML GPU MB"),
]
