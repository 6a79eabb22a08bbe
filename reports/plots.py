"""Figures for the report, each returned as a base64 PNG string (embedded, self-contained)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from reports.stats import t_interval  # noqa: E402  the tables' interval, in every plot

sns.set_theme(style="whitegrid", context="notebook")


def to_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def scatter(table: pd.DataFrame, x: str, xlabel: str, title: str, logx: bool = False) -> str | None:
    """Mean top-1 (with 95% CI bars) against ``x``, one point per arm, one panel per dataset."""
    data = table.dropna(subset=[x, "top1"])
    if data.empty:
        return None
    datasets = list(dict.fromkeys(data["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        sub = data[data["dataset"] == ds]
        sns.scatterplot(
            data=sub, x=x, y="top1", hue="arm", style="arm", s=90, ax=ax, legend=ds == datasets[-1]
        )
        ax.errorbar(
            sub[x], sub["top1"], yerr=sub["top1_ci"].fillna(0), fmt="none", ecolor="grey", alpha=0.6
        )
        for _, row in sub.iterrows():
            ax.annotate(
                row["arm"],
                (row[x], row["top1"]),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set(xlabel=xlabel, ylabel="top-1 (%)", title=f"{title} - {ds}")
        if logx:
            ax.set_xscale("log")
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    return to_png(fig)


def curves(df: pd.DataFrame) -> str | None:
    """Validation top-1 and training loss per epoch, mean and 95% t-band over seeds."""
    if df.empty or "val_top1" not in df:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    sns.lineplot(
        data=df,
        x="epoch",
        y="val_top1",
        hue="arm",
        style="dataset",
        ax=axes[0],
        errorbar=t_interval,
        legend=False,
    )
    sns.lineplot(
        data=df,
        x="epoch",
        y="train_loss",
        hue="arm",
        style="dataset",
        ax=axes[1],
        errorbar=t_interval,
    )
    axes[0].set(ylabel="val top-1 (%)", title="validation accuracy")
    axes[1].set(ylabel="train loss", title="training loss", yscale="log")
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    return to_png(fig)


def attention_stats(df: pd.DataFrame) -> str | None:
    """Entropy, self-weight and mean distance per layer depth, one line per arm."""
    if df.empty:
        return None
    metrics = [
        ("entropy_norm", "entropy / log N"),
        ("self_weight", "weight on itself"),
        ("mean_distance", "mean attention distance (tokens)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for i, (ax, (col, label)) in enumerate(zip(axes, metrics, strict=True)):
        sns.lineplot(
            data=df,
            x="depth",
            y=col,
            hue="arm",
            marker="o",
            ax=ax,
            errorbar=t_interval,
            legend=i == 2,
        )
        ax.set(xlabel="attention layer (depth)", ylabel=label, title=label)
    sns.move_legend(axes[2], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    return to_png(fig)


def attention_maps(maps: list[tuple[str, dict]]) -> str | None:
    """For each arm: the centre query's weights with and without the outer bias (same scale)."""
    if not maps:
        return None
    fig, axes = plt.subplots(len(maps), 3, figsize=(11, 3.2 * len(maps)), squeeze=False)
    for row, (arm, m) in zip(axes, maps, strict=True):
        if not m.get("has_outer", True):  # no post-softmax term: one panel says it all
            sns.heatmap(np.array(m["with_outer"]), ax=row[0], cmap="viridis", square=True)
            row[0].set_title(f"{arm}: attention weights (no B_o)", fontsize=9)
            row[1].axis("off")
            row[2].axis("off")
            continue
        with_o, without = np.array(m["with_outer"]), np.array(m["without_outer"])
        lo, hi = min(with_o.min(), without.min()), max(with_o.max(), without.max())
        for ax, data, title in (
            (row[0], without, "softmax only (no B_o)"),
            (row[1], with_o, "with outer bias B_o"),
        ):
            sns.heatmap(
                data,
                ax=ax,
                vmin=lo,
                vmax=hi,
                cmap="viridis",
                square=True,
                cbar=False,
                annot=data.size <= 25,
                fmt=".2f",
                annot_kws={"size": 7},
            )
            ax.add_patch(
                plt.Rectangle(
                    (m["query"][1], m["query"][0]), 1, 1, fill=False, edgecolor="red", lw=2
                )
            )
            ax.set_title(f"{arm}: {title}", fontsize=9)
        sns.heatmap(with_o - without, ax=row[2], cmap="coolwarm", center=0, square=True)
        row[2].set_title(f"{arm}: difference (B_o effect)", fontsize=9)
    fig.suptitle(f"layer {maps[0][1]['layer']}, query at window centre (red)", fontsize=10)
    return to_png(fig)


def scaling(bench: pd.DataFrame) -> str | None:
    """Time and attention memory against token count (log-log) for global vs windowed."""
    data = bench[bench.get("kind") == "scaling"] if "kind" in bench else pd.DataFrame()
    if data.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    sns.lineplot(
        data=data,
        x="tokens",
        y="median_ms",
        hue="variant",
        style="device",
        marker="o",
        ax=axes[0],
        legend=False,
    )
    mem = data.assign(attn_mb=data["attn_bytes"] / 2**20)
    sns.lineplot(
        data=mem, x="tokens", y="attn_mb", hue="variant", style="device", marker="o", ax=axes[1]
    )
    axes[0].set(
        xscale="log",
        yscale="log",
        ylabel="forward time (ms)",
        title="time vs tokens (global: O(N^2), windows: O(N M^2))",
    )
    axes[1].set(
        xscale="log",
        yscale="log",
        ylabel="attention weights (MiB)",
        title="attention memory vs tokens",
    )
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    return to_png(fig)


def variant_times(bench: pd.DataFrame) -> str | None:
    """Median time of every attention variant (largest case), forward and forward+backward."""
    data = bench[bench.get("kind") == "attention"] if "kind" in bench else pd.DataFrame()
    if data.empty:
        return None
    data = data[(data["side"] == data["side"].max())]
    if "window" in data:
        data = data[data["window"] == data["window"].max()]
    order = data[data["mode"] == "fwd"].sort_values("median_ms")["variant"].tolist()
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(order) + 1.5))
    sns.barplot(data=data, y="variant", x="median_ms", hue="mode", order=order or None, ax=ax)
    ax.set(
        xlabel="median time (ms)",
        ylabel="",
        title=f"attention layer, {int(data['side'].iloc[0])}x{int(data['side'].iloc[0])} "
        f"tokens, batch {int(data['batch'].iloc[0])}",
    )
    return to_png(fig)
