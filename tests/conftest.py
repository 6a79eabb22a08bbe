"""Shared fixtures: CPU by default, a seeded RNG, hypothesis profiles, verbose closeness checks."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import tests.toy_variant  # noqa: F401  registers a variant from outside variants/, as a plug-in would

settings.register_profile(
    "default", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
# the suite is sized for 2 cores: one worker gets both, each of pytest-xdist's workers its share
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, torch.get_num_threads()) // _workers))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def seed() -> int:
    torch.manual_seed(0)
    return 0


def assert_close_verbose(actual, expected, atol: float = 1e-5, rtol: float = 1e-5, what: str = ""):
    """Like ``torch.testing.assert_close`` but reports where the worst element is."""
    diff = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    bad = diff > bound
    if bad.any():
        idx = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise AssertionError(
            f"{what} not close: max |diff| {diff.max().item():.3e} at {idx} "
            f"(actual {actual[idx].item():.6g}, expected {expected[idx].item():.6g}); "
            f"{bad.float().mean().item():.1%} of elements exceed atol={atol} rtol={rtol}"
        )
