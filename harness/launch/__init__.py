"""Launchers: where the runs of a sweep execute.

* ``local`` (default): this process, one run after another (``harness.sweep``).
* ``ray``: one Ray task per run, on a local Ray instance or a cluster (``ray_launcher``).
* ``slurm``: a SLURM job array through submitit; pre-empted jobs requeue and resume (``slurm``).

Every launcher uses the same worker (``worker.run_task``): claim the run, train it (resuming from
its checkpoint), write its record. So workers of any kind, and plain ``sweep`` processes, can
share one output directory, which must be on a filesystem every worker sees.
"""
