"""The command line: ``python -m bnlr run ...`` writes a tidy table (the history, or an analysis of
it), ``python -m bnlr schedule ...`` the lr of every epoch, ``python -m bnlr catapult ...``
full-batch gradient descent past the stability wall (``bnlr.edge``), ``python -m bnlr info``
what a bug report needs. Defaults: the article's setup. Bad arguments exit with status 2 and one
line naming the bad value.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd
import torch

from . import analysis, article, claims, edge, metrics, why
from .config import DataConfig, Grid, ModelConfig, log_grid
from .optimizers import OptimizerConfig
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


def _run_options(command: argparse.ArgumentParser) -> None:
    """The options that describe a grid of runs (defaults: the article's setup, bnlr.article)."""
    command.add_argument("--depths", type=_list(int, "--depths"), default=article.DEPTHS)
    command.add_argument("--width", type=int, default=article.WIDTH)
    command.add_argument(
        "--activation", type=_list(str, "--activation"), default=(article.ACTIVATION,)
    )
    command.add_argument("--bn", type=_list(str, "--bn"), default=article.BNS)
    command.add_argument("--bn-momentum", type=float, default=article.BN_MOMENTUM)
    lrs = command.add_mutually_exclusive_group()
    lrs.add_argument("--lrs", type=_list(float, "--lrs"), default=article.LRS)
    lrs.add_argument("--lr-grid", type=_lr_grid, help="LOW:HIGH:COUNT, log-spaced")
    command.add_argument("--seeds", type=_list(int, "--seeds"), default=(article.SEED,))
    command.add_argument("--epochs", type=int, default=article.EPOCHS)
    command.add_argument("--batch-size", type=int, default=article.BATCH_SIZE)
    command.add_argument("--optimizer", default=article.OPTIMIZER)
    command.add_argument("--momentum", type=float, default=0.0)
    command.add_argument("--weight-decay", type=float, default=None)
    command.add_argument(
        "--schedule", default="constant", help="one or more schedule specs separated by ';'"
    )
    command.add_argument("--dtype", default="float32")
    command.add_argument("--n", type=int, default=article.N, help="samples")
    command.add_argument("--noise", type=float, default=article.NOISE)
    command.add_argument("--degree", type=int, default=article.DEGREE)
    command.add_argument("--out", default="-", help="CSV path, or - for stdout")


def _grid(args: argparse.Namespace) -> Grid:
    schedules = tuple(s.strip() for s in args.schedule.split(";") if s.strip()) or ("constant",)
    sgd = args.optimizer == "sgd"
    return Grid(
        depths=args.depths,
        width=args.width,
        activations=args.activation,
        bns=args.bn,
        bn_momentum=args.bn_momentum,
        lrs=args.lr_grid or args.lrs,
        seeds=args.seeds,
        schedules=schedules,
        optimizer=OptimizerConfig(
            args.optimizer, momentum=args.momentum if sgd else 0.0, weight_decay=args.weight_decay
        ),
        data=DataConfig(n=args.n, noise=args.noise, degree=args.degree),
        epochs=args.epochs,
        batch_size=args.batch_size,
        dtype=args.dtype,
    )


# What `run --table` writes: the tidy history, or an analysis of it (bnlr.metrics, bnlr.analysis)
TABLES = {
    "history": lambda result, a: result.history,
    "metrics": lambda result, a: metrics.run_metrics(result.history, a.split, a.final),
    "sensitivity": lambda result, a: metrics.lr_sensitivity(TABLES["metrics"](result, a)),
    "bands": lambda result, a: analysis.metrics_band(TABLES["metrics"](result, a)),
    "best_lr": lambda result, a: analysis.best_lr(TABLES["bands"](result, a)),
}


def metrics_settings(grid: Grid, epochs: pd.DataFrame) -> pd.DataFrame:
    """The why table with each run's settings in front (as ``run`` writes them)."""
    runs = pd.DataFrame(
        [
            {
                "run": i,
                "depth": r.model.depth,
                "width": r.model.widths[0],
                "activation": r.model.activation,
                "optimizer": r.optimizer.label,
                "schedule": r.schedule,
            }
            for i, r in enumerate(grid.experiment.runs)
        ]
    )
    return runs.merge(epochs, on="run")


def _catapult_options(command: argparse.ArgumentParser) -> None:
    """The options of ``catapult`` (networks and seeds as ``run`` takes them)."""
    command.add_argument("--depths", type=_list(int, "--depths"), default=article.DEPTHS)
    command.add_argument("--width", type=int, default=article.WIDTH)
    command.add_argument(
        "--activation", type=_list(str, "--activation"), default=(article.ACTIVATION,)
    )
    command.add_argument("--bn", type=_list(str, "--bn"), default=article.BNS)
    command.add_argument("--seeds", type=_list(int, "--seeds"), default=(article.SEED,))
    command.add_argument(
        "--factors", type=_list(float, "--factors"), default=edge.FACTORS, help="lr ÷ 2/λ₀"
    )
    command.add_argument("--steps", type=int, default=200, help="gradient-descent steps")
    command.add_argument(
        "--every", type=int, default=1, help="λ_max every this many steps (0: only at step 0)"
    )
    command.add_argument("--n", type=int, default=article.N, help="samples")
    command.add_argument("--noise", type=float, default=article.NOISE)
    command.add_argument("--degree", type=int, default=article.DEGREE)
    command.add_argument("--out", default="-", help="CSV path, or - for stdout")
    command.add_argument(
        "--runs-out",
        default=None,
        help="also write one row per run: λ₀, losses, its outcome (lazy, edge of stability, "
        "catapult, diverged) and the largest trainable factor (CSV path)",
    )


def _catapult(args: argparse.Namespace) -> None:
    models = tuple(
        ModelConfig((args.width,) * d, a, b)
        for d in args.depths
        for a in args.activation
        for b in args.bn
    )
    data = DataConfig(n=args.n, noise=args.noise, degree=args.degree)
    past = edge.Past(models, args.seeds, args.factors, args.steps, args.every, data)
    traj = edge.trajectories(past)
    _write(traj, args.out)
    if args.runs_out:
        runs = edge.runs_table(traj)
        largest = edge.largest_trainable(runs)
        keys = ["network", "bn", "seed"]
        _write(runs.merge(largest[[*keys, "largest_factor"]], on=keys), args.runs_out)


def _batch(args: argparse.Namespace) -> pd.DataFrame:
    """The ``batch`` command's table: the best lr per batch size, or the noise scale."""
    from . import batch_size as bs

    grid = _grid(args)
    if args.table == "noise":
        result = train(grid, record_parameters=True)
        trajectories = bs.best_trajectories(grid.experiment, result)
        noise = bs.noise_along_training(grid.experiment, trajectories)
        return noise[["network", "bn", "seed", "epoch", "noise_scale"]]
    n = grid.data.n_train
    sweep = bs.BatchSweep(grid, bs.batch_sizes(args.smallest_batch, n, grid.batch_size), args.same)
    return bs.sweep_report(bs.train_sweep(sweep), args.split).ridge


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bnlr", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="train a grid of runs and write a tidy table (CSV)")
    _run_options(run)
    run.add_argument("--engine", default="batched")
    run.add_argument(
        "--table",
        default="history",
        choices=list(TABLES),
        help="history: loss per run × epoch × split; metrics: per run; sensitivity: per "
        "network; bands: final loss over seeds per network × lr; best_lr: per network",
    )
    run.add_argument("--split", default="train", choices=["train", "test"])
    run.add_argument("--final", default="last", choices=list(metrics.FINALS))
    why_ = sub.add_parser(
        "why",
        help="sharpness vs 2/lr, BN's effective lr and twin distance per run and epoch (CSV)",
    )
    _run_options(why_)
    why_.add_argument("--runs-out", default=None, help="also write one row per run (CSV path)")
    catapult = sub.add_parser(
        "catapult",
        help="full-batch gradient descent at lr = factor × 2/λ₀: loss and exact λ_max per step "
        "(CSV network, bn, seed, factor, lr, step, loss, sharpness)",
    )
    _catapult_options(catapult)
    claims = sub.add_parser(
        "claims",
        help="judge the article's three claims over seeds 929, 930, ... (CSV, one row per claim)",
    )
    claims.add_argument("--seeds", type=int, default=20, help="how many seeds, from 929")
    claims.add_argument("--split", default="train", choices=["train", "test"])
    claims.add_argument("--out", default="-")
    sub.add_parser(
        "info",
        help="what a bug report needs: versions, usable CPUs, the kernel path and cache, the "
        "cost calibration (one item per line)",
    )
    batch = sub.add_parser(
        "batch",
        help="the best lr per network and batch size over seeds (CSV network, bn, batch_size, "
        "best_lr, low, high, seeds), or --table noise: the gradient noise scale along training",
    )
    _run_options(batch)  # --seeds lists seeds, as for run: --seeds 929 is seed 929, not a count
    batch.add_argument(
        "--table",
        default="best_lr",
        choices=["best_lr", "noise"],
        help="best_lr: per network × batch size (a sweep over batch sizes); noise: per network "
        "× seed × epoch, B_noise = tr Σ / |G|² along the best-lr run at --batch-size (epoch 0 = "
        "the initial weights)",
    )
    batch.add_argument(
        "--smallest-batch", type=int, default=2, help="then powers of 2 up to the training split"
    )
    batch.add_argument("--same", default="epochs", choices=["epochs", "steps"])
    batch.add_argument("--split", default="train", choices=["train", "test"])
    sched = sub.add_parser(
        "schedule", help="write the lr each training epoch runs at (CSV epoch,lr)"
    )
    sched.add_argument("--schedule", required=True)
    sched.add_argument("--lr", type=float, required=True)
    sched.add_argument("--epochs", type=int, required=True)
    sched.add_argument("--batches-per-epoch", type=int, default=14, help="for per-batch schedules")
    sched.add_argument("--optimizer", default=article.OPTIMIZER)
    sched.add_argument("--out", default="-")
    return p


def info() -> list[str]:
    """Returns what a bug report needs, one ``name: value`` item per line."""
    import platform

    import numpy as np

    from . import cost, fused, host

    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    versions += [f"numpy {np.__version__}", f"pandas {pd.__version__}"]
    try:
        import llvmlite
        import numba

        versions += [f"numba {numba.__version__}", f"llvmlite {llvmlite.__version__}"]
    except ImportError:
        versions.append("llvmlite missing")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = next(v.split(":", 1)[1].strip() for v in lines if v.startswith("model name"))
        flags = set(next(v for v in lines if v.startswith("flags")).split())
        cpu += f" ({'avx512f' if 'avx512f' in flags else 'avx2' if 'avx2' in flags else 'no avx2'})"
    except (OSError, StopIteration):
        pass
    model = ModelConfig((article.WIDTH,) * 3, article.ACTIVATION, "none")
    route = fused.path(model, DataConfig().n_features, "sgd", "float32")
    kernel = "torch (BNLR_KERNEL=torch or no llvmlite)" if not fused.wanted() else route
    if fused.wanted():
        from bnlr.fused import llc

        named = " (BNLR_CPU)" if os.environ.get("BNLR_CPU", "").strip() else ""
        kernel += f", for the CPU {llc.target()[0]}{named}"
    return [
        f"bnlr: {_version()}",
        f"versions: {', '.join(versions)}",
        f"platform: {platform.platform()}",
        f"cpu: {cpu}",
        f"cpus: {host.usable_cpus().describe()}",
        f"torch threads: {torch.get_num_threads()}, "
        f"instructions {torch.backends.cpu.get_cpu_capability()}",
        f"kernel path: {kernel}",
        f"kernel cache: {fused.cache_dir() or 'off'}",
        f"calibration: {cost.calibrate().describe()}",
    ]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bnlr")
    except PackageNotFoundError:
        return "not installed (run from a checkout)"


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
        if args.command == "info":
            print("\n".join(info()))
            return 0
        if args.command == "why":
            grid = _grid(args)
            report = why.run_physics(grid)
            settings = metrics_settings(grid, report.epochs)
            if args.optimizer not in ("adam", "adamw"):  # Adam's wall only (bnlr.preconditioned)
                settings = settings.drop(columns=["preconditioned_sharpness"])
            _write(settings, args.out)
            if args.runs_out:
                _write(report.runs, args.runs_out)
            return 0
        if args.command == "catapult":
            _catapult(args)
            return 0
        if args.command == "batch":
            _write(_batch(args), args.out)
            return 0
        if args.command == "claims":
            if args.seeds < 1:
                raise ValueError(f"--seeds must be ≥ 1, got {args.seeds}")
            _write(claims.article_claims(args.seeds, args.split), args.out)
            return 0
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
        result = train(_grid(args), engine=args.engine)
        _write(TABLES[args.table](result, args), args.out)
        return 0
    except (ValueError, OSError) as err:
        print(f"bnlr: error: {err}", file=sys.stderr)
        return 2
