"""Where every file of an experiment lives: the one place that knows the names (no torch import).

::

    <out_dir>/<experiment>/
        experiment.json          the expanded experiment (what the sweep runs)
        results.csv / .parquet   one row per run record (flattened)
        arms.json                the arms' speed and memory, interleaved (harness compare)
        bench/*.json             pytest-benchmark output, read by the report
        <run_id>/config.json     fully resolved run config
        <run_id>/fingerprint.json  everything that can change the result (harness.identity)
        <run_id>/claim.json      who runs it right now (host, pid, heartbeat; harness.claims)
        <run_id>/log.txt         the run's log lines
        <run_id>/tensorboard/    event files (when tensorboard is installed)
        <run_id>/checkpoint.pt   latest epoch (model, optimizer, scaler, EMA, RNG)
        <run_id>/checkpoint.prev.pt  the epoch before (a fallback if the latest is damaged)
        <run_id>/metrics.jsonl   one line per epoch
        <run_id>/split.json      the exact data split, when the dataset re-splits
        <run_id>/model.safetensors  the finished run's weights (EMA when on), timm-loadable
        <run_id>/result.json     the final record; its presence marks the run as done
        <run_id>/failure.rankN.json  what rank N saw when a DDP run failed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    """The files of one run."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def previous_checkpoint(self) -> Path:
        return self.path / "checkpoint.prev.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def fingerprint(self) -> Path:
        return self.path / "fingerprint.json"

    @property
    def claim(self) -> Path:
        return self.path / "claim.json"

    @property
    def log(self) -> Path:
        return self.path / "log.txt"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def split(self) -> Path:
        return self.path / "split.json"

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    def rank_failure(self, rank: int) -> Path:
        """What rank ``rank`` of a DDP job saw when the run failed there."""
        return self.path / f"failure.rank{rank}.json"

    def rank_failures(self) -> list[Path]:
        return sorted(self.path.glob("failure.rank*.json"))

    def restart_files(self) -> tuple[Path, ...]:
        """What ``--force`` deletes so that the run starts from scratch."""
        return (
            self.result,
            self.checkpoint,
            self.previous_checkpoint,
            self.metrics,
            self.fingerprint,
            *self.rank_failures(),
        )


@dataclass(frozen=True)
class ExperimentDir:
    """The files of one experiment (a folder of runs)."""

    path: Path

    def run(self, run_id: str) -> RunDir:
        return RunDir(self.path / run_id)

    @property
    def plan(self) -> Path:
        return self.path / "experiment.json"

    @property
    def arms(self) -> Path:  # the arms' speed and memory measured together (harness.compare)
        return self.path / "arms.json"

    @property
    def table_csv(self) -> Path:
        return self.path / "results.csv"

    @property
    def table_parquet(self) -> Path:
        return self.path / "results.parquet"


RESULT_FILE = RunDir(Path()).result.name
PLAN_FILE = ExperimentDir(Path()).plan.name
ARMS_FILE = ExperimentDir(Path()).arms.name
