"""``pytest --benchmark`` as the project card says: headline figures in the terminal, and saved
runs compared with ``--benchmark-compare``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import allocator

ROOT = Path(__file__).parents[1]
GLIBC = allocator._glibc() is not None
QUICK = ["--benchmark-max-time=0.05", "--benchmark-min-rounds=2", "-p", "no:cacheprovider"]


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "--benchmark", *QUICK, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_benchmark_flag_prints_the_ratio_and_scaling_lines():
    proc = _pytest("-k", "ratio or test_scaling", "--interleaved-rounds=2", "benchmarks")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "vit_lsla_t / timm swin_tiny inference speed on cpu:" in proc.stdout
    assert "median over 2 interleaved rounds (IQR" in proc.stdout and "1 thread(s)" in proc.stdout
    if GLIBC and allocator.from_env() == "steady":  # the default, fixed before anything is timed
        assert "thread(s); allocator steady (glibc" in proc.stdout
    assert "scaling of msa on cpu: time ~ tokens^" in proc.stdout
    assert "benchmark 'model-ratio'" in proc.stdout  # groups are pytest-benchmark groups


@pytest.mark.slow
def test_saved_runs_are_compared(tmp_path):
    storage = f"--benchmark-storage=file://{tmp_path}"
    select = ["-k", "test_attention and swin- and 14x14", "benchmarks/test_variants.py"]
    for _ in range(2):
        assert _pytest(*select, storage, "--benchmark-autosave").returncode == 0
    proc = _pytest(*select, storage, "--benchmark-compare")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0002" in proc.stdout and "NOW" in proc.stdout  # the saved run beside this one


def _headline_lines(info: dict) -> list[str]:
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)
    return root_conftest.headline_lines([SimpleNamespace(extra_info=info, stats=None)])


def test_global_mode_headline_states_time_ratio_peaks_and_goals():
    info = dict(kind="global", img_size=448, rounds_interleaved=3, timing_threads=1)
    info.update(time_ratio_vit_lsla_t_vs_swin_t_ref=[0.37, 0.35, 0.46])
    info.update(peak_mb_vit_lsla_t=187.1, peak_mb_swin_t_ref=3665.0)
    (line,) = _headline_lines(info)
    assert line == (
        "global attention at 448 px, vit_lsla_t / swin_t_ref time: 0.37x (IQR 0.35-0.46, "
        "3 interleaved rounds in rotating order, 1 thread(s)), goal <= 2; peak 187 vs 3665 MB "
        "(goal: no more than Swin's)"
    )
    info["attention_kernels"] = {"vit_lsla_t": ["explicit"], "swin_t_ref": ["explicit", "sdpa"]}
    (line,) = _headline_lines(info)
    assert line.endswith("; kernels: vit_lsla_t explicit, swin_t_ref explicit+sdpa")


def test_global_training_headline_states_time_ratio_and_peaks():
    info = dict(kind="global_train", img_size=224, rounds_interleaved=9, timing_threads=1)
    info["round_order"] = "balanced"  # benchmark JSON of 2026-12-06 on; rotating before
    info.update(time_ratio_vit_lsla_t_vs_swin_t_ref=[1.22, 1.18, 1.26])
    info.update(peak_mb_vit_lsla_t=231.4, peak_mb_swin_t_ref=264.0)
    info["attention_kernels"] = {"vit_lsla_t": ["explicit"], "swin_t_ref": ["explicit"]}
    (line,) = _headline_lines(info)
    assert line == (
        "global attention, training step at 224 px, vit_lsla_t / swin_t_ref time: 1.22x (IQR "
        "1.18-1.26, 9 interleaved rounds in balanced order, 1 thread(s)); peak 231 vs 264 MB "
        "(no goal); kernels: vit_lsla_t explicit, swin_t_ref explicit"
    )


def test_interleaved_rounds_must_be_a_whole_number():
    proc = _pytest("--interleaved-rounds=0", "benchmarks/test_models.py", "--collect-only")
    assert proc.returncode != 0
    assert "must be a whole number >= 1 (got '0')" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_speed_headline_states_each_models_page_faults_when_recorded():
    info = dict(kind="speed", mode="inference", batch=4, rounds_interleaved=5, timing_threads=1)
    info.update(speedup_vit_lsla_t_vs_swin_t_ref=[1.13, 1.1, 1.15], speedup_vit_lsla_t_vs_timm=1.4)
    info.update(gemm_share_vit_lsla_t=0.74, gemm_share_swin_t_ref=0.76, gemm_gflops=100.0)
    (plain,) = _headline_lines(info)
    assert plain.endswith("GEMM-peak share 74% (swin_t_ref 76%, peak 100 GFLOP/s)")
    info["page_faults_per_call"] = {"vit_lsla_t": 2352.0, "swin_tiny": 40628.0}
    info["kernel_ms_per_call"] = {"vit_lsla_t": 4.2, "swin_tiny": 56.0}
    (line,) = _headline_lines(info)
    assert line == plain + (
        "; page faults per call (OS-kernel time): vit_lsla_t 2352 (4 ms), swin_tiny 40628 (56 ms)"
    )
    info["speedup_vit_lsla_t_vs_timm_outside_kernel"] = 1.4  # reads the same: not repeated
    assert _headline_lines(info) == [line]
    info["speedup_vit_lsla_t_vs_timm_outside_kernel"] = float("nan")  # no round to tell
    assert _headline_lines(info) == [line]
    info["speedup_vit_lsla_t_vs_timm_outside_kernel"] = 1.33
    (outside,) = _headline_lines(info)
    assert outside == line.replace(
        "vs timm swin_tiny 1.40x;", "vs timm swin_tiny 1.40x (1.33x outside the OS kernel);"
    )
    info["allocator"] = "steady (glibc mmap threshold 32 MB, heap never trimmed)"
    (with_policy,) = _headline_lines(info)
    assert (
        with_policy
        == outside + "; allocator steady (glibc mmap threshold 32 MB, heap never trimmed)"
    )
    info["cpu_gemms"] = "forward oneDNN, input gradient MKL, weight gradient torch.mm"
    assert _headline_lines(info) == [with_policy + "; linear layers: " + info["cpu_gemms"]]
