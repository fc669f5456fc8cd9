"""What the pages call to get results: capped, queued, cached, shared between sessions.

- **The cap is on cost** (``bnlr.cost``): a request is estimated in seconds on this server
  before anything trains, and refused above ``COST_CAP_S`` with a message naming the controls to
  lower; its result must also stay under ``RESULT_CAP_BYTES``.
- **The queue** (``ui.jobs``): at most ``QUEUE.slots`` trainings at once; sessions asking for
  the same settings wait for the same job, and a job nobody waits for is cancelled.
- **The cache** (``ui.cache``): results shared by every session, bounded in entries and bytes.
- **Waiting** is drawn here: the place in the queue, then a progress bar.

Importing this module changes nothing in the process: ``ui.server.start`` does that, once.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Hashable

import pandas as pd
import streamlit as st

import bnlr
import bnlr.article
import bnlr.metrics
from bnlr import claims, cost, host, lrfinder
from ui.admission import ADMISSION
from ui.cache import MISSING, ResultCache
from ui.jobs import Job, JobQueue

COST_CAP_S = 5.0  # estimated seconds per request (bnlr.cost, scaled to this host)
RESULT_CAP_BYTES = 32 * 2**20  # one request's result (tables) at most: what the cache can hold
POLL_S = 0.2  # how often a waiting page looks at its job (and lets Streamlit interrupt it)

CACHE = ResultCache(entries=24, max_bytes=32 * 2**20)
CPUS = host.usable_cpus()


def training_slots(usable: int) -> int:
    """Trainings at once: ``BNLR_TRAINING_SLOTS``, or one per usable CPU (affinity ∩ cgroup
    quota) and two at least. Heavy jobs take all slots but one (``ui.jobs``), so with two a
    default page's light training runs beside a heavy link's even on one core, or a fraction of
    one, instead of after it (the OS shares the core; the budget counts the share)."""
    return int(os.environ.get("BNLR_TRAINING_SLOTS", "0")) or max(2, usable)


SLOTS = training_slots(CPUS.usable)


WALL_FACTOR = 3.0  # the wall-clock backstop: this many times the cap, over the job's share


def budget(job: Job) -> tuple[float, float]:
    """Returns the (CPU, wall) seconds a capped job may run: the cap in CPU seconds of its own
    thread, and as a backstop WALL_FACTOR × the cap over the share of a core it gets (the CPUs,
    or the cgroup's quota, shared by the jobs running beside it). Past either, it is stopped at
    its next epoch, whatever its estimate said."""
    cpus = CPUS.quota if CPUS.quota is not None else CPUS.affinity
    share = min(1.0, cpus / (len(job.queue.running) + 1))
    return COST_CAP_S, WALL_FACTOR * COST_CAP_S / share


QUEUE = JobQueue(slots=SLOTS, heavy_s=1.0, grace_s=0.5, store=CACHE.put, budget=budget)
DRAWN = threading.Event()  # set by every page's request for a result (ui.server's janitor)


# ---------------------------------------------------------------- the cost cap


def estimate(
    experiment: bnlr.Experiment | cost.Shape, range_test_batches: int = 0, factor: float = 1.0
) -> float:
    """Returns the estimated seconds of a page's request (``bnlr.cost.page_estimate``)."""
    return cost.page_estimate(experiment, range_test_batches, factor)


def precheck(factor: float = 1.0, **grid_kwargs) -> None:
    """check_cost for ``bnlr.Grid(**grid_kwargs)`` before it is built (building one steps every
    schedule over the whole run: a cost too, capped here first)."""
    check_cost(cost.grid_shape(**grid_kwargs), factor=factor)


def check_cost(
    experiment: bnlr.Experiment | cost.Shape, range_test_batches: int = 0, factor: float = 1.0
) -> None:
    """Raises ValueError, naming the cap and the controls to lower, when a request is over it."""
    seconds = estimate(experiment, range_test_batches, factor)
    if seconds > COST_CAP_S:
        lower = cost.lower_what(experiment, range_test_batches)
        raise ValueError(cost.Refusal(seconds, COST_CAP_S, lower).message())
    size = cost.result_bytes(experiment)
    if size > RESULT_CAP_BYTES:
        raise ValueError(
            f"this setting would keep about {size / 2**20:.0f} MB of results (one row per run "
            f"and optimizer step); the demo allows {RESULT_CAP_BYTES / 2**20:.0f} MB per "
            "request. Lower epochs, samples, learning rates or seeds, or raise the batch size."
        )


def cache_bytes() -> int:
    """Returns the bytes the results cache holds now."""
    return CACHE.bytes()


def peek(key: Hashable):
    """Returns the cached value for ``key``, or None (nothing is computed or waited for)."""
    value = CACHE.get(key)
    return None if value is MISSING else value


def forget(key: Hashable) -> None:
    """Drops ``key``'s value from the cache (what its page no longer reads)."""
    CACHE.drop(key)


def clear_cache() -> None:
    """Empties the results cache (tests and benches; jobs already running finish)."""
    CACHE.clear()


# ---------------------------------------------------------------- waiting for a job


def _trainings(n: int) -> str:
    return f"{n} training{'s' * (n != 1)}"


def show(box, job: Job) -> None:
    """Draws the job's place in the queue, or its progress (a Streamlit call: a yield point)."""
    ahead, (done, total) = QUEUE.ahead(job), job.progress
    if not job.started:
        box.progress(
            0.0,
            text=f"{job.label}: waiting for a free slot, {_trainings(ahead)} ahead "
            f"of yours ({QUEUE.slots} at once on this server)",
        )
    else:
        box.progress(min(1.0, done / max(total, 1)), text=f"{job.label}: {done}/{total} run-epochs")


def obtain(
    key: Hashable,
    fn: Callable,
    label: str = "Training",
    seconds: float = 0.0,
    lower: str = "",
    capped: bool = True,
    background: bool = False,
):
    """Returns the value of ``fn(cancel, progress)`` for ``key``: from the cache, or by waiting
    (with a progress bar, or the queue position) for the job that computes it. A capped job
    that runs past its budget (``budget``) is stopped: ValueError, naming ``lower``, the
    controls to lower."""
    DRAWN.set()
    while True:
        with QUEUE.lock:  # (the queue stores a finished job's value under this lock)
            value = CACHE.get(key)
            if value is not MISSING:
                return value
            job = QUEUE.enqueue(
                key, fn, label, seconds=seconds, capped=capped, background=background
            )
            ahead = QUEUE.ahead(job)
        box = st.empty()
        try:
            with ADMISSION.aside():  # another visitor's page is built meanwhile
                while not job.done.wait(POLL_S):
                    show(box, job)
        except BaseException:  # the script was stopped or rerun: this session no longer waits
            QUEUE.leave(job)
            raise
        QUEUE.leave(job)
        box.empty()
        if isinstance(job.error, bnlr.Cancelled) and job.overran:
            raise ValueError(
                f"this setting ran past its time on this server (the cap is {COST_CAP_S:g} s "
                f"of CPU per request; it was estimated at {seconds:.1f} s) and was stopped "
                f"after {time.monotonic() - job.began:.1f} s. Lower "
                f"{lower or 'epochs, samples, learning rates or seeds'}."
            )
        if isinstance(job.error, bnlr.Cancelled):
            continue  # cancelled as this session arrived: ask again
        if job.error is not None:
            raise job.error
        if ahead:
            st.caption(
                f"⏳ Queued: {_trainings(ahead)} ahead of yours when you asked (at most "
                f"{QUEUE.slots} train at once on this server, first come first served)."
            )
        return job.value


# ---------------------------------------------------------------- what the pages call


def run(
    experiment: bnlr.Experiment, label: str = "Training", factor: float = 1.0, steps: bool = False
) -> bnlr.Result:
    """Returns the trained result, from the cache when these settings ran before. Its per-step
    table (``Result.steps``) is kept only with ``steps=True``: it is one row per run and
    optimizer step, most of a result's bytes, and only the playground's ReduceLROnPlateau
    curves read it."""
    check_cost(experiment, factor=factor)

    def train(cancel, progress):
        result = bnlr.train(experiment, progress=progress, cancel=cancel)
        return result if steps else _without_steps(result)

    seconds, lower = estimate(experiment, factor=factor), cost.lower_what(experiment)
    return obtain(("train", experiment, steps), train, label, seconds, lower)


def _without_steps(result: bnlr.Result) -> bnlr.Result:
    """The result with an empty per-step table (same columns)."""
    return dataclasses.replace(result, steps=result.steps.iloc[:0].copy())


def sweep_and_range_test(
    experiment: bnlr.Experiment, num_it: int
) -> tuple[bnlr.Result, pd.DataFrame]:
    """Returns the trained sweep and the LR range test of each of its networks (one job)."""
    check_cost(experiment, num_it)

    def both(cancel, progress):
        result = _without_steps(bnlr.train(experiment, progress=progress, cancel=cancel))
        return result, lrfinder.range_test(experiment, lrfinder.RangeTest(num_it=num_it), cancel)

    seconds, lower = estimate(experiment, num_it), cost.lower_what(experiment, num_it)
    return obtain(("sweep", experiment, num_it), both, "Sweeping the learning rate", seconds, lower)


def replication_cost(grid: bnlr.Grid, count: int = claims.REPLICATION_SEEDS) -> float:
    """Returns the estimated seconds of the ``count``-seed replication of ``grid``."""
    return estimate(claims.replicate(grid, count).experiment)


def replication(
    grid: bnlr.Grid, count: int = claims.REPLICATION_SEEDS
) -> tuple[bnlr.Result | None, str]:
    """Returns the same experiment over ``count`` seeds from 929 (cached), or None and why not.

    Trained after the page's own runs, so the figure is on screen while the seeds train. The
    page's two trainings together stay under the cap: the replication is left out otherwise.
    """
    replica = claims.replicate(grid, count).experiment
    figure, extra = estimate(grid.experiment), estimate(replica)
    if figure + extra > COST_CAP_S or cost.result_bytes(replica) > RESULT_CAP_BYTES:
        return None, (
            f"the {count}-seed replication of this setting would take about {extra:.1f} s of "
            f"training more (this page's cap is {COST_CAP_S:g} s per request, "
            f"{figure:.1f} s already go to the figure); lower the learning rates, depths, "
            "epochs or samples to see it"
        )
    return run(replica, label=f"Training over {count} seeds"), ""
