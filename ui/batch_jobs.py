"""What the batch-size page asks the runner for: the sweep over batch sizes (one job), then the
noise scale along training (a second job, so the heat map is drawn while it runs). Both capped
by cost (``bnlr.batch_size.estimate``) like every request, and cached like every result."""

from __future__ import annotations

import pandas as pd

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
