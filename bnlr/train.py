"""``train``: run an experiment on either engine and return tidy pandas tables.

The history table has one row per run × epoch × split; the steps table one row per run ×
optimizer step (the lr and momentum / beta1 in effect). Progress leaves through
``progress(done, total)`` in run-epochs; ``cancel()`` returning True stops between epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from .batched import train_batched
from .config import Experiment, Grid
from .data import make_data
from .history import RunHistory
from .reference import train_reference

ENGINES = {"batched": train_batched, "reference": train_reference}


@dataclass(frozen=True)
class Result:
    """What ``train`` returns: tidy per-epoch losses and per-step learning rates."""

    history: pd.DataFrame  # run settings + epoch (1-based), split, loss, epoch_lr, diverged
    steps: pd.DataFrame  # run, epoch, step (1-based over the run), lr, momentum (, loss)
    runs: pd.DataFrame  # one row per run: its settings and diverged_epoch
    parameters: dict[int, np.ndarray] | None = None  # run → (E + 1, P), if recorded


def train(
    experiment: Experiment | Grid,
    engine: str = "batched",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    record_parameters: bool = False,
    record_step_losses: bool = False,
) -> Result:
    """Returns the tidy results of every run in ``experiment`` (a Grid is expanded first).

    Args:
        experiment: the runs, data, epochs, batch size and dtype.
        engine: ``batched`` (fast, all runs of a shape at once) or ``reference`` (one plain loop
            per run).
        progress: called as ``progress(done, total)`` in run-epochs.
        cancel: polled between epochs; when it returns True, ``bnlr.Cancelled`` is raised.
        record_parameters: keep every run's parameters at init and after each epoch
            (``Result.parameters``, in ``bnlr.models.layout`` order; NaN after divergence).
        record_step_losses: add each step's batch MSE, before the step, to ``Result.steps``
            (column ``loss``; the batched engine takes its torch path for it).

    >>> from bnlr import Grid
    >>> r = train(Grid(depths=(3,), bns=("none",), lrs=(0.01,), epochs=2))
    >>> list(r.history.columns[:4]), len(r.history)
    (['run', 'arch', 'depth', 'width'], 4)
    """
    if isinstance(experiment, Grid):
        experiment = experiment.experiment
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; accepted: {', '.join(ENGINES)}")
    data = make_data(experiment.data, getattr(torch, experiment.dtype))
    total, done = len(experiment.runs) * experiment.epochs, 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None and n:
            progress(done, total)

    hists = ENGINES[engine](experiment, data, tick, cancel, record_parameters, record_step_losses)
    result = _tables(experiment, hists)
    if record_parameters:
        return replace(result, parameters={i: h.parameters for i, h in enumerate(hists)})
    return result


def _tables(exp: Experiment, hists: list[RunHistory]) -> Result:
    runs = pd.DataFrame(
        {
            "run": np.arange(len(hists)),
            "arch": [r.model.label for r in exp.runs],
            "depth": [r.model.depth for r in exp.runs],
            "width": [r.model.widths[0] for r in exp.runs],
            "activation": [r.model.activation for r in exp.runs],
            "bn": [r.model.bn for r in exp.runs],
            "bn_momentum": [r.model.bn_momentum for r in exp.runs],
            "optimizer": [r.optimizer.label for r in exp.runs],
            "schedule": [r.schedule for r in exp.runs],
            "lr": [r.lr for r in exp.runs],
            "seed": [r.seed for r in exp.runs],
            "diverged_epoch": [h.diverged_epoch for h in hists],
        }
    )
    E, S = exp.epochs, exp.steps_per_epoch
    R = len(hists)
    epochs = np.arange(1, E + 1)
    # Rows ordered by run, split ("test" before "train"), epoch; each run's settings repeated
    # (taken column by column: one DataFrame built once is several times faster than adding
    # columns to a taken frame).
    rows = np.repeat(np.arange(R), 2 * E)
    diverged = np.stack([epochs >= (h.diverged_epoch or E + 1) for h in hists])
    history = pd.DataFrame(
        {
            **{c: runs[c].array.take(rows) for c in runs.columns if c != "diverged_epoch"},
            "epoch": np.tile(epochs, 2 * R),
            "split": pd.array(["test", "train"], dtype="str").take(
                np.tile(np.repeat([0, 1], E), R)
            ),
            "loss": np.stack([np.concatenate([h.test, h.train]) for h in hists]).ravel(),
            "epoch_lr": np.tile(np.stack([h.step_lr[:, 0] for h in hists]), 2).ravel(),
            "diverged": np.tile(diverged, 2).ravel(),
        },
        copy=False,
    )
    steps = pd.DataFrame(
        {
            "run": np.repeat(np.arange(R), E * S),
            "epoch": np.tile(np.repeat(epochs, S), R),
            "step": np.tile(np.arange(1, E * S + 1), R),
            "lr": np.stack([h.step_lr.ravel() for h in hists]).ravel(),
            "momentum": np.stack([h.step_momentum.ravel() for h in hists]).ravel(),
        },
        copy=False,
    )
    if hists[0].step_loss is not None:
        steps["loss"] = np.stack([h.step_loss.ravel() for h in hists]).ravel()
    return Result(history, steps, runs)
