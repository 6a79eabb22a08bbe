"""``sweep`` / ``train`` subcommands: run an experiment file (all runs, or a filtered subset).

python -m harness sweep harness/configs/default.toml
python -m harness train harness/configs/default.toml --only variant=lsla --only seed=0
torchrun --standalone --nproc_per_node=2 -m harness train EXP.toml --only ...   (DDP)
python -m harness sweep harness/configs/ip102.toml --set data.root=/data/ip102
"""

from __future__ import annotations

import argparse


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="TOML experiment file (see harness/configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, e.g. --set train.epochs=3 --set data.root=/data/ip102",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep runs whose id contains PATTERN (wildcards allowed); repeatable",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="set a grid axis's values, e.g. --grid train.seed=0,1 (adds the axis if new)",
    )
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="re-run (from scratch) runs whose results were made with other settings or code",
    )
    p.add_argument("--out", default=None, help="output root (default: the file's out_dir, runs/)")
    p.add_argument("--dry-run", action="store_true", help="print the expanded runs and stop")
    p.add_argument("--force", action="store_true", help="re-run finished runs from scratch")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="stop each run after this many epochs of this invocation (resume later)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--launcher",
        choices=("local", "ray", "slurm"),
        default="local",
        help="where runs execute: this process (default), Ray tasks, or a SLURM job array",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join ('auto', 'ray://host:10001'); default: a local instance",
    )
    p.add_argument(
        "--detach", action="store_true", help="submit and return; follow with 'harness status'"
    )


def _runs(args: argparse.Namespace):
    from harness.config import load_experiment
    from harness.sweep import select

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out_dir={args.out!r}")
    if args.no_progress:
        overrides.append("train.progress=false")
    return select(load_experiment(args.experiment, overrides, grid=args.grid), args.only)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from harness.sweep import exit_code, run_sweep, status_of

    runs = _runs(args)
    if args.dry_run:
        from harness.data import check_data

        check_data(runs, print)
        for r in runs:
            print(
                f"{r.experiment}/{r.run_id}  [{status_of(r)}]  model={r.model.preset} "
                f"variant={r.model.variant or '(preset)'} data={r.data.name} "
                f"seed={r.train.seed} epochs={r.train.epochs}"
            )
        return 0
    if args.launcher == "local":
        outcome = run_sweep(
            runs, force=args.force, stop_after=args.stop_after, rerun_changed=args.rerun_changed
        )
    else:
        outcome = _launch(runs, args)
    return exit_code(outcome)


def _launch(runs, args: argparse.Namespace) -> dict:
    """Checks and plan here, runs on Ray or SLURM workers, the table here when they finish."""
    from harness.results import write_table
    from harness.runtime import Dist
    from harness.sweep import start

    if args.stop_after is not None:
        from harness.config import ConfigError

        raise ConfigError("--stop-after works with the local launcher only")
    start(runs, args.force, args.rerun_changed, Dist(), print)
    if args.launcher == "ray":
        try:
            from harness.launch import ray_launcher as launcher
        except ImportError:
            raise _missing("ray") from None
        outcome = launcher.launch(runs, args.ray_address, args.detach, print)
    else:
        try:
            from harness.launch import slurm as launcher
        except ImportError:
            raise _missing("submitit") from None
        outcome = launcher.launch(runs, args.detach, print)
    if not args.detach:
        table = write_table(runs[0].run_dir.path.parent)
        print(f"results: {table}" if table else "results: no records yet")
    return outcome


def _missing(package: str) -> Exception:
    from harness.config import ConfigError

    return ConfigError(
        f"--launcher needs {package}: pip install 'vit-lsla-harness[cluster]' (ray and submitit)"
    )


def _cmd_status(args: argparse.Namespace) -> int:
    """The state of every run of an experiment, from its files (any launcher, any machine)."""
    import pandas as pd

    from harness.launch.progress import Progress, table

    runs = _runs(args)
    print(pd.DataFrame(table(runs)).to_string(index=False))
    print(Progress(runs, print).line())
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    runs = _runs(args)
    if len(runs) != 1 and not args.dry_run:
        from harness.config import ConfigError

        raise ConfigError(
            f"train needs exactly one run, the filters leave {len(runs)}: "
            f"{', '.join(r.run_id for r in runs)} (add --only, or use sweep)"
        )
    return _cmd_sweep(args)


def _cmd_data_verify(args: argparse.Namespace) -> int:
    """Check every dataset of an experiment now, in seconds (``--decode``: open every image)."""
    from harness.data import check_data

    bad = check_data(_runs(args), print, decode=args.decode)
    for path, reason in bad:
        print(f"bad image: {path}: {reason}")
    if bad:
        print(f"{len(bad)} image(s) do not decode: remove them, or set data.corrupt='skip'")
    return 1 if bad else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    """Time and measure one model per arm against each other, interleaved in this process."""
    from harness.compare import compare_arms, write_comparison
    from harness.data import build_dataset

    runs = _runs(args)
    classes = build_dataset(runs[0].data, runs[0].train, "test").num_classes
    result = compare_arms(runs, classes, rounds=args.rounds, threads=args.threads)
    exp = write_comparison(runs, result)
    base = result["baseline"]
    for arm, stats in result["arms"].items():
        inf, tr = stats["inference_speedup"], stats["train_speedup"]
        print(
            f"{arm:>24}: inference {inf[0]:.2f}x ({inf[1]:.2f}-{inf[2]:.2f}), train step "
            f"{tr[0]:.2f}x ({tr[1]:.2f}-{tr[2]:.2f}), saved activations "
            f"{stats['saved_ratio']:.2f}x of {base}"
        )
    print(
        f"arms: {exp.arms} ({result['rounds']} interleaved rounds, {result['threads']} thread(s))"
    )
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("data", help="dataset tools: 'data verify EXP.toml [--decode]'")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    v = data_sub.add_parser("verify", help="check roots, split files, classes and every image")
    _add_common(v)
    v.add_argument("--decode", action="store_true", help="also open every image (slower)")
    v.set_defaults(func=_cmd_data_verify)
    p = sub.add_parser("sweep", help="run every point of an experiment grid (resumable)")
    _add_common(p)
    p.set_defaults(func=_cmd_sweep)
    p = sub.add_parser("train", help="run exactly one point of an experiment (DDP via torchrun)")
    _add_common(p)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("compare", help="the arms' speed and memory, interleaved in one process")
    _add_common(p)
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads, pinned (default 1)")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("status", help="state of every run of an experiment, from its files")
    _add_common(p)
    p.set_defaults(func=_cmd_status)
