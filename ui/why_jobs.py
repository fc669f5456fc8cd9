"""What the Why page and the LR curve's curvature ask the runner for: the runs with their twins
and exact Hessians, the curvature at init, gradient descent past the wall, and warmup. Capped by
cost like every request (the Hessians' estimates in ``bnlr.cost``) and cached like every result.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

import bnlr
from bnlr import cost, why
from ui import runner

SHARPNESS_CAP_S = 1.5  # the LR curve page's curvature at init, at most (an extra, not the page)


def physics_estimate(experiment: bnlr.Experiment, measured: int | None = None) -> float:
    """Returns the estimated seconds of the Why page (``bnlr.cost.physics_estimate``, its
    Hessians on every usable CPU); ``measured``: of a preview's Hessians only."""
    from bnlr import sharpness  # numba: imported here, where the Hessians are asked for

    return cost.physics_estimate(experiment, sharpness.THREADS, measured)


def physics(
    experiment: bnlr.Experiment, preview: Callable[[why.WhyReport], None] | None = None
) -> why.WhyReport:
    """Returns ``bnlr.why``'s measurements of the runs (trained with their twins; cached).

    Unless they are cached, ``preview`` is first called with a coarse report (``why.preview``:
    the curvature after a few epochs, a fraction of the Hessians), which the page draws while
    the rest are measured; the whole report then goes on from it."""
    seconds = physics_estimate(experiment)
    # the Hessians: one per run and epoch, ∝ samples · parameters²
    lower = cost.lower_what(experiment, 0, also=("epochs", "samples", "seeds", "learning rates"))
    if seconds > runner.COST_CAP_S:
        refusal = cost.Refusal(seconds, runner.COST_CAP_S, lower)
        raise ValueError(refusal.message(work="training and exact Hessians"))
    key, first_key = ("physics", experiment), ("physics_preview", experiment)
    if preview is not None and runner.peek(key) is None:
        measured = len(why.preview_epochs(experiment.epochs))
        first = runner.obtain(
            first_key,
            lambda cancel, progress: why.preview(experiment, progress=progress, cancel=cancel),
            "Training the runs and their twins, then a first few Hessians",
            physics_estimate(experiment, measured),
            lower,
        )
        preview(first.report)
    after = runner.peek(first_key)  # a preview measured already: the rest goes on from it
    report = runner.obtain(
        key,
        lambda cancel, progress: why.run_physics(
            experiment, progress=progress, cancel=cancel, after=after
        ),
        "Training the runs and their twins, then their Hessians"
        if after is None
        else "Measuring the curvature after every epoch (exact Hessians)",
        seconds,
        lower,
    )
    runner.forget(first_key)  # its runs and Hessians live on in the report
    return report


def initial_sharpness_estimate(experiment: bnlr.Experiment) -> float:
    """Seconds of ``why.initial_sharpness`` (``bnlr.cost.initial_sharpness_estimate``)."""
    return cost.initial_sharpness_estimate(experiment)


def initial_sharpness(experiment: bnlr.Experiment) -> pd.DataFrame | None:
    """Returns ``why.initial_sharpness`` of the experiment's networks and seeds (cached), or
    None when its exact Hessians would cost more than ``SHARPNESS_CAP_S`` (wide networks: the
    Hessian grows with the square of the parameters)."""
    if initial_sharpness_estimate(experiment) > SHARPNESS_CAP_S:
        return None
    return runner.obtain(
        ("initial_sharpness", experiment),
        lambda cancel, progress: why.initial_sharpness(experiment),
        "Curvature at init (exact Hessians)",
    )


# ---------------------------------------------------------------- past the wall (bnlr.edge)

PAST_STEPS, PAST_EVERY = 100, 50  # the Why page's gradient descent: steps, λ_max every k steps


def past_estimate(past) -> float:
    """Returns the estimated seconds of ``bnlr.edge.report(past)`` (Hessians on every core)."""
    from bnlr import sharpness  # numba: imported here, where the Hessians are asked for

    return cost.past_estimate(past, sharpness.THREADS)


def past_the_wall(past):
    """Returns ``bnlr.edge.report(past)`` (its own cached job, so the page's first charts are not
    kept waiting); ValueError over the cap, naming what to lower."""
    from bnlr import edge

    seconds = past_estimate(past)
    lower = "the seeds of this section, depths, activations or BN placements"
    if seconds > runner.COST_CAP_S:
        refusal = cost.Refusal(seconds, runner.COST_CAP_S, lower)
        raise ValueError(
            refusal.message("past the wall", work="gradient descent and exact Hessians")
        )
    return runner.obtain(
        ("past", past),
        lambda cancel, progress: edge.report(past, cancel),
        "Gradient descent past the wall (exact Hessians)",
        seconds,
        lower,
    )


def warmup(grid: bnlr.Grid) -> pd.DataFrame:
    """Returns ``bnlr.edge.warmup_table`` of ``grid`` (a ``warmup_grid``): a fixed request, trained
    once per server and shared (not capped, as the Home page's claims)."""
    from bnlr import edge

    def table(cancel, progress):
        result = bnlr.train(grid, progress=progress, cancel=cancel)
        return edge.warmup_table(result, steps_per_epoch=grid.experiment.steps_per_epoch)

    seconds = runner.estimate(grid.experiment)
    label = "Training over warmup lengths"
    return runner.obtain(("warmup", grid), table, label, seconds, capped=False, background=True)


def wall_band(experiment: bnlr.Experiment) -> pd.DataFrame | None:
    """Returns per network of the LR curve how far full-batch gradient descent trains past 2/λ₀
    (``bnlr.edge.band`` of losses alone, no Hessian but λ₀), or None when that would cost more
    than ``SHARPNESS_CAP_S``."""
    from bnlr import edge

    models = tuple(dict.fromkeys(r.model for r in experiment.runs))
    seeds = tuple(dict.fromkeys(r.seed for r in experiment.runs))
    past = edge.Past(models, seeds, steps=PAST_STEPS, every=0, data=experiment.data)
    if past_estimate(past) > SHARPNESS_CAP_S:
        return None
    return runner.obtain(
        ("wall_band", past),
        lambda cancel, progress: edge.band(edge.report(past, cancel).largest),
        "Gradient descent past 2/λ₀",
    )
