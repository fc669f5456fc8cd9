"""Cached, capped training for the pages: one place that turns a config into results on screen.

``run(experiment)`` and ``sweep_and_range_test(experiment, num_it)`` check the work cap, train
through ``st.cache_data`` (keyed on the frozen config, bounded ``max_entries``, shared by every
session of the server) and show a progress bar while they train. A second visit with the same
settings is served from the cache.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

import bnlr
import bnlr.article
from bnlr import claims, lrfinder, why

# These networks are tiny: intra-op threads buy nothing, and on a busy 2-core server their
# spin-waiting made training ~50x slower (measured: 93 s vs 1.8 s for the default grid).
torch.set_num_threads(1)

WORK_CAP = 12_000_000  # sample-steps in one request (a public demo must stay up)
CACHE_ENTRIES = 24  # trained results kept per server


def work(experiment: bnlr.Experiment, range_test_batches: int = 0) -> int:
    """Returns the sample-steps a request trains: runs × epochs × training samples, plus the
    range test's batches × batch size for each network and seed."""
    networks = len({(r.model, r.optimizer, r.seed) for r in experiment.runs})
    return experiment.work + networks * range_test_batches * experiment.batch_size


def check_work(experiment: bnlr.Experiment, range_test_batches: int = 0) -> None:
    """Raises ValueError when the experiment is larger than one request may be."""
    asked = work(experiment, range_test_batches)
    if asked > WORK_CAP:
        raise ValueError(
            f"this setting asks for {asked:,} sample-steps ({len(experiment.runs)} runs × "
            f"{experiment.epochs} epochs × {experiment.data.n_train} samples"
            + (" + the range test" if range_test_batches else "")
            + f"); the demo allows {WORK_CAP:,}. "
            "Use fewer learning rates, seeds, epochs or samples."
        )


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _train(experiment: bnlr.Experiment, _label: str = "Training") -> bnlr.Result:
    # The bar is made in here: st.cache_data replays the elements a cached function drew, and
    # fails on a hit if they were drawn into a block made outside it (CacheReplayClosureError).
    # Updates are throttled to ~20 so the replay on a hit stays cheap; the bar ends emptied.
    bar, shown = st.progress(0.0, text=f"{_label}…"), [-1]

    def progress(done: int, total: int) -> None:
        if done * 20 // total > shown[0]:
            shown[0] = done * 20 // total
            bar.progress(done / total, text=f"{_label}: {done}/{total} run-epochs")

    try:
        return bnlr.train(experiment, progress=progress)
    finally:
        bar.empty()


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner="Running the LR range test…")
def _range_test(experiment: bnlr.Experiment, num_it: int) -> pd.DataFrame:
    return lrfinder.range_test(experiment, lrfinder.RangeTest(num_it=num_it))


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner="Curvature at init (exact Hessians)…")
def initial_sharpness(experiment: bnlr.Experiment) -> pd.DataFrame:
    """Returns ``why.initial_sharpness`` of the experiment's networks and seeds (cached)."""
    return why.initial_sharpness(experiment)


def run(experiment: bnlr.Experiment, label: str = "Training") -> bnlr.Result:
    """Returns the trained result, from the cache when these settings ran before."""
    check_work(experiment)
    return _train(experiment, _label=label)


def sweep_and_range_test(
    experiment: bnlr.Experiment, num_it: int
) -> tuple[bnlr.Result, pd.DataFrame]:
    """Returns the trained sweep and the LR range test of each of its networks (both cached)."""
    check_work(experiment, num_it)
    return _train(experiment, _label="Sweeping the learning rate"), _range_test(experiment, num_it)


def replication(
    grid: bnlr.Grid, count: int = claims.REPLICATION_SEEDS
) -> tuple[bnlr.Result | None, str]:
    """Returns the same experiment over ``count`` seeds from 929 (cached), or None and why not.

    Trained after the page's own runs, so the figure is on screen while the seeds train; with
    the same seeds it is the very same cache entry.
    """
    replica = claims.replicate(grid, count)
    try:
        check_work(replica.experiment)
    except ValueError:
        asked = f"{work(replica.experiment):,}"
        return None, (
            f"the {count}-seed replication of this setting would train {asked} sample-steps, over "
            f"the demo's {WORK_CAP:,}; lower the learning rates, depths or epochs to see it"
        )
    return _train(replica.experiment, _label=f"Training over {count} seeds"), ""


def article_claims(seeds: int = claims.REPLICATION_SEEDS) -> dict:
    """Returns the verdict on each article claim over ``seeds`` seeds (cached trainings)."""
    runs = claims.claim_runs(claims.seeds_from(bnlr.article.SEED, seeds))
    label = f"Judging the article's claims over {seeds} seeds"
    results = {
        1: _train(runs.sensitivity.experiment, _label=label + " (1/3)"),
        2: _train(runs.curve.experiment, _label=label + " (2/3)"),
        3: _train(runs.schedules.experiment, _label=label + " (3/3)"),
    }
    return claims.judge_claims(results)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _physics(experiment: bnlr.Experiment) -> why.WhyReport:
    bar = st.progress(0.0, text="Training the runs and their twins…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Training the runs and their twins: {done}/{total}")

    try:
        with st.spinner("Sharpness: the exact Hessian of every run after every epoch…"):
            return why.run_physics(experiment, progress=progress)
    finally:
        bar.empty()


def physics(experiment: bnlr.Experiment) -> why.WhyReport:
    """Returns ``bnlr.why``'s measurements of the runs (trained with their twins; cached)."""
    check_work(why.with_twins(experiment))
    return _physics(experiment)
