"""What Home asks the runner for: the article's three claims judged over 20 seeds, one job,
trained once per server (the server starts it in the background as it starts) and shared."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import replace

import pandas as pd

import bnlr
import bnlr.article
import bnlr.metrics
from bnlr import claims
from ui import runner
from ui.cache import MISSING

CLAIM_SEEDS_AT_ONCE = 5  # the claims train this many seeds at a time


def _claims_job(seeds: int) -> tuple[Hashable, Callable, str, float]:
    """Returns (key, fn, label, estimate) of the job judging the article's claims over ``seeds``
    seeds. Only the verdicts are kept: the 1760 runs' tables (hundreds of MB with their per-step
    lr) are dropped once judged."""
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

    seconds = sum(runner.estimate(g.experiment) for g in grids)
    label = f"Judging the article's claims over {seeds} seeds"
    return ("claims", seeds), judge, label, seconds


def article_claims(seeds: int = claims.REPLICATION_SEEDS) -> dict:
    """Returns the verdict on each article claim over ``seeds`` seeds (one cached job).

    A fixed request (no control changes it), so it is not capped; the server starts it in the
    background at start-up (``warm_claims``), and a visitor who comes first waits for that job.
    It is a background job either way: no slot, and never ahead of another page's training (nor
    of the kernels compiling while no training runs).
    """
    key, judge, label, seconds = _claims_job(seeds)
    return runner.obtain(key, judge, label, seconds, capped=False, background=True)


def warm_claims(seeds: int = claims.REPLICATION_SEEDS) -> None:
    """Starts judging the article's claims as a background job: no slot, paused whenever a
    visitor's training runs or waits (``ui.jobs``); its verdicts land in the cache."""
    key, judge, label, seconds = _claims_job(seeds)
    with runner.QUEUE.lock:
        if runner.CACHE.get(key) is MISSING:
            runner.QUEUE.enqueue(key, judge, label, waiters=0, seconds=seconds, background=True)
