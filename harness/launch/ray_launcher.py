"""``--launcher ray``: one Ray task per run, on a local Ray instance or a cluster.

``--ray-address`` picks the cluster (``auto``, ``ray://host:10001``); without it a local Ray
instance is started for the sweep and stopped after. Each task asks for ``[launch]``'s
``cpus_per_run`` and ``gpus_per_run`` (default: one GPU where CUDA is available), and Ray re-runs
a task whose worker process died (``max_retries``): the run resumes from its last checkpoint,
since its claim died with the worker. Application errors are not retried: the run's record
says what failed.
"""

from __future__ import annotations

import time
from typing import Any

from harness.config import RunConfig
from harness.launch.progress import Progress
from harness.launch.worker import run_task, write_marker
from harness.results import DONE_STATUSES
from harness.sweep import status_of


def _resources(cfg: RunConfig) -> dict[str, Any]:
    gpus = cfg.launch.gpus_per_run
    if gpus is None:
        import torch

        gpus = 1 if torch.cuda.is_available() else 0
    return {"num_cpus": cfg.launch.cpus_per_run, "num_gpus": gpus}


def _connect(address: str | None, log) -> bool:
    """Join ``address`` or start a local instance; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        log(f"ray: joined the cluster at {address}")
        return False
    # a local instance stays on the loopback interface
    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    log(f"ray: started a local instance ({ray.cluster_resources().get('CPU', 0):.0f} CPUs)")
    return True


def _submit(runs: list[RunConfig], log) -> dict[Any, RunConfig]:
    import ray

    marker = str(write_marker(runs[0].run_dir.path.parent))
    task = ray.remote(run_task)
    refs = {}
    for cfg in runs:
        if status_of(cfg) in DONE_STATUSES:
            continue
        options = dict(_resources(cfg), max_retries=cfg.launch.max_retries, name=cfg.run_id)
        ref = task.options(**options).remote(cfg.to_dict(), marker, cfg.launch.cpus_per_run)
        refs[ref] = cfg
        log(f"ray: {cfg.run_id} -> task {ref.task_id().hex()[:16]}")
    return refs


def _follow(refs: dict[Any, RunConfig], runs: list[RunConfig], log) -> dict[str, list[str]]:
    import ray
    from ray.exceptions import RayError

    outcome: dict[str, list[str]] = {}
    progress, pending = Progress(runs, log), list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=5.0)
        for ref in ready:
            try:
                status = ray.get(ref)["status"]
            except RayError as exc:
                cause = getattr(exc, "cause", None) or exc
                log(f"ray: {refs[ref].run_id} failed: {type(cause).__name__}: {cause}")
                status = "failed"
            outcome.setdefault(status, []).append(refs[ref].run_id)
        progress.update()
    return outcome


def launch(runs: list[RunConfig], address: str | None, detach: bool, log) -> dict[str, Any]:
    """Submit every run that is not done; follow them unless ``detach``."""
    import ray

    started_here = _connect(address, log)
    if detach and started_here:
        log("ray: --detach needs a cluster (--ray-address): a local instance ends with this call")
        detach = False
    try:
        refs = _submit(runs, log)
        if detach:
            log("ray: detached; follow with: python -m harness status EXP.toml")
            return {"submitted": [cfg.run_id for cfg in refs.values()]}
        t0 = time.monotonic()
        outcome = _follow(refs, runs, log)
        log(f"ray: {len(refs)} task(s) done in {time.monotonic() - t0:.0f}s")
        return outcome
    finally:
        if started_here:
            ray.shutdown()
