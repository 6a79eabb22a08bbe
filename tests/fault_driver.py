"""Kill a sweep at seeded points and check that nothing finished is ever lost or altered.

Run by ``tests/test_fault_injection.py`` as ``python tests/fault_driver.py EXP.toml SEED KILLS``
with one CPU thread. It imports the harness once and forks a child per attempt: the child runs
the sweep and is SIGKILLed at its N-th file replacement (every checkpoint, record, log and table
write ends in one), either just before it (``before``), after tearing the temporary file in half
(``during``) or just after it (``after``). After every kill the parent checks that each
``result.json`` present is readable and equal to the uninterrupted run's; at the end one child
finishes the sweep without faults and every record must equal the reference. Prints one JSON
summary line; exits 1 with the reason on the first violation.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import sys
from pathlib import Path


def _arm_fault(event: int, phase: str) -> None:
    """Make this process SIGKILL itself at its ``event``-th ``os.replace`` in ``phase``."""
    real = os.replace
    count = 0

    def replace(src, dst, *args, **kwargs):
        nonlocal count
        count += 1
        if count == event:
            if phase == "during":
                size = os.path.getsize(src)
                with open(src, "r+b") as f:
                    f.truncate(size // 2)
            if phase == "after":
                real(src, dst, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)

    os.replace = replace


def _child(argv: list[str], fault: tuple[int, str] | None) -> int:
    """Fork; the child runs the CLI (optionally armed) and exits. Returns the wait status."""
    pid = os.fork()
    if pid == 0:
        from harness.cli import main

        if fault:
            _arm_fault(*fault)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(argv)
        os._exit(code)
    return os.waitpid(pid, 0)[1]


def _comparable(record: dict) -> dict:
    history = [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in record["history"]]
    return {"status": record["status"], "metrics": record["metrics"], "history": history}


def _records(root: Path) -> dict[str, dict]:
    from harness.results import read_record

    return {p.parent.name: _comparable(read_record(p)) for p in root.rglob("result.json")}


def main() -> int:
    exp, seed, kills = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out = Path(exp).parent
    import harness.run  # noqa: F401  imported once, before the forks

    if _child(["sweep", exp, "--out", str(out / "reference")], None) != 0:
        print("reference sweep failed")
        return 1
    reference = _records(out / "reference")
    rng = random.Random(seed)
    killed, attempts, sweeps = 0, 0, 0
    target = out / "faulty0"
    while killed < kills and attempts < 3 * kills:
        attempts += 1
        # a resumed sweep redoes its run from the last checkpoint: small N still moves forward
        fault = (rng.randint(1, 8), rng.choice(["before", "during", "after"]))
        status = _child(["sweep", exp, "--out", str(target)], fault)
        was_killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        killed += was_killed
        found = _records(target)  # raises if a record is unreadable
        for run_id, record in found.items():
            if record != reference[run_id]:
                print(f"attempt {attempts} {fault}: {run_id} differs from the reference")
                return 1
        if not was_killed:  # the sweep got through: check it whole, start a fresh one
            if status != 0 or found != reference:
                print(f"attempt {attempts}: sweep ended with {status}, records {sorted(found)}")
                return 1
            sweeps += 1
            target = out / f"faulty{sweeps}"
    if _child(["sweep", exp, "--out", str(target)], None) != 0:
        print("final sweep failed")
        return 1
    final = _records(target)
    summary = {"kills": killed, "attempts": attempts, "completed_sweeps": sweeps + 1}
    print(json.dumps({**summary, "runs": sorted(final), "equal": final == reference}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
