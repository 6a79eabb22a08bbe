"""The C allocator's policy (``harness.allocator``): under steady, memory a model frees is
reused without page faults; glibc's adaptive default maps it afresh every call."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import allocator
from harness.cli import main

ROOT = Path(__file__).parents[1]
GLIBC = allocator._glibc() is not None and sys.platform.startswith("linux")

# two 30 MB maps freed together, as a block's activations are. Under glibc's adaptive default
# the same loop took 0 faults a call in some processes and 15,328 in others (2026-12-05): whether
# the freed maps go back to the kernel depends on the heap's layout, so only steady is asserted
CHURN = """
import resource, sys, torch
from harness import allocator
allocator.use(sys.argv[1])

def churn():
    maps = [torch.ones(30 << 18) for _ in range(2)]
    del maps

for _ in range(10):  # the heap settles: it grows to the working set once
    churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


class FakeGlibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def _python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_steady_fixes_the_mmap_threshold_and_stops_trimming_once(monkeypatch):
    libc = FakeGlibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: libc)
    monkeypatch.setattr(allocator, "_steady", False)
    assert allocator.use("steady").startswith("steady")
    assert libc.calls == [(-3, 32 << 20), (-1, 2**31 - 1)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    allocator.use("steady")
    assert len(libc.calls) == 2  # set once per process


def test_system_leaves_the_allocator_as_found(monkeypatch):
    libc = FakeGlibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: libc)
    monkeypatch.setattr(allocator, "_steady", False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert allocator.use("system") == "system (glibc adaptive)" and libc.calls == []
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")
    assert allocator.describe() == "system (glibc, GLIBC_TUNABLES=glibc.malloc.trim_threshold=1)"


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_steady_policy_reuses_freed_memory_without_faults():
    proc = _python(CHURN, "steady")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) < 50  # 60 MB a call, 15,000 pages, none faulted again


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_steady_cannot_be_undone_in_a_process_and_is_described():
    code = """
    from harness import allocator
    print(allocator.describe())
    print(allocator.use("steady"))
    try:
        allocator.use("system")
    except ValueError as exc:
        print(exc)
    """
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after, refused = proc.stdout.strip().splitlines()
    assert before == "system (glibc adaptive)"
    assert after == "steady (glibc mmap threshold 32 MB, heap never trimmed)"
    assert "start a new process with LSLA_MALLOC=system" in refused


def test_the_policy_comes_from_lsla_malloc_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.delenv(allocator.SWITCH, raising=False)
    assert allocator.from_env() == "steady"
    monkeypatch.setenv(allocator.SWITCH, " System ")
    assert allocator.from_env() == "system"
    monkeypatch.setenv(allocator.SWITCH, "jemalloc")
    with pytest.raises(ValueError, match="LSLA_MALLOC='jemalloc' is not .* steady, system"):
        allocator.from_env()


def test_a_bad_policy_ends_a_command_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv(allocator.SWITCH, "jemalloc")
    assert main(["list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: LSLA_MALLOC='jemalloc'")


def test_a_bad_policy_stops_a_timed_benchmark_run_in_one_line():
    env = {**os.environ, allocator.SWITCH: "jemalloc"}
    cmd = [sys.executable, "-m", "pytest", "--benchmark", "-p", "no:cacheprovider",
           "benchmarks/test_models.py", "--collect-only"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "LSLA_MALLOC='jemalloc' is not an allocator policy" in proc.stderr
    assert "Traceback" not in proc.stderr
