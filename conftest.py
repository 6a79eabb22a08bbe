"""Root pytest hooks shared by tests/ and benchmarks/."""

from __future__ import annotations

from pathlib import Path


def pytest_configure(config):
    """Create the folder of ``--benchmark-json`` (pytest-benchmark does not)."""
    target = config.getoption("benchmark_json", None)
    if target:
        Path(str(target)).parent.mkdir(parents=True, exist_ok=True)
