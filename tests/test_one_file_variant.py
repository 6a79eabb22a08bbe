"""The one-file promise, tested: a new variant (``tests/toy_variant.py``, a pooling mixer written
only to the contract) goes through the conformance tests (they parametrize over the registry),
a sweep run, the report, and, dropped into ``variants/``, is discovered with no other edit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import variants
from harness.results import read_json
from harness.sweep import run_sweep
from reports.build import build
from tests.test_train import tiny

ROOT = Path(__file__).parents[1]


def test_toy_variant_is_registered_with_default_capabilities():
    spec = variants.get("toy_pool_mixer")
    caps = spec.capabilities
    assert (
        spec.switches == {"pool": 3} and variants.get("toy_pool_mixer_wide").switches["pool"] == 5
    )
    assert not caps.records_attention and caps.reference is None and caps.fused_switch is None


def test_toy_variant_runs_in_a_sweep_and_shows_in_the_report(tmp_path):
    grid = '[grid]\n"model.variant" = ["swin", "toy_pool_mixer"]\n'
    runs = tiny(tmp_path, "train.epochs=1", "measure.throughput=false", grid=grid)
    assert run_sweep(runs, log=lambda *_: None) == {
        "finished": ["variant=swin", "variant=toy_pool_mixer"]
    }
    toy = read_json(runs[1].run_dir.result)
    assert toy["variant"] == "toy_pool_mixer" and toy["switches"] == {"pool": 3}
    assert toy["attn_stats"] == [] and "records no weights" in toy["attn_stats_note"]
    assert read_json(runs[0].run_dir.result)["attn_stats"]  # swin records, so it has statistics
    page = build(tmp_path)
    assert "toy_pool_mixer" in page
    assert "No attention statistics</b> for 1 arm(s): toy_pool_mixer" in page


def test_a_file_dropped_into_variants_is_discovered(tmp_path):
    """Copy the package, add the toy as ``variants/pool_mixer.py``: ``harness list`` shows it."""
    shutil.copytree(
        ROOT / "variants", tmp_path / "variants", ignore=shutil.ignore_patterns("__py*")
    )
    shutil.copy(ROOT / "tests" / "toy_variant.py", tmp_path / "variants" / "pool_mixer.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    code = "from harness.cli import main; raise SystemExit(main(['list', 'toy_*']))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "toy_pool_mixer " in proc.stdout and "toy_pool_mixer_wide" in proc.stdout
