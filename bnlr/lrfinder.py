"""Smith's LR range test, and the rules that read a learning rate off its curve.

One short run per architecture, the lr rising exponentially at every batch from ``start_lr``
to ``end_lr`` (a real ``torch.optim.lr_scheduler.ExponentialLR`` stepped per batch), on the
same data, initial weights and batch order as the full sweep's runs of that seed. The loss of
each batch is smoothed by an exponential moving average with bias correction; the test stops
once the smoothed loss passes ``stop_factor`` × its best so far (or is not finite).

The suggestion rules are small pure functions of ``(lrs, losses)``, as in fastai's
``callback/schedule.py``: ``steep`` (steepest descent), ``valley`` (the longest valley) and
``minimum`` (the lr of the lowest loss ÷ 10). Sources: L. N. Smith, "Cyclical Learning Rates
for Training Neural Networks" (2017), §3.3; fastai ``LRFinder`` and ``SuggestionMethod``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from .config import Experiment, RunConfig
from .data import Dataset, make_data
from .protocol import torch_run


@dataclass(frozen=True)
class RangeTest:
    """How the lr rises and when the test stops."""

    start_lr: float = 1e-5  # lr of the first batch
    end_lr: float = 10.0  # lr the last batch would have if the test ran all num_it batches
    num_it: int = 100  # batches at most
    beta: float = 0.98  # EMA factor of the smoothed loss (fastai's default)
    stop_factor: float = 4.0  # stop when the smoothed loss passes this × its best

    def __post_init__(self):
        if not (0 < self.start_lr < self.end_lr and math.isfinite(self.end_lr)):
            raise ValueError(
                f"range test needs 0 < start_lr < end_lr, got {self.start_lr!r} … {self.end_lr!r}"
            )
        if (
            isinstance(self.num_it, bool)
            or not isinstance(self.num_it, int)
            or not 10 <= self.num_it <= 2000
        ):
            raise ValueError(f"num_it must be an integer in [10, 2000], got {self.num_it!r}")
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta must lie in [0, 1), got {self.beta!r}")
        if not self.stop_factor > 1:
            raise ValueError(f"stop_factor must be > 1, got {self.stop_factor!r}")

    @property
    def gamma(self) -> float:
        """The per-batch factor of ExponentialLR: start_lr · gamma ** (num_it − 1) = end_lr."""
        return (self.end_lr / self.start_lr) ** (1 / (self.num_it - 1))

    def rising(self, run: RunConfig) -> RunConfig:
        """``run`` with its lr rising from ``start_lr``: an ExponentialLR stepped every batch."""
        return replace(
            run, lr=self.start_lr, schedule=f"exponential:gamma={self.gamma!r},every=batch"
        )


class Smoother:
    """The bias-corrected EMA of a loss, one batch at a time: avg_i / (1 − beta ** (i + 1))."""

    def __init__(self, beta: float = 0.98):
        self.beta, self.avg, self.count = beta, 0.0, 0

    def __call__(self, loss: float) -> float:
        """Returns the smoothed loss after ``loss``."""
        self.count += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        return self.avg / (1 - self.beta**self.count)


class Stopper:
    """Says when the range test stops: a smoothed loss not finite or > stop_factor × its best."""

    def __init__(self, stop_factor: float = 4.0):
        self.stop_factor, self.best = stop_factor, math.inf

    def __call__(self, smoothed: float) -> bool:
        """Returns True if the test stops at this smoothed loss (it is not counted as a best)."""
        if not math.isfinite(smoothed) or smoothed > self.stop_factor * self.best:
            return True
        self.best = min(self.best, smoothed)
        return False


def smooth(losses, beta: float = 0.98) -> np.ndarray:
    """Returns the bias-corrected EMA of ``losses``: avg_i / (1 − beta ** (i + 1)).

    >>> smooth([1.0, 3.0], beta=0.5).tolist()
    [1.0, 2.333333333333333]
    """
    step = Smoother(beta)
    return np.array([step(loss) for loss in np.asarray(losses, dtype=float)])


def stop_index(smoothed, stop_factor: float = 4.0) -> int | None:
    """Returns the first index whose smoothed loss is non-finite or > stop_factor × the prior best.

    >>> stop_index([5.0, 2.0, 3.0, 9.0])
    3
    """
    stops = Stopper(stop_factor)
    return next((i for i, s in enumerate(smoothed) if stops(s)), None)


def steep(lrs, losses) -> float:
    """Returns the lr where the loss falls fastest per unit of log lr (the steepest slope)."""
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def valley(lrs, losses) -> float:
    """Returns the lr about half-way down the longest valley of the loss (fastai's ``valley``).

    The longest valley is the longest strictly decreasing subsequence of the losses, ending at
    ``end``; fastai sets ``start = end − its length`` and picks the index
    ``start + ⌊(end−start)/3⌋ + ⌊(end−start)/6⌋``, about half-way down it. We clamp ``start``
    at 0 (fastai's index would be −1, the last lr, for a valley of two points at the start).
    """
    losses = np.asarray(losses, dtype=float)
    n = len(losses)
    start, end = 0, 0
    run = [1] * n  # run[i]: length of the longest decreasing subsequence ending at i
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
            if run[end] < run[i]:
                end = i
                start = max(0, end - run[end])
    sections = (end - start) / 3
    return float(np.asarray(lrs, dtype=float)[start + int(sections) + int(sections / 2)])


def minimum(lrs, losses) -> float:
    """Returns the lr of the lowest loss divided by 10."""
    return float(
        np.asarray(lrs, dtype=float)[int(np.nanargmin(np.asarray(losses, dtype=float)))] / 10
    )


RULES = {"steep": steep, "valley": valley, "minimum": minimum}


def trim(n: int, num_it: int, skip_end: int = 5) -> slice:
    """Returns the slice of a curve of n points that the rules read.

    fastai skips the first num_it // 10 and the last 5.
    """
    start = num_it // 10
    return slice(start, max(start + 2, n - skip_end))


def run_range_test(
    run: RunConfig,
    experiment: Experiment,
    test: RangeTest = RangeTest(),
    data: Dataset | None = None,
) -> pd.DataFrame:
    """Returns the range test of one run: iteration, lr, loss (of that batch) and smooth_loss.

    The run's protocol (``bnlr.protocol``), with the lr rising: the model starts from the run's
    initial weights and sees the run's batch order, and the schedule is an ``ExponentialLR``
    from ``start_lr`` stepped after every batch (``run.lr`` and ``run.schedule`` are replaced).
    """
    rising = test.rising(run)
    if data is None:  # the experiment's data (range_test makes it once for all its networks)
        data = make_data(experiment.data, getattr(torch, experiment.dtype))
    epochs = math.ceil(test.num_it / experiment.steps_per_epoch)
    r = torch_run(rising, data, epochs, experiment.steps_per_epoch)
    batches = [idx for order in r.order for idx in order.split(experiment.batch_size)]
    loss_fn = nn.MSELoss()
    r.model.train()
    lrs, losses = [], []
    smoother, stops = Smoother(test.beta), Stopper(test.stop_factor)  # as smooth(), stop_index()
    for idx in batches[: test.num_it]:
        lrs.append(r.stepper.lr)
        r.optimizer.zero_grad()
        loss = loss_fn(r.model(data.X_train[idx]), data.y_train[idx])
        loss.backward()
        r.optimizer.step()
        r.stepper.after_batch()
        losses.append(loss.item())
        if stops(smoother(losses[-1])):
            break
    return pd.DataFrame(
        {
            "iteration": np.arange(1, len(losses) + 1),
            "lr": lrs,
            "loss": losses,
            "smooth_loss": smooth(losses, test.beta),
        }
    )


def tests_of(experiment: Experiment, test: RangeTest = RangeTest()) -> Experiment:
    """The range tests of ``experiment`` as one experiment: a rising run (``RangeTest.rising``)
    per network, optimizer and seed, over the epochs that hold ``num_it`` batches."""
    rising = {}
    for run in experiment.runs:
        rising.setdefault((run.model, run.optimizer, run.seed), test.rising(run))
    epochs = math.ceil(test.num_it / experiment.steps_per_epoch)
    return replace(experiment, runs=tuple(rising.values()), epochs=epochs)


def range_test(
    experiment: Experiment,
    test: RangeTest = RangeTest(),
    cancel: Callable[[], bool] | None = None,
    engine: str = "batched",
) -> pd.DataFrame:
    """Returns the range test of every network of ``experiment`` with each of its seeds, tidy.

    Columns: arch, depth, width, activation, bn, optimizer, seed, iteration, lr, loss,
    smooth_loss. All of them train at once as one experiment (``bnlr.train`` on ``engine``,
    recording each batch's loss), each as ``run_range_test`` trains it alone, and are cut where
    that would have stopped. ``cancel()`` is polled between epochs; when it returns True,
    ``bnlr.Cancelled`` is raised.
    """
    from .train import train  # (train imports the engines, which import nothing of this)

    tests = tests_of(experiment, test)
    steps = train(tests, engine, cancel=cancel, record_step_losses=True).steps
    parts = []
    for i, run in enumerate(tests.runs):
        own = steps[steps["run"] == i].iloc[: test.num_it]
        losses = own["loss"].to_numpy()
        smoothed = smooth(losses, test.beta)
        stop = stop_index(smoothed, test.stop_factor)
        n = len(losses) if stop is None else stop + 1
        m = run.model
        parts.append(
            pd.DataFrame(
                {
                    "iteration": np.arange(1, n + 1),
                    "lr": own["lr"].to_numpy()[:n],
                    "loss": losses[:n],
                    "smooth_loss": smoothed[:n],
                    "arch": m.label,
                    "depth": m.depth,
                    "width": m.widths[0],
                    "activation": m.activation,
                    "bn": m.bn,
                    "optimizer": run.optimizer.label,
                    "seed": run.seed,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def suggestions(curves: pd.DataFrame, num_it: int = RangeTest.num_it) -> pd.DataFrame:
    """Returns one row per network, seed and rule: the suggested lr and the smoothed loss there.

    Each rule reads the smoothed curve trimmed as fastai does (``trim``), up to where it stopped.
    """
    rows = []
    for (arch, seed), curve in curves.groupby(["arch", "seed"], sort=False):
        part = curve.iloc[trim(len(curve), num_it)]
        lrs, losses = part["lr"].to_numpy(), part["smooth_loss"].to_numpy()
        ok = np.isfinite(losses)
        lrs, losses = lrs[ok], losses[ok]
        for rule, fn in RULES.items():
            lr = fn(lrs, losses) if len(lrs) >= 2 else float("nan")
            at = np.interp(np.log(lr), np.log(lrs), losses) if math.isfinite(lr) else float("nan")
            rows.append(
                {
                    "arch": arch,
                    "seed": seed,
                    "bn": curve["bn"].iloc[0],
                    "rule": rule,
                    "lr": lr,
                    "smooth_loss": float(at),
                }
            )
    return pd.DataFrame(rows)


def against_sweep(suggested: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Returns the suggestions with the sweep's best lr, their ratio and distance in decades.

    Args:
        suggested: from ``suggestions`` (arch, seed, rule, lr).
        best: the full sweep's lr of lowest final loss (``best_lr``), per arch, or per arch and
            seed when it has a ``seed`` column (each range test against its own seed's sweep).
    """
    keys = ["arch", "seed"] if "seed" in best and "seed" in suggested else ["arch"]
    out = suggested.merge(best[[*keys, "best_lr"]], on=keys, how="left")
    out["ratio"] = out["lr"] / out["best_lr"]
    out["decades"] = np.log10(out["ratio"])
    return out


def rule_distances(against: pd.DataFrame) -> pd.DataFrame:
    """Returns per rule the distance (decades) of its suggestion from the sweep's best lr over
    every network and seed: median, the 10th and 90th percentiles, and how many there are.

    Args:
        against: from ``against_sweep``.
    """
    d = against.dropna(subset=["decades"]).groupby("rule", sort=False)["decades"]
    return pd.DataFrame(
        {"median": d.median(), "p10": d.quantile(0.1), "p90": d.quantile(0.9), "n": d.size()}
    ).reset_index()
