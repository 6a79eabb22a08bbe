"""An experiment directory's plan: every run ever planned there, and what each was made with.

``experiment.json`` is merged, never shrunk: a sweep with ``--only`` or a smaller grid adds to
it. Before anything trains, each run that already has results (finished or partial) is compared
with what this call would run (``harness.identity``); any difference stops the sweep with the
keys that differ, unless ``--rerun-changed`` asks to run those runs again from scratch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.config import ConfigError, RunConfig, run_from_dict
from harness.identity import differences, fingerprint
from harness.layout import ExperimentDir
from harness.results import read_json, write_json


def write_plan(runs: list[RunConfig]) -> ExperimentDir:
    """Merge ``runs`` into the experiment's ``experiment.json`` (by run id, newest wins)."""
    exp = ExperimentDir(Path(runs[0].out_dir) / runs[0].experiment)
    planned: dict[str, Any] = {}
    if exp.plan.exists():
        try:
            planned = {r["run_id"]: r for r in read_json(exp.plan).get("runs", [])}
        except (ValueError, AttributeError, KeyError, TypeError):
            planned = {}  # unreadable: rebuilt from this call (results are untouched)
    planned.update({r.run_id: r.to_dict() for r in runs})
    write_json(exp.plan, {"experiment": runs[0].experiment, "runs": list(planned.values())})
    return exp


def run_fingerprint(cfg: RunConfig) -> dict[str, Any]:
    import variants
    from harness.models import PRESETS

    variant = cfg.model.variant or PRESETS[cfg.model.preset]["attn"]
    switches = dataclasses.asdict(variants.resolve(variant, cfg.model.switches))
    return fingerprint(cfg.to_dict(), switches)


def _recorded_fingerprint(cfg: RunConfig) -> dict[str, Any] | None:
    """What the run's existing results were made with (None: nothing there yet)."""
    files = cfg.run_dir
    if files.fingerprint.exists():
        return read_json(files.fingerprint)
    if files.config.exists():  # results from before fingerprints: compare the settings only
        old = run_fingerprint(run_from_dict(read_json(files.config)))
        return {k: v for k, v in old.items() if not k.startswith("code.")}
    return None


def changed_runs(runs: list[RunConfig]) -> list[tuple[RunConfig, list[str]]]:
    found = []
    for cfg in runs:
        old = _recorded_fingerprint(cfg)
        if old is not None:
            new = run_fingerprint(cfg)
            if "code.commit" not in old:  # made before fingerprints: settings only
                new = {k: v for k, v in new.items() if not k.startswith("code.")}
            diffs = differences(old, new)
            if diffs:
                found.append((cfg, diffs))
    return found


def check_unchanged(runs: list[RunConfig], rerun_changed: bool, log) -> list[RunConfig]:
    """Runs whose results were made with other settings: an error, or (``--rerun-changed``)
    the runs to start again."""
    changed = changed_runs(runs)
    if not changed or rerun_changed:
        for cfg, diffs in changed:
            log(f"{cfg.run_id}: settings changed ({'; '.join(diffs)}); re-running it")
        return [cfg for cfg, _ in changed]
    shown = "; ".join(f"{cfg.run_id}: {', '.join(diffs)}" for cfg, diffs in changed[:3])
    more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
    raise ConfigError(
        f"{len(changed)} run(s) in {runs[0].run_dir.path.parent} were made with other settings: "
        f"{shown}{more}. Nothing was trained. Re-run them with --rerun-changed, or use another "
        "--out to keep both"
    )
