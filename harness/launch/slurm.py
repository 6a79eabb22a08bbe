"""``--launcher slurm``: a SLURM job array through submitit, one job per run.

``[launch]`` gives the partition, time limit, GPUs and CPUs per run, how many jobs run at once and
extra sbatch options. A job that is pre-empted or reaches its time limit is requeued by
submitit's checkpoint protocol and resumes from the run's last epoch. A run with several GPUs
runs DDP inside its job (one task per GPU; submitit's environment becomes torch.distributed's).
Where ``sbatch`` is missing, submitit runs the jobs as subprocesses on this machine (its local
executor, same protocol), and the sweep says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import submitit

from harness.config import RunConfig
from harness.launch.progress import Progress
from harness.launch.worker import run_task, write_marker
from harness.results import DONE_STATUSES
from harness.sweep import status_of


class RunJob(submitit.helpers.Checkpointable):
    """The job: train one run. On pre-emption ``checkpoint`` (inherited) resubmits the same call,
    which resumes from the run's last checkpoint."""

    def __call__(self, config: dict[str, Any], marker: str, threads: int) -> dict[str, Any]:
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # several GPUs: one task per GPU joins one process group
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return run_task(config, marker, threads)


def _executor(runs: list[RunConfig], folder: Path, log) -> submitit.AutoExecutor:
    launch = runs[0].launch
    gpus = launch.gpus_per_run or 0
    executor = submitit.AutoExecutor(folder=folder)
    params: dict[str, Any] = dict(
        timeout_min=launch.time_min,
        gpus_per_node=gpus,
        tasks_per_node=max(1, gpus),
        cpus_per_task=launch.cpus_per_run,
        name=runs[0].experiment,
        slurm_partition=launch.partition,
        slurm_array_parallelism=launch.array_parallelism,
        slurm_additional_parameters=dict(launch.sbatch) or None,
    )
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    if executor.cluster != "slurm":
        log("slurm: no sbatch on this machine; the jobs run here (submitit's local executor)")
    return executor


def submit(runs: list[RunConfig], log) -> list[tuple[Any, RunConfig]]:
    exp_dir = runs[0].run_dir.path.parent
    todo = [cfg for cfg in runs if status_of(cfg) not in DONE_STATUSES]
    if not todo:
        return []
    marker = str(write_marker(exp_dir))
    executor = _executor(runs, exp_dir / "slurm", log)
    threads = runs[0].launch.cpus_per_run
    jobs = executor.map_array(
        RunJob(), [c.to_dict() for c in todo], [marker] * len(todo), [threads] * len(todo)
    )
    for job, cfg in zip(jobs, todo, strict=True):
        log(f"slurm: {cfg.run_id} -> job {job.job_id}")
    return list(zip(jobs, todo, strict=True))


def follow(jobs: list[tuple[Any, RunConfig]], runs: list[RunConfig], log) -> dict[str, list[str]]:
    import time

    outcome: dict[str, list[str]] = {}
    progress, waiting = Progress(runs, log), list(jobs)
    while waiting:
        time.sleep(2.0)
        for job, cfg in [jw for jw in waiting if jw[0].done()]:
            waiting.remove((job, cfg))
            try:
                status = job.result()["status"]
            except Exception as exc:  # submitit re-raises the job's error here
                log(f"slurm: {cfg.run_id} failed: {str(exc).strip().splitlines()[-1]}")
                status = "failed"
            outcome.setdefault(status, []).append(cfg.run_id)
        progress.update()
    return outcome


def launch(runs: list[RunConfig], detach: bool, log) -> dict[str, Any]:
    jobs = submit(runs, log)
    if detach:
        log("slurm: detached; follow with: python -m harness status EXP.toml")
        return {"submitted": [cfg.run_id for _, cfg in jobs]}
    return follow(jobs, runs, log)
