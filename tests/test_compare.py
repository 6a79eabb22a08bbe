"""``harness compare``: every arm timed against the others in one process, saved activations
counted exactly, written to arms.json and shown by the report with the spread."""

from __future__ import annotations

import json

import torch
from torch import nn

from harness import allocator
from harness.cli import main
from harness.compare import compare_arms
from harness.config import load_experiment
from harness.measure import saved_bytes
from reports.build import build

EXP = """
experiment = "cmp"
baseline = "swin"
[model]
preset = "vit_lsla_micro"
[data]
name = "digits"
img_size = 32
[measure]
batch_size = 4
[grid]
"model.variant" = ["swin", "lsla"]
"train.seed" = [0, 1]
"""


def test_saved_bytes_counts_each_saved_storage_once_without_params_or_input():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    x = torch.randn(4, 8, requires_grad=True)
    assert saved_bytes(model, x) == 4 * 16 * 4  # ReLU keeps its output; Linear keeps x and W


def test_compare_arms_times_each_arm_once_per_round(tmp_path):
    runs = load_experiment(text=EXP, overrides=[f"out_dir='{tmp_path}'"])
    result = compare_arms(runs, num_classes=10, rounds=3)
    assert result["baseline"] == "swin" and set(result["arms"]) == {"swin", "lsla"}
    assert result["threads"] == 1 and result["rounds"] == 3 and result["batch_size"] == 4
    base = result["arms"]["swin"]
    assert base["inference_speedup"] == [1.0, 1.0, 1.0] and base["saved_ratio"] == 1.0
    lsla = result["arms"]["lsla"]
    q1, med, q3 = lsla["train_speedup"][1], lsla["train_speedup"][0], lsla["train_speedup"][2]
    assert 0 < q1 <= med <= q3 and lsla["saved_mb_per_image"] > 0
    assert lsla["inference_page_faults"] >= 0 and lsla["train_page_faults"] >= 0


def test_compare_command_writes_arms_json_and_the_report_shows_it(tmp_path, capsys):
    exp = tmp_path / "cmp.toml"
    exp.write_text(EXP)
    assert main(["compare", str(exp), "--set", f"out_dir='{tmp_path}'", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "lsla: inference" in out and "saved activations" in out
    arms = json.loads((tmp_path / "cmp" / "arms.json").read_text())
    assert arms["arms"]["lsla"]["inference_ms_median"] > 0
    # the command fixed the allocator before timing (steady unless LSLA_MALLOC says), and says so
    assert arms["allocator"] == allocator.describe()
    if allocator.from_env() == "steady" and allocator._glibc() is not None:
        assert arms["allocator"].startswith("steady")
    page = build(tmp_path / "cmp")
    assert "Speed and memory between arms (measured together)" in page
    assert "page faults / train step" in page
    assert f"allocator: {arms['allocator']}." in page
    assert "2 interleaved rounds (balanced order)" in page and "× baseline (IQR)" in page
    assert arms["round_order"] == "balanced"
