"""Command line: ``python -m harness {list,info,train,sweep}`` (also the ``lsla`` script).

Each subcommand lives in its own module and is imported only when used, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def _cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    import variants

    hidden = ("attn_drop", "proj_drop", "fused", "qkv_bias")  # not ablation axes
    rows = []
    for name in variants.names(args.pattern):
        switches = variants.get(name).switches
        rows.append({"variant": name, **{k: v for k, v in switches.items() if k not in hidden}})
    if not rows:
        print(
            f"no variant matches {args.pattern!r}; registered: {', '.join(variants.names())}",
            file=sys.stderr,
        )
        return 2
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness import models
    from harness.measure import count_flops, count_params

    presets = args.models or list(models.PRESETS)
    rows = []
    for name in presets:
        overrides = {"num_classes": args.num_classes}
        if args.variant:
            overrides["attn"] = args.variant
        model = models.create(name, **overrides)
        img = args.img_size or model.cfg.img_size
        rows.append(
            {
                "model": name,
                "variant": model.cfg.attn,
                "img_size": img,
                "params": count_params(model),
                "params_M": count_params(model) / 1e6,
                "GMACs": count_flops(model, img) / 1e9,
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered attention variants and their switches")
    p.add_argument("pattern", nargs="?", default=None, help="wildcard filter, e.g. 'lsa*'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="params and GMACs per model preset")
    p.add_argument("models", nargs="*", help="model presets (default: all)")
    p.add_argument("--variant", help="replace every preset's attention with this variant")
    p.add_argument("--num-classes", type=int, default=102)
    p.add_argument("--img-size", type=int, default=None, help="default: the preset's own")
    p.set_defaults(func=_cmd_info)

    from harness import cli_run  # sweep / train

    cli_run.add_subcommands(sub)

    return parser


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signum)


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; every error a user can cause ends in one line (exit 2: bad input,
    1: a run or the job failed, 130: interrupted), never a traceback."""
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM (kill, a scheduler's pre-emption) ends a run like Ctrl-C does
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        from harness import allocator  # page faults independent of what ran before

        allocator.use(allocator.from_env())
        return int(args.func(args) or 0)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only output, permissions
        where = f" {exc.filename!r}" if exc.filename else ""
        print(
            f"error: cannot write{where}: {exc.strerror or exc}; free space or choose a writable "
            "--out, then run the same command again (finished runs are kept)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        print(
            f"interrupted ({signal.Signals(signum).name}): finished runs and the last completed "
            "epoch of the current run are saved; run the same command again to resume",
            file=sys.stderr,
        )
        return 128 + signum
    except RuntimeError as exc:
        from harness.ddp_failure import JobAborted  # already imported if it was raised

        if not isinstance(exc, JobAborted):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
