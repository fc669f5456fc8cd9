"""The command line: ``python -m bnlr run ...`` writes the tidy table, ``python -m bnlr schedule ...``
writes the lr of every epoch. Bad arguments exit with status 2 and one line naming the bad value.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from .config import DataConfig, Grid, OptimizerConfig, log_grid
from .schedules import trajectory
from .train import train


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        self.exit(2, f"bnlr: error: {message}\n")


def _list(kind, name):
    def parse(text: str):
        try:
            values = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} {text!r}: expected comma-separated {kind.__name__}s"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"{name} is empty")
        return values

    return parse


def _lr_grid(text: str):
    try:
        low, high, count = text.split(":")
        return log_grid(float(low), float(high), int(count))
    except ValueError as err:
        msg = str(err) if "grid" in str(err) else "expected LOW:HIGH:COUNT, e.g. 1e-4:1:24"
        raise argparse.ArgumentTypeError(f"--lr-grid {text!r}: {msg}") from None


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bnlr", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run", help="train a grid of runs and write the tidy per-epoch table (CSV)"
    )
    run.add_argument("--depths", type=_list(int, "--depths"), default=(3, 4))
    run.add_argument("--width", type=int, default=4)
    run.add_argument("--activation", type=_list(str, "--activation"), default=("tanh",))
    run.add_argument("--bn", type=_list(str, "--bn"), default=("none", "pre"))
    run.add_argument("--bn-momentum", type=float, default=0.1)
    lrs = run.add_mutually_exclusive_group()
    lrs.add_argument("--lrs", type=_list(float, "--lrs"), default=(0.1, 0.03, 0.01, 0.005))
    lrs.add_argument("--lr-grid", type=_lr_grid, help="LOW:HIGH:COUNT, log-spaced")
    run.add_argument("--seeds", type=_list(int, "--seeds"), default=(929,))
    run.add_argument("--epochs", type=int, default=40)
    run.add_argument("--batch-size", type=int, default=50)
    run.add_argument("--optimizer", default="sgd")
    run.add_argument("--momentum", type=float, default=0.0)
    run.add_argument(
        "--schedule", default="constant", help="one or more schedule specs separated by ';'"
    )
    run.add_argument("--engine", default="batched")
    run.add_argument("--dtype", default="float32")
    run.add_argument("--n", type=int, default=1000, help="samples")
    run.add_argument("--noise", type=float, default=0.01)
    run.add_argument("--degree", type=int, default=2)
    run.add_argument("--out", default="-", help="CSV path, or - for stdout")
    sched = sub.add_parser(
        "schedule", help="write the lr each training epoch runs at (CSV epoch,lr)"
    )
    sched.add_argument("--schedule", required=True)
    sched.add_argument("--lr", type=float, required=True)
    sched.add_argument("--epochs", type=int, required=True)
    sched.add_argument("--batches-per-epoch", type=int, default=14, help="for per-batch schedules")
    sched.add_argument("--optimizer", default="sgd")
    sched.add_argument("--out", default="-")
    return p


def _write(df: pd.DataFrame, out: str) -> None:
    if out == "-":
        df.to_csv(sys.stdout, index=False)
    else:
        df.to_csv(out, index=False)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: more intra-op threads only spin (see ui/runner.py)
    try:
        if args.command == "schedule":
            if not isinstance(args.epochs, int) or args.epochs < 1:
                raise ValueError(f"--epochs must be ≥ 1, got {args.epochs}")
            if args.batches_per_epoch < 1:
                raise ValueError(f"--batches-per-epoch must be ≥ 1, got {args.batches_per_epoch}")
            if not args.lr > 0:
                raise ValueError(f"--lr must be > 0, got {args.lr}")
            traj = trajectory(
                args.schedule,
                args.lr,
                args.epochs,
                args.batches_per_epoch,
                OptimizerConfig(args.optimizer),
            )
            if traj is None:
                raise ValueError(
                    "plateau depends on the training loss; run it with `python -m bnlr run`"
                )
            lrs = traj.lr[:: args.batches_per_epoch]
            _write(pd.DataFrame({"epoch": range(1, args.epochs + 1), "lr": lrs}), args.out)
            return 0
        schedules = tuple(s.strip() for s in args.schedule.split(";") if s.strip()) or ("constant",)
        grid = Grid(
            depths=args.depths,
            width=args.width,
            activations=args.activation,
            bns=args.bn,
            bn_momentum=args.bn_momentum,
            lrs=args.lr_grid or args.lrs,
            seeds=args.seeds,
            schedules=schedules,
            optimizer=OptimizerConfig(args.optimizer, momentum=args.momentum),
            data=DataConfig(n=args.n, noise=args.noise, degree=args.degree),
            epochs=args.epochs,
            batch_size=args.batch_size,
            dtype=args.dtype,
        )
        _write(train(grid, engine=args.engine).history, args.out)
        return 0
    except (ValueError, OSError) as err:
        print(f"bnlr: error: {err}", file=sys.stderr)
        return 2
