"""Cached, capped training for the pages: one place that turns a config into results on screen.

``run(experiment)`` checks the work cap, trains through ``st.cache_data`` (keyed on the frozen
config, bounded ``max_entries``, shared by every session of the server) and shows a progress bar
while it trains. A second visit with the same settings is served from the cache.
"""

from __future__ import annotations

import streamlit as st
import torch

import bnlr

# These networks are tiny: intra-op threads buy nothing, and on a busy 2-core server their
# spin-waiting made training ~50x slower (measured: 93 s vs 1.8 s for the default grid).
torch.set_num_threads(1)

WORK_CAP = (
    12_000_000  # runs × epochs × training samples in one request (a public demo must stay up)
)
CACHE_ENTRIES = 24  # trained results kept per server


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _train(
    experiment: bnlr.Experiment, engine: str = "batched", _label: str = "Training"
) -> bnlr.Result:
    # The bar is made in here: st.cache_data replays the elements a cached function drew, and
    # fails on a hit if they were drawn into a block made outside it (CacheReplayClosureError).
    # Updates are throttled to ~20 so the replay on a hit stays cheap; the bar ends emptied.
    bar, shown = st.progress(0.0, text=f"{_label}…"), [-1]

    def progress(done: int, total: int) -> None:
        if done * 20 // total > shown[0]:
            shown[0] = done * 20 // total
            bar.progress(done / total, text=f"{_label}: {done}/{total} run-epochs")

    try:
        return bnlr.train(experiment, engine=engine, progress=progress)
    finally:
        bar.empty()


def check_work(experiment: bnlr.Experiment) -> None:
    """Raises ValueError when the experiment is larger than one request may be."""
    if experiment.work > WORK_CAP:
        raise ValueError(
            f"this setting asks for {experiment.work:,} sample-steps ({len(experiment.runs)} runs × "
            f"{experiment.epochs} epochs × {experiment.data.n_train} samples); the demo allows "
            f"{WORK_CAP:,}. Use fewer learning rates, seeds, epochs or samples."
        )


def run(experiment: bnlr.Experiment, label: str = "Training") -> bnlr.Result:
    """Returns the trained result, from the cache when these settings ran before."""
    check_work(experiment)
    return _train(experiment, "batched", _label=label)
