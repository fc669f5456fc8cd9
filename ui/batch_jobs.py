"""What the batch-size page asks the runner for: the sweep over batch sizes (one job), then the
noise scale along training (a second job, so the heat map is drawn while it runs). Both capped
by cost (``bnlr.batch_size.estimate``) like every request, and cached like every result."""

from __future__ import annotations

import pandas as pd

import bnlr
from bnlr import batch_size as bs
from bnlr import cost
from ui import runner

NOISE_POINTS = 20  # epochs at which the page measures the noise scale, at most (and init)
LOWER = (
    "the learning rates, seeds, depths or epochs, or raise the smallest batch size "
    "(its steps are the expensive corner)"
)


def check(sweep: bs.BatchSweep) -> float:
    """Returns the sweep's estimated seconds; raises ValueError naming the cap and the controls
    to lower when it is over the cap."""
    seconds = bs.estimate(sweep)
    if seconds > runner.COST_CAP_S:
        raise ValueError(cost.Refusal(seconds, runner.COST_CAP_S, LOWER).message())
    return seconds


def default_b_min(defaults: dict) -> int:
    """The page's default smallest batch size on this host: ``defaults["b_min"]``, doubled until
    the sweep at the page's other ``defaults`` (depths, lr range, seeds) is within the cap. With
    the compiled kernel that is the article's 2; on the torch path, or a host much slower than
    ours, B = 2's steps alone would exceed the cap and the page would open on a refusal."""
    grid = bnlr.Grid(
        depths=tuple(defaults["depths"]),
        lrs=bnlr.log_grid(float(defaults["lr_lo"]), float(defaults["lr_hi"]), defaults["lr_n"]),
        seeds=tuple(range(bnlr.article.SEED, bnlr.article.SEED + defaults["seeds"])),
    )
    n = grid.data.n_train
    b = min(defaults["b_min"], n)
    while b < n:
        sweep = bs.BatchSweep(grid, bs.batch_sizes(b, n, grid.batch_size), defaults["same"])
        if bs.estimate(sweep) <= runner.COST_CAP_S:
            return b
        b *= 2
    return n


def sweep(request: bs.BatchSweep) -> bs.SweepResult:
    """Returns the trained sweep (cached; one job for every batch size)."""
    seconds = check(request)
    return runner.obtain(
        ("batch_sweep", request),
        lambda cancel, progress: bs.train_sweep(request, progress, cancel),
        f"Training {len(request.sizes)} batch sizes",
        seconds,
        LOWER,
    )


def noise(request: bs.BatchSweep, result: bs.SweepResult) -> pd.DataFrame | None:
    """Returns the noise scale along training of the reference batch's best runs (cached), or
    None when it would cost more than the cap."""
    seconds = bs.noise_estimate(request, NOISE_POINTS)
    if seconds > runner.COST_CAP_S:
        return None
    return runner.obtain(
        ("batch_noise", request),
        lambda cancel, progress: bs.noise_along_training(
            result.reference, result.trajectories, NOISE_POINTS
        ),
        "Measuring the gradient noise scale along training",
        seconds,
        "epochs or seeds",
    )
