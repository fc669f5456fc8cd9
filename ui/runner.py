"""Capped, queued, shared training for the pages: the one place that turns a config into results.

- **The cap is on cost** (``bnlr.cost``): a request is estimated in seconds of training on this
  machine before anything trains, and refused above ``COST_CAP_S`` with a message naming the
  controls to lower; its result must also stay under ``RESULT_CAP_BYTES``.
- **At most ``SLOTS`` trainings at once** (the machine's cores, or ``BNLR_TRAINING_SLOTS``), each
  in a worker thread; later requests wait in a first-come queue and the page shows its place
  ("2 trainings ahead of yours"). Heavy requests (over ``HEAVY_S``) take at most SLOTS − 1 slots,
  so a default page never waits behind a row of heavy links.
- **Shared, and stopped when nobody waits**: sessions asking for the same settings wait for the
  same job. A session stops waiting when its script is interrupted — Streamlit raises
  ``RerunException`` / ``StopException`` at the page's next Streamlit call when the visitor
  changes a setting or closes the tab, and the wait loop makes one every ``POLL_S`` — and the job
  counts the sessions still waiting; with none left (for ``GRACE_S``, so that a rerun of the same
  settings attaches again) ``bnlr.train`` is cancelled at its next epoch (``bnlr.Cancelled``).
- **A cache bounded in entries and bytes** (``CACHE_ENTRIES``, ``CACHE_BYTES``), least recently
  used first out, shared by every session of the server.
- **No request waits for a compile**: ``bnlr.fused.BACKGROUND`` is set, so a network shape new
  to the server trains on the batched engine's torch path while its kernel compiles in a
  background thread (a few shapes at most wait for it); the next request of that shape uses the
  kernel, and the cost estimate follows the path. The default pages' shapes are queued at start.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace

import pandas as pd
import streamlit as st
import torch

import bnlr
import bnlr.article
import bnlr.metrics
from bnlr import claims, cost, fused, lrfinder, why
from bnlr.models import layout

# These networks are tiny: intra-op threads buy nothing, and on a busy 2-core server their
# spin-waiting made training ~50x slower (measured: 93 s vs 1.8 s for the default grid).
torch.set_num_threads(1)
fused.BACKGROUND = True

COST_CAP_S = 5.0  # estimated seconds of training per request (bnlr.cost, calibrated here)
RESULT_CAP_BYTES = 32 * 2**20  # one request's result (tables) at most: what the cache can hold
SLOTS = int(os.environ.get("BNLR_TRAINING_SLOTS", "0")) or os.cpu_count() or 1
CACHE_ENTRIES = 24  # trained results kept per server
CACHE_BYTES = 32 * 2**20  # ... and their bytes at most (pandas memory_usage, deep): see README
CLAIM_SEEDS_AT_ONCE = 5  # Home's claims train this many seeds at a time
HEAVY_S = 1.0  # a request estimated above this is heavy: heavy ones leave a slot for the rest
GRACE_S = 0.5  # a job nobody waits for is cancelled after this (a rerun re-attaches within it)
POLL_S = 0.2  # how often a waiting page looks at its job (and lets Streamlit interrupt it)


# ---------------------------------------------------------------- the cost cap


# What a page does besides training (analysis, chart specs; the playground's per-batch lr tables,
# code and optimizer-state panels), as a factor on its training's torch-path estimate (the
# yardstick it was measured against; see ``estimate``): set from the corner walk's measured page
# CPU (bench/cost.py, 2026-11-26 with the fused kernel: the LR curve's range-test and many-seed
# corners and the playground's small-batch corners were 1.2–1.8x over the earlier 1.3 / 1.5).
PAGE_FACTOR = {"lr_sensitivity": 1.0, "lr_curve": 1.45, "schedules": 2.0}


def estimate(
    experiment: bnlr.Experiment | cost.Shape, range_test_batches: int = 0, factor: float = 1.0
) -> float:
    """Returns the estimated seconds of a request: its training (bnlr.cost, on the path each
    group takes), plus the page's own work (analysis, tables, chart specs) as (factor − 1) × the
    training's torch-path estimate, the yardstick it was measured against (the LR curve, with its
    range test, × its own factor)."""
    total = factor * (PAGE_FACTOR["lr_curve"] if range_test_batches else 1.0)
    secs = cost.estimate(experiment, range_test_batches)
    if total > 1:
        secs += (total - 1) * cost.estimate(experiment, range_test_batches, torch_path=True)
    return secs


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


# ---------------------------------------------------------------- jobs, slots and the queue


@dataclass(eq=False)
class Job:
    """One training: who waits for it, where it is, and how it ended."""

    key: Hashable
    fn: Callable  # fn(cancel, progress) -> value
    label: str
    heavy: bool = False
    waiters: int = 0
    left_at: float = 0.0
    started: bool = False
    progress: tuple[int, int] = (0, 1)
    value: object = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        """True once no session has waited for this job for GRACE_S (polled between epochs)."""
        with _lock:
            return self.waiters == 0 and time.monotonic() - self.left_at >= GRACE_S

    def report(self, done: int, total: int) -> None:
        self.progress = (done, total)


_lock = threading.RLock()
_jobs: dict[Hashable, Job] = {}  # not finished: queued or running
_queue: list[Job] = []  # first come, first served
_running: list[Job] = []
_cache: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()  # key → (value, bytes)

_last_job = [0.0]  # when the last training finished (time.monotonic)
QUIET_S = 2.0  # kernels compile only after this long without a training (a page's jobs are done)
fused.IDLE = lambda: not (_running or _queue) and time.monotonic() - _last_job[0] > QUIET_S
# The default pages' network shapes, compiled in the background as the server starts: the
# article's four networks, in float32 (the pages) and float64 (the Why page).
fused.prepare(
    [
        fused.shape_of(
            bnlr.ModelConfig((bnlr.article.WIDTH,) * depth, bnlr.article.ACTIVATION, bn),
            bnlr.DataConfig().n_features,
            bnlr.OptimizerConfig(),
            dtype,
            momentum=False,
        )
        for dtype in ("float32", "float64")
        for depth in bnlr.article.DEPTHS
        for bn in bnlr.article.BNS
    ],
    limit=8,
)


def _nbytes(value) -> int:
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(deep=True).sum())
    if isinstance(value, bnlr.Result):
        return sum(_nbytes(getattr(value, f)) for f in ("history", "steps", "runs"))
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if dataclasses.is_dataclass(value):  # e.g. bnlr.why.WhyReport: its tables
        return sum(_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 1024


def _store(key: Hashable, value) -> None:
    size = _nbytes(value)
    if size > CACHE_BYTES:
        return
    _cache[key] = (value, size)
    while len(_cache) > CACHE_ENTRIES or cache_bytes() > CACHE_BYTES:
        _cache.popitem(last=False)


def cache_bytes() -> int:
    """Returns the bytes the cache holds now."""
    with _lock:
        return sum(size for _, size in _cache.values())


def clear_cache() -> None:
    """Empties the cache (tests and benches; jobs already running finish)."""
    with _lock:
        _cache.clear()


def _ahead(job: Job) -> int:
    """Trainings ahead of a queued job: the running ones and those queued before it."""
    return len(_running) + _queue.index(job) if job in _queue else 0


def _dispatch() -> None:
    """Starts queued jobs, first come first served, while a slot is free (holding _lock).

    Heavy jobs take at most SLOTS − 1 slots (1 on a 1- or 2-core machine), so a light request
    (a default page) never waits behind a row of heavy links: it takes the slot left free.
    """
    for job in list(_queue):
        if len(_running) >= SLOTS:
            return
        if job.waiters == 0:  # everybody left while it was queued: it never starts
            _queue.remove(job)
            _jobs.pop(job.key, None)
            job.error = bnlr.Cancelled()
            job.done.set()
            continue
        if job.heavy and sum(j.heavy for j in _running) >= max(1, SLOTS - 1):
            continue
        _queue.remove(job)
        job.started = True
        _running.append(job)
        threading.Thread(target=_work, args=(job,), name="bnlr-training", daemon=True).start()


def _work(job: Job) -> None:
    value, error = None, None
    try:
        value = job.fn(job.cancelled, job.report)
    except BaseException as e:  # handed to the sessions waiting for it
        error = e
    with _lock:
        _running.remove(job)
        _last_job[0] = time.monotonic()
        _jobs.pop(job.key, None)
        if error is None:
            _store(job.key, value)
        job.value, job.error = value, error
        job.done.set()
        _dispatch()
    _give_back_memory()


def _give_back_memory() -> None:
    """Returns freed heap memory to the system (glibc keeps it otherwise: a training's temporary
    tables raised the server's RSS for good). A no-op where there is no glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()
if _LIBC is not None:
    # Blocks of 128 KB and more are mapped apart and unmapped when freed (glibc's threshold
    # otherwise grows to 32 MB after the first big free, and big temporaries then leave holes
    # in the heap that malloc_trim cannot give back).
    _LIBC.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD

TRIM_S = 3.0  # the janitor gives freed memory back once pages were drawn and then none for this
TRIM_MAX_S = 30.0  # ... or this long after the first page drawn, if pages keep coming
_drawn = threading.Event()  # set by every page's request for a result


def _janitor() -> None:
    """Collects cyclic garbage and gives freed heap memory back when pages were drawn and then
    none for TRIM_S (at most TRIM_MAX_S after the first): between pages, not while one draws.
    A script run leaves reference cycles (frames, Streamlit's rerun exceptions) that hold its
    tables and chart specs until Python's rare full collection; with this, 10 settings of LR
    sensitivity left ~45 MB less resident (bench/memory.py). Costs ~0.15 s of CPU a time."""
    while True:
        _drawn.wait()
        first = time.monotonic()
        while True:
            _drawn.clear()
            time.sleep(TRIM_S)
            if not _drawn.is_set() or time.monotonic() - first > TRIM_MAX_S:
                break
        _drawn.clear()
        gc.collect()
        _give_back_memory()


if _LIBC is not None:
    threading.Thread(target=_janitor, name="bnlr-janitor", daemon=True).start()


def enqueue(
    key: Hashable, fn: Callable, label: str = "Training", waiters: int = 1, seconds: float = 0.0
) -> Job:
    """Returns the job for ``key`` with ``waiters`` more sessions waiting for it: the one already
    queued or running, or a new one at the end of the queue. ``fn(cancel, progress)`` runs in a
    worker thread; a job nobody waits for is dropped from the queue, or cancelled if it runs.
    ``seconds``: its estimated cost (above HEAVY_S it is heavy)."""
    with _lock:
        job = _jobs.get(key)
        if job is None:
            job = _jobs[key] = Job(key, fn, label, heavy=seconds > HEAVY_S)
            _queue.append(job)
        job.waiters += waiters
        _dispatch()
        return job


def state() -> dict:
    """Returns what runs and waits now: {"running": [labels], "queued": [labels]} (benches)."""
    with _lock:
        return {"running": [j.label for j in _running], "queued": [j.label for j in _queue]}


def _show(box, job: Job) -> None:
    """Draws the job's place in the queue, or its progress (a Streamlit call: a yield point)."""
    with _lock:
        ahead, (done, total), started = _ahead(job), job.progress, job.started
    if not started:
        box.progress(
            0.0,
            text=f"{job.label}: waiting for a free slot, {_trainings(ahead)} ahead "
            f"of yours ({SLOTS} at once on this server)",
        )
    else:
        box.progress(min(1.0, done / max(total, 1)), text=f"{job.label}: {done}/{total} run-epochs")


def _trainings(n: int) -> str:
    return f"{n} training{'s' * (n != 1)}"


def obtain(key: Hashable, fn: Callable, label: str = "Training", seconds: float = 0.0):
    """Returns the value of ``fn(cancel, progress)`` for ``key``: from the cache, or by waiting
    (with a progress bar, or the queue position) for the job that computes it."""
    _drawn.set()
    while True:
        with _lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key][0]
            job = enqueue(key, fn, label, seconds=seconds)
            ahead = _ahead(job)
        box = st.empty()
        try:
            while not job.done.wait(POLL_S):
                _show(box, job)
        except BaseException:  # the script was stopped or rerun: this session no longer waits
            _leave(job)
            raise
        _leave(job)
        box.empty()
        if isinstance(job.error, bnlr.Cancelled):
            continue  # cancelled as this session arrived: ask again
        if job.error is not None:
            raise job.error
        if ahead:
            st.caption(
                f"⏳ Queued: {_trainings(ahead)} ahead of yours when you asked (at most "
                f"{SLOTS} train at once on this server, first come first served)."
            )
        return job.value


def _leave(job: Job) -> None:
    with _lock:
        job.waiters -= 1
        if job.waiters == 0:
            job.left_at = time.monotonic()


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

    return obtain(("train", experiment, steps), train, label, estimate(experiment, factor=factor))


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

    return obtain(
        ("sweep", experiment, num_it),
        both,
        "Sweeping the learning rate",
        estimate(experiment, num_it),
    )


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


def article_claims(seeds: int = claims.REPLICATION_SEEDS) -> dict:
    """Returns the verdict on each article claim over ``seeds`` seeds (one cached job).

    A fixed request (no control changes it), so it is not capped; it is trained once per server
    and shared, through the same queue. Only the verdicts are kept: the 1760 runs' tables
    (hundreds of MB with their per-step lr) are dropped once judged.
    """
    runs = claims.claim_runs(claims.seeds_from(bnlr.article.SEED, seeds))
    grids = (runs.sensitivity, runs.curve, runs.schedules)

    def judge(cancel, progress):
        # a few seeds at a time, keeping only each run's metrics: the peak stays that of a few
        # hundred runs (freed memory is not always given back to the system)
        total = sum(len(g.experiment.runs) * g.epochs for g in grids)
        found, done = {}, 0
        for k, grid in enumerate(grids, 1):
            parts = []
            for start in range(0, len(grid.seeds), CLAIM_SEEDS_AT_ONCE):
                chunk = replace(grid, seeds=grid.seeds[start : start + CLAIM_SEEDS_AT_ONCE])
                result = bnlr.train(
                    chunk, cancel=cancel, progress=lambda d, t, base=done: progress(base + d, total)
                )
                parts.append(bnlr.metrics.run_metrics(result.history))
                done += len(chunk.experiment.runs) * chunk.epochs
            found[k] = pd.concat(parts, ignore_index=True)
        return claims.judge_metrics(found)

    seconds = sum(estimate(g.experiment) for g in grids)
    return obtain(
        ("claims", seeds), judge, f"Judging the article's claims over {seeds} seeds", seconds
    )


# ---------------------------------------------------------------- the Why page

# CPU seconds per unit of an exact Hessian's work, N·P·(P + 12·depth·width²) (bnlr.sharpness:
# each of the P directions goes through the layers above its own, ~12·width² flops a layer), per
# BN placement (BN's tangents make a unit dearer). Measured for 3×4 tanh networks, one thread,
# 2026-11-26 (bench/sharpness.py and the same at other N): BN pre 1.01e-10 at N = 700 training
# samples, 1.15e-10 at 3500, 1.79e-10 at 14000, as the samples fall out of the cache, hence
# · (1 + N / HESSIAN_CACHE_N); no BN 0.54e-10 at 700; BN post 0.84e-10 at 700 (4.0 ms, P = 93).
# Its eigenvalues cost ~1e-9·P³ s more.
HESSIAN_UNIT_S = {"none": 0.55e-10, "pre": 1.02e-10, "post": 0.84e-10}
HESSIAN_CACHE_N = 18_000


def hessian_seconds(model: bnlr.ModelConfig, data: bnlr.DataConfig) -> float:
    """Estimated CPU seconds of one exact Hessian of ``model`` over the training split, and of
    its largest eigenvalue."""
    p = sum(math.prod(shape) for _, shape in layout(model, data.n_features))
    width, depth = max(model.widths), len(model.widths)
    unit = HESSIAN_UNIT_S[model.bn] * (1 + data.n_train / HESSIAN_CACHE_N)
    return unit * data.n_train * p * (p + 12 * depth * width**2) + 1e-9 * p**3


WHY_PAGE_S = 1.0  # the Why page's own work besides training and Hessians (its charts and tables)
WHY_ROW_S = 3e-4  # ... and per run and epoch (its measurement tables)


def physics_estimate(experiment: bnlr.Experiment) -> float:
    """Returns the estimated seconds of the Why page: its runs and their twins in float64, an
    exact Hessian per run and epoch, computed on every core at once (bnlr.sharpness), and the
    page's own work. Fitted to the corner walk (bench/cost.py, 2026-11-26): the page's wall time
    is ~0.9 s + the Hessians' CPU / 2.1 on 2 cores, the twins' training a small part."""
    from bnlr import sharpness  # numba: imported here, where the Hessians are asked for

    twins = why.with_twins(replace(experiment, dtype="float64"))
    per_epoch = sum(hessian_seconds(r.model, experiment.data) for r in experiment.runs)
    cores = min(sharpness.THREADS, len(experiment.runs))
    epochs = experiment.epochs + 1  # init and after every epoch
    rows = len(experiment.runs) * epochs
    return estimate(twins) + per_epoch * epochs / cores + WHY_PAGE_S + WHY_ROW_S * rows


def physics(experiment: bnlr.Experiment) -> why.WhyReport:
    """Returns ``bnlr.why``'s measurements of the runs (trained with their twins; cached)."""
    seconds = physics_estimate(experiment)
    if seconds > COST_CAP_S:  # the Hessians: one per run and epoch, ∝ samples · parameters²
        hessians = ("epochs", "samples", "seeds", "learning rates")
        lower = cost.lower_what(experiment, 0, also=hessians)
        refusal = cost.Refusal(seconds, COST_CAP_S, lower)
        raise ValueError(refusal.message(work="training and exact Hessians"))
    return obtain(
        ("physics", experiment),
        lambda cancel, progress: why.run_physics(experiment, progress=progress, cancel=cancel),
        "Training the runs and their twins, then their Hessians",
        seconds,
    )


SHARPNESS_CAP_S = 1.5  # the LR curve page's curvature at init, at most (an extra, not the page)


def initial_sharpness_estimate(experiment: bnlr.Experiment) -> float:
    """Seconds of ``why.initial_sharpness``: an exact Hessian and its eigenvalues per network
    and seed."""
    nets = {(r.model, r.seed) for r in experiment.runs}
    return sum(hessian_seconds(model, experiment.data) for model, _ in nets)


def initial_sharpness(experiment: bnlr.Experiment) -> pd.DataFrame | None:
    """Returns ``why.initial_sharpness`` of the experiment's networks and seeds (cached), or
    None when its exact Hessians would cost more than ``SHARPNESS_CAP_S`` (wide networks: the
    Hessian grows with the square of the parameters)."""
    if initial_sharpness_estimate(experiment) > SHARPNESS_CAP_S:
        return None
    return obtain(
        ("initial_sharpness", experiment),
        lambda cancel, progress: why.initial_sharpness(experiment),
        "Curvature at init (exact Hessians)",
    )
