"""Training runs: record contents, exact resume, divergence, OOM, DDP with gloo on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import train as train_mod
from harness.config import load_experiment
from harness.results import read_json
from harness.run import execute
from harness.sweep import run_sweep
from tests.kernels import fused_cpu_or
from variants._linear import cpu_gemms

ROOT = Path(__file__).parents[1]

TINY = """
experiment = "tiny"
[model]
preset = "vit_lsla_micro"
[data]
name = "digits"
batch_size = 16
eval_batch_size = 64
limit_train = 96
limit_test = 48
[train]
epochs = 3
warmup_epochs = 1
progress = false
[measure]
batch_size = 8
steps = 2
warmup = 1
"""


def tiny(out: Path, *overrides: str, grid: str = ""):
    return load_experiment(text=TINY + grid, overrides=[f"out_dir='{out}'", *overrides])


def test_a_bf16_run_trains_the_conv_stem_model(tmp_path):
    """What every CUDA run does (amp auto: bf16), here on CPU: the conv stem and the attention
    leave their one-dtype fast paths for autocast's op-by-op ones."""
    record = execute(tiny(tmp_path, "train.amp='bf16'", "train.epochs=1")[0])
    assert record["status"] == "finished" and record["throughput"]["train"]["precision"] == "bf16"
    assert record["attention_kernels"] == ["explicit"]


def test_run_writes_a_complete_record(tmp_path):
    cfg = tiny(tmp_path, "model.variant='lsla'")[0]
    record = execute(cfg)
    assert record == read_json(cfg.run_dir.result) | {}
    assert record["status"] == "finished" and record["variant"] == "lsla"
    # what trained and tested, on CPU: the fused kernel, or without a compiler the explicit path
    assert record["attention_kernels"] == [fused_cpu_or("explicit")]
    assert record["dataset_note"].startswith("embedded stand-in")
    assert 0 <= record["metrics"]["top1"] <= record["metrics"]["top5"] <= 100
    assert len(record["history"]) == 3 and record["metrics"]["epochs"] == 3
    assert record["params"] > 0 and record["macs"] > 0
    tp = record["throughput"]
    assert tp["inference"]["images_per_s"] > 0 and tp["train"]["mode"] == "train"
    assert tp["train"]["step_ms_median"] > 0 and tp["train"]["step_ms_iqr"] >= 0
    assert tp["inference"]["precision"] == "fp32" and tp["inference"]["batch_size"] == 8
    assert tp["train"]["threads"] == torch.get_num_threads() and tp["train"]["cpu_ms_median"] > 0
    assert len(tp["train"]["load_avg"]) == 3  # the machine's load, beside the timings
    assert tp["train"]["page_faults_median"] >= 0 and tp["train"]["kernel_ms_median"] >= 0
    assert record["memory"]["peak_allocated_mb"] is None  # absent cleanly on CPU
    assert record["env"]["torch"] == torch.__version__ and "git_commit" in record["env"]
    assert record["env"]["allocator"].startswith(("steady", "system"))  # beside the timings
    assert record["env"]["cpu_gemms"] == cpu_gemms()  # which library ran the linear layers
    layers = record["attn_stats"]
    assert len(layers) == 3  # the 1x1 last stage is left out
    assert {"entropy", "self_weight", "mean_distance"} <= set(layers[0])
    assert record["attn_map"]["with_outer"] != record["attn_map"]["without_outer"]
    lines = (cfg.run_dir.metrics).read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def _strip_times(history):
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]


def test_interrupted_run_resumes_bitwise(tmp_path):
    args = (
        "model.variant='lsla'",
        "train.mixup=0.8",
        "train.label_smoothing=0.1",
        "model.drop_path_rate=0.1",
        "train.ema=true",
        "measure.throughput=false",
    )
    full = tiny(tmp_path / "full", *args)[0]
    parts = tiny(tmp_path / "parts", *args)[0]
    ref = execute(full)
    assert execute(parts, stop_after=1) is None  # "killed" after epoch 1
    assert read_json(parts.run_dir.config)["run_id"] == parts.run_id
    assert execute(parts, stop_after=1) is None  # and again after epoch 2
    resumed = execute(parts)
    assert _strip_times(resumed["history"]) == _strip_times(ref["history"])
    assert resumed["metrics"] == ref["metrics"]
    a = torch.load(full.run_dir.checkpoint, weights_only=True)
    b = torch.load(parts.run_dir.checkpoint, weights_only=True)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for key in a["state_dict_ema"]:
        assert torch.equal(a["state_dict_ema"][key], b["state_dict_ema"][key]), key


def test_nan_loss_marks_run_diverged(tmp_path):
    # a real divergence: absurd learning rate, no warmup, clipping off (0 disables it)
    cfg = tiny(
        tmp_path,
        "train.lr=1e9",
        "train.warmup_epochs=0",
        "train.clip_grad=0",
        "measure.throughput=false",
    )[0]
    record = execute(cfg)
    assert record["status"] == "diverged"
    assert "loss is nan" in record["error"] or "loss is inf" in record["error"]
    assert "metrics" not in record and (cfg.run_dir.result).exists()


def test_cuda_oom_is_recorded_and_the_sweep_continues(tmp_path, monkeypatch):
    runs = tiny(
        tmp_path, "measure.throughput=false", grid='[grid]\n"model.variant" = ["swin", "lsla"]\n'
    )
    real = train_mod.train_epoch

    def flaky(ctx, trainer, train_ds, state):
        if ctx.cfg.model.variant == "swin":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(ctx, trainer, train_ds, state)

    monkeypatch.setattr(train_mod, "train_epoch", flaky)
    outcome = run_sweep(runs, log=lambda *_: None)
    assert outcome == {"oom": ["variant=swin"], "finished": ["variant=lsla"]}
    assert read_json(runs[0].run_dir.result)["error"].startswith("CUDA out of memory")


@pytest.mark.slow
def test_ddp_two_processes_with_gloo(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(
        f'out_dir = "{tmp_path}"\n' + TINY + '[grid]\n"model.variant" = ["swin", "lsla"]\n'
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "harness",
        "sweep",
        str(exp),
        "--set",
        "train.epochs=2",
        "--set",
        "measure.throughput=false",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for variant in ("swin", "lsla"):
        record = read_json(tmp_path / "tiny" / f"variant={variant}" / "result.json")
        assert record["status"] == "finished" and record["env"]["world_size"] == 2
        assert record["metrics"]["epochs"] == 2 and record["data"]["test_size"] == 48
        assert proc.stdout.count(f"[tiny/variant={variant}] epoch 2/2") == 1  # rank 0 logs


@pytest.mark.parametrize("dataset", ["ip102", "mini_imagenet"])
def test_end_to_end_on_synthetic_real_layouts(tmp_path, dataset):
    from tests.fakedata import make_ip102, make_mini_folders

    if dataset == "ip102":
        root = make_ip102(tmp_path / "data", per_split=(24, 8, 8))
        extra = []
    else:
        root = make_mini_folders(tmp_path / "data", per_class=4)
        extra = ["data.train_per_class=3", "data.val_per_class=1", "data.test_per_class=1"]
    cfg = tiny(
        tmp_path / "runs",
        f"data.name='{dataset}'",
        f"data.root='{root}'",
        "train.epochs=1",
        "data.batch_size=8",
        "measure.throughput=false",
        *extra,
    )[0]
    record = execute(cfg)
    assert record["status"] == "finished" and record["dataset_note"] == ""
    assert record["data"]["num_classes"] == (102 if dataset == "ip102" else 100)
    if dataset == "mini_imagenet":
        split = read_json(cfg.run_dir.split)
        assert split["counts"] == {"train": 200, "val": 100, "test": 100}
        assert len(split["files"]["train"]) == 200 and split["sha256"]
        assert record["data"]["val_size"] == 48  # limit_test caps it; never a test image
        val, test = set(split["files"]["val"]), set(split["files"]["test"])
        assert val and not val & test


@pytest.mark.parametrize("world, expected", [(1, 1.25e-4), (2, 2.5e-4)])
def test_paper_recipe_scales_lr_with_the_global_batch(world, expected):
    """Swin's 5e-4 per 512 images: batch 128 on 1 process is 1.25e-4, on 2 processes 2.5e-4."""
    cfg = load_experiment(text=TINY, overrides=["train.recipe='paper'", "data.batch_size=128"])[0]
    used = train_mod.effective_schedule(cfg.train, cfg.data.batch_size * world)
    assert used.lr == pytest.approx(expected)
    assert used.min_lr == pytest.approx(expected / 100)
    assert used.warmup_lr == pytest.approx(expected / 1000)
    assert cfg.train.lr == 5e-4  # the configured value stays per 512 images


def test_record_keeps_base_and_effective_learning_rates(tmp_path):
    cfg = tiny(tmp_path, "measure.throughput=false", "measure.attn_stats=false",
               "train.lr_scaling='linear'", "train.epochs=1")[0]  # fmt: skip
    record = execute(cfg)
    schedule = record["schedule"]
    assert schedule["global_batch"] == 16 and schedule["lr_base"] == 2e-3
    assert schedule["lr"] == pytest.approx(2e-3 * 16 / 512)
    assert record["metrics"]["test_weights"] == "final (epoch 1)"
