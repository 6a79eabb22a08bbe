"""Reports: aggregation maths, HTML structure, no torch import, and rendering in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.build import build, main
from reports.load import load_records, runs_frame
from reports.tables import ablation_table, ci95

ROOT = Path(__file__).parents[1]
TOP1 = {"swin": [90.0, 92.0, 94.0], "lsla": [93.0, 94.0, 95.0]}


def _record(variant: str, seed: int, top1: float) -> dict:
    outer = variant == "lsla"
    return {
        "experiment": "fx",
        "run_id": f"variant={variant}-seed={seed}",
        "model": "vit_lsla_nano",
        "variant": variant,
        "dataset": "digits",
        "dataset_note": "embedded stand-in dataset",
        "seed": seed,
        "status": "finished",
        "switches": {"form": "qxx" if outer else "qkv", "inner_bias": True, "outer_bias": outer},
        "metrics": {"top1": top1, "top5": 100.0},
        "params": 800_000 if outer else 1_000_000,
        "gmacs": 0.003 if outer else 0.004,
        "throughput": {
            "inference": {"images_per_s": 1200.0 if outer else 1000.0},
            "train": {"images_per_s": 400.0},
        },
        "memory": {"peak_allocated_mb": None},
        "history": [
            {"epoch": e, "train_loss": 1.0 / e, "val_top1": top1 - 5 + e, "lr": 1e-3}
            for e in (1, 2, 3)
        ],
        "attn_stats": [
            {
                "layer": f"l{d}",
                "depth": d,
                "entropy_norm": 0.9,
                "self_weight": 0.1,
                "self_weight_softmax": 0.08,
                "mean_distance": 1.5,
                "mean_distance_softmax": 1.4,
                "row_sum": 1.0,
            }
            for d in range(3)
        ],
        "attn_map": {
            "layer": "l0",
            "query": [1, 1],
            "grid": [3, 3],
            "with_outer": [[0.1] * 3, [0.1, 0.3, 0.1], [0.1] * 3],
            "without_outer": [[0.11] * 3] * 3,
        },
        "env": {"device_name": "cpu", "torch": "x", "git_commit": "abc"},
        "config": {"train": {"epochs": 3}},
    }


@pytest.fixture
def results(tmp_path) -> Path:
    for variant, values in TOP1.items():
        for seed, top1 in enumerate(values):
            d = tmp_path / "fx" / f"variant={variant}-seed={seed}"
            d.mkdir(parents=True)
            (d / "result.json").write_text(json.dumps(_record(variant, seed, top1)))
    bench = {
        "benchmarks": [
            {
                "name": f"scale-{v}-{n}",
                "group": "scaling",
                "stats": {"median": n * 1e-5 * k, "iqr": 0.0, "rounds": 3},
                "extra_info": {
                    "kind": "scaling",
                    "variant": v,
                    "tokens": n,
                    "attn_bytes": n * n * k,
                    "device": "cpu",
                },
            }
            for v, k in (("msa", 2), ("swin", 1))
            for n in (64, 256)
        ]
        + [
            {
                "name": "ratio",
                "group": "model-ratio",
                "stats": {"median": 0.1, "iqr": 0, "rounds": 1},
                "extra_info": {
                    "kind": "ratio",
                    "throughput_ratio": 1.4,
                    "lsla_images_per_s": 14.0,
                    "swin_images_per_s": 10.0,
                    "batch": 4,
                    "precision": "fp32",
                    "goal": 1.25,
                    "meets_goal": True,
                    "device_name": "cpu",
                },
            }
        ]
        + [
            {
                "name": f"attn-{v}-{m}",
                "group": "attention",
                "stats": {"median": t, "iqr": 0, "rounds": 5},
                "extra_info": {
                    "kind": "attention",
                    "variant": v,
                    "mode": m,
                    "side": 28,
                    "batch": 4,
                    "device": "cpu",
                },
            }
            for v, t in (("swin", 0.002), ("lsla", 0.0015))
            for m in ("fwd", "fwd_bwd")
        ]
    }
    (tmp_path / "fx" / "bench").mkdir()
    (tmp_path / "fx" / "bench" / "b.json").write_text(json.dumps(bench))
    return tmp_path / "fx"


def test_ablation_table_means_ci_and_deltas(results):
    table = ablation_table(runs_frame(load_records(results))).set_index("arm")
    assert table.loc["swin", "baseline"] and not table.loc["lsla", "baseline"]
    assert table.loc["swin", "top1"] == pytest.approx(92.0)
    assert table.loc["lsla", "d_top1"] == pytest.approx(2.0)
    # t(0.975, df=2) * sd / sqrt(3) with sd = 2 for swin, 1 for lsla
    assert table.loc["swin", "top1_ci"] == pytest.approx(4.303 * 2 / 3**0.5, rel=1e-3)
    assert table.loc["lsla", "d_params_pct"] == pytest.approx(-20.0)
    assert table.loc["lsla", "infer_ips_ratio"] == pytest.approx(1.2)
    assert table.loc["swin", "seeds"] == 3


def test_declared_baseline_wins_and_rows_keep_the_file_order(results):
    records = load_records(results)
    for r in records:
        r["config"] = {"baseline": "lsla", "order": {"lsla": 0, "swin": 1}[r["variant"]]}
    table = ablation_table(runs_frame(records))
    assert table["arm"].tolist() == ["lsla", "swin"]
    assert table.set_index("arm").loc["lsla", "baseline"]
    assert table.set_index("arm").loc["swin", "d_top1"] == pytest.approx(-2.0)


def test_ci_needs_two_values():
    import pandas as pd

    assert pd.isna(ci95(pd.Series([1.0])))


class _Counter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_report_is_self_contained_with_all_sections(results):
    page = build(results)
    parser = _Counter()
    parser.feed(page)
    assert parser.tags["table"] >= 4
    assert len(parser.images) >= 7
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    for text in (
        "Ablation table",
        "Stand-in data",
        "Paper's numbers beside ours",
        "71.6",
        "Training curves",
        "Attention statistics",
        "Attention maps",
        "Benchmarks",
        "1.40×",
        "environment and settings",
        "92.00 ± 4.97",
    ):
        assert text in page, text
    assert "http://" not in page and "https://" not in page  # nothing fetched when opened


def test_report_cli_and_errors(results, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main([str(results), "-o", str(out)]) == 0 and out.stat().st_size > 10_000
    assert main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(results), "--bench", str(tmp_path / "x.json")]) == 2


def test_reports_do_not_import_torch(results, tmp_path):
    code = (
        "import sys; from reports.build import build; build(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(results, tmp_path):
    out = tmp_path / "report.html"
    assert main([str(results), "-o", str(out)]) == 0
    dom = _render(out, tmp_path)
    import re

    ok = int(re.search(r'data-images-ok="(\d+)"', dom).group(1))
    total = int(re.search(r'data-images-total="(\d+)"', dom).group(1))
    tables = int(re.search(r'data-tables="(\d+)"', dom).group(1))
    assert total >= 7 and ok == total, (ok, total)
    assert tables >= 4


def _with_unfinished_runs(results: Path) -> None:
    """One failed and one diverged record, and a planned run with no record (pending)."""
    for status, seed, error in (
        ("failed", 7, "DataError: bad.jpg"),
        ("diverged", 8, "loss is nan"),
    ):
        record = _record("lsla", seed, 0.0)
        record.update(status=status, error=error, run_id=f"variant=lsla-seed={seed}")
        del record["metrics"]
        d = results / record["run_id"]
        d.mkdir()
        (d / "result.json").write_text(json.dumps(record))
    plan = {"runs": [{"experiment": "fx", "run_id": "variant=lsla-seed=9", "arm": "lsla"}]}
    (results / "experiment.json").write_text(json.dumps(plan))


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium (apt-get install chromium)")
def test_report_shows_failed_diverged_and_pending_runs(results, tmp_path):
    _with_unfinished_runs(results)
    out = tmp_path / "report.html"
    assert main([str(results), "-o", str(out)]) == 0
    dom = _render(out, tmp_path)
    assert "9 runs: 6 finished, 1 failed, 1 diverged, 1 pending" in dom
    for text in ("fx/variant=lsla-seed=7", "DataError: bad.jpg", "loss is nan", "no record yet"):
        assert text in dom, text
    assert "nan (n=" not in dom and ">None<" not in dom


def test_report_cli_refuses_a_folder_without_results(tmp_path, capsys):
    assert main([str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "no results under" in capsys.readouterr().err


def _render(out: Path, tmp_path: Path) -> str:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        out.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_report_of_an_empty_results_dir_still_shows_the_paper_numbers(tmp_path):
    page = build(tmp_path)
    assert "no finished runs" in page and "71.6" in page and "0 runs" in page


def _ratio_bench(ratio: float, **interleaving) -> dict:
    info = dict(kind="ratio", throughput_ratio=ratio, lsla_images_per_s=14.0)
    info.update(swin_images_per_s=10.0, batch=4, precision="fp32", goal=1.25, meets_goal=True)
    info.update(device_name="cpu", **interleaving)
    return {"benchmarks": [{"name": "ratio", "stats": {"median": 0.1}, "extra_info": info}]}


def test_report_reads_the_newest_autosaved_benchmark_run(tmp_path, monkeypatch):
    """``tox -e bench`` autosaves to ./.benchmarks; with no bench/ JSON beside the results the
    report reads the newest saved run, and a folder given to --bench works the same way."""
    runs = tmp_path / "runs" / "exp"
    runs.mkdir(parents=True)
    (runs / "a").mkdir()
    (runs / "a" / "result.json").write_text(json.dumps(_record("lsla", 0, 90.0)))
    saved = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    saved.mkdir(parents=True)
    old, new = saved / "0001_old.json", saved / "0002_new.json"
    old.write_text(json.dumps(_ratio_bench(1.11)))
    new.write_text(
        json.dumps(
            _ratio_bench(
                1.22, rounds_interleaved=7, ratio_q1=1.2, ratio_q3=1.25, allocator="steady (glibc)"
            )
        )
    )
    os.utime(old, (1, 1))  # written long before the newer run
    monkeypatch.chdir(tmp_path)
    page = build(runs)
    assert "1.22×" in page and "1.11×" not in page
    assert "median of 7 interleaved rounds, IQR 1.20–1.25" in page
    assert "allocator steady (glibc);" in page  # the policy the ratio was measured under
    assert "rounds in rotating order;" in page  # JSON of before 2026-12-06 lacks the field
    assert "1.22×" in build(runs, [str(tmp_path / ".benchmarks")])
