"""What Home asks the runner for: the article's three claims judged over 20 seeds, a job each,
trained once per server (the server starts them in the background as it starts) and shared."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import NamedTuple

import pandas as pd

import bnlr
import bnlr.article
import bnlr.metrics
from bnlr import claims
from ui import runner
from ui.cache import MISSING

CLAIM_SEEDS_AT_ONCE = 5  # the claims train this many seeds at a time


class Judged(NamedTuple):
    """One claim judged: the verdict, and the effect per seed it was judged from."""

    verdict: claims.Verdict
    effects: pd.Series


def _claim_job(claim: int, seeds: int) -> tuple[Hashable, Callable, str, float]:
    """Returns (key, fn, label, estimate) of the job judging one of the article's claims (1, 2
    or 3) over ``seeds`` seeds. Only the verdict and its effects (``Judged``) are kept: the runs'
    tables (hundreds of MB with their per-step lr) are dropped once judged."""
    grid, seconds = _grid(claim, seeds)

    def judge(cancel, progress):
        # a few seeds at a time, keeping only each run's metrics: the peak stays that of a few
        # hundred runs (freed memory is not always given back to the system)
        total = len(grid.experiment.runs) * grid.epochs
        parts, done = [], 0
        for start in range(0, len(grid.seeds), CLAIM_SEEDS_AT_ONCE):
            chunk = replace(grid, seeds=grid.seeds[start : start + CLAIM_SEEDS_AT_ONCE])
            result = bnlr.train(
                chunk, cancel=cancel, progress=lambda d, t, base=done: progress(base + d, total)
            )
            parts.append(bnlr.metrics.run_metrics(result.history))
            done += len(chunk.experiment.runs) * chunk.epochs
        effects = claims.claim_effects(claim, pd.concat(parts, ignore_index=True))
        return Judged(claims.verdict(claim, effects), effects)

    label = f"Judging the article's claim {claim} over {seeds} seeds"
    return ("claim", claim, seeds), judge, label, seconds


@functools.lru_cache(maxsize=8)
def _grid(claim: int, seeds: int) -> tuple[bnlr.Grid, float]:
    """The article's setup for one claim over ``seeds`` seeds, and its estimate: built once
    (Home asks on every rerun; building the grids steps every schedule)."""
    runs = claims.claim_runs(claims.seeds_from(bnlr.article.SEED, seeds))
    grid = (runs.sensitivity, runs.curve, runs.schedules)[claim - 1]
    return grid, runner.estimate(grid.experiment)


CLAIMS = (1, 2, 3)


def article_claim(claim: int, seeds: int = claims.REPLICATION_SEEDS) -> Judged:
    """Returns one of the article's claims judged over ``seeds`` seeds (a cached job): Home
    fills each claim's card as its verdict comes.

    A fixed request (no control changes it), so it is not capped; the server judges the claims
    in the background at start-up (``warm_claims``), and a visitor who comes first waits for
    that job. It is a background job either way: no slot, and never ahead of another page's
    training (nor of the kernels compiling while no training runs).
    """
    key, judge, label, seconds = _claim_job(claim, seeds)
    return runner.obtain(key, judge, label, seconds, capped=False, background=True)


def warm_claims(seeds: int = claims.REPLICATION_SEEDS) -> threading.Thread:
    """Judges the article's claims one after the other, each as a background job (no slot,
    paused whenever a visitor's training runs or waits: ``ui.jobs``), from a thread of its own;
    their verdicts land in the cache. A visitor asking for a claim meanwhile shares its job."""

    def one_by_one():
        for claim in CLAIMS:
            key, judge, label, seconds = _claim_job(claim, seeds)
            with runner.QUEUE.lock:
                if runner.CACHE.get(key) is not MISSING:
                    continue
                job = runner.QUEUE.enqueue(
                    key, judge, label, waiters=0, seconds=seconds, background=True
                )
            job.done.wait()

    thread = threading.Thread(target=one_by_one, name="bnlr-claims", daemon=True)
    thread.start()
    return thread
