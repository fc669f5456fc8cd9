"""The batch-size axis: how the best learning rate moves with the batch, and where linear scaling
stops.

Two published answers to "I doubled my batch: what lr now?":

- **Linear scaling** (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): lr ∝ B (with warmup).
- **The gradient noise scale** (McCandlish et al. 2018): ε_opt(B) ≈ ε_max / (1 + B_noise / B),
  linear for B ≪ B_noise and flat for B ≫ B_noise (``bnlr.noise`` measures B_noise).

A ``BatchSweep`` trains a grid of lrs × seeds × networks at each batch size (one ``Experiment``
per B: the batch size is an experiment's), either for the **same epochs** (a big batch takes
fewer steps) or the **same steps** (a big batch sees more epochs): the two answer different
questions, and give different ridges. The steps budget is that of the reference batch size (the
grid's own, the article's 50) at the grid's epochs; each B gets the whole epochs nearest to it.

``sweep_report`` reads the trained sweep: the best lr per batch size and seed, over seeds its
geometric mean and 90 % Student-t interval, the lines lr ∝ B and lr ∝ √B through the smallest
batch's best lr, McCandlish's curve fitted to the ridge, and per network the largest B up to
which linear scaling holds, seed by seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from . import noise
from .config import Experiment, Grid, steps_per_epoch
from .data import make_data
from .evidence import Verdict, judge, t_interval
from .train import train

SAME = {
    "epochs": "same epochs (a big batch takes fewer steps)",
    "steps": "same steps (a big batch sees more epochs)",
}
MAX_EPOCHS = 2000  # bnlr.config's cap on an experiment's epochs


def batch_sizes(smallest: int, n_train: int, reference: int | None = None) -> tuple[int, ...]:
    """Returns ``smallest``, the powers of 2 above it below ``n_train``, ``n_train`` itself (the
    full batch), and the ``reference`` batch size.

    >>> batch_sizes(2, 700, 50)
    (2, 4, 8, 16, 32, 50, 64, 128, 256, 512, 700)
    """
    if not 1 <= smallest <= n_train:
        raise ValueError(f"smallest batch size must lie in [1, {n_train}], got {smallest}")
    sizes = {smallest, n_train, *(2**k for k in range(11, 0, -1) if smallest < 2**k < n_train)}
    if reference is not None:
        sizes.add(min(reference, n_train))
    return tuple(sorted(sizes))


def _bn_fits(batch: int, n_train: int) -> bool:
    """True when BatchNorm can train at this batch size (no batch, the last included, of 1)."""
    return batch >= 2 and n_train % batch != 1


@dataclass(frozen=True)
class BatchSweep:
    """The grid's runs at each batch size (``grid.batch_size`` is the reference)."""

    grid: Grid  # networks, lrs, seeds, optimizer, data, epochs; its batch size the reference
    sizes: tuple[int, ...]  # the batch sizes, ascending; the reference among them
    same: str = "epochs"  # "epochs" | "steps": what every batch size gets the same of

    def __post_init__(self):
        if self.same not in SAME:
            raise ValueError(f"unknown comparison {self.same!r}; accepted: {', '.join(SAME)}")
        n = self.grid.data.n_train
        if list(self.sizes) != sorted(set(self.sizes)) or not self.sizes:
            raise ValueError(f"batch sizes must be distinct and ascending, got {self.sizes}")
        if self.sizes[0] < 1 or self.sizes[-1] > n:
            raise ValueError(
                f"batch sizes must lie in [1, {n}] (the training split), got {self.sizes}"
            )
        if self.reference not in self.sizes:
            raise ValueError(f"the reference batch size {self.reference} is not in {self.sizes}")
        for b in self.sizes:
            self.epochs(b)  # raises past MAX_EPOCHS

    @property
    def reference(self) -> int:
        return self.grid.batch_size

    def epochs(self, batch: int) -> int:
        """Returns the epochs trained at ``batch``: the grid's, or the whole epochs nearest to
        the reference batch's steps (at least 1)."""
        if self.same == "epochs":
            return self.grid.epochs
        n = self.grid.data.n_train
        budget = self.grid.epochs * steps_per_epoch(n, self.reference)
        epochs = max(1, round(budget / steps_per_epoch(n, batch)))
        if epochs > MAX_EPOCHS:
            raise ValueError(
                f"same steps: batch size {batch} would need {epochs} epochs for the "
                f"{budget} steps of {self.grid.epochs} epochs at batch {self.reference} (at most "
                f"{MAX_EPOCHS}); lower the epochs or raise the batch size"
            )
        return epochs

    def experiments(self) -> tuple[Experiment, ...]:
        """Returns one Experiment per batch size (BN networks left out where BN cannot train:
        a batch, or the last one, of 1 sample)."""
        base, n = self.grid.experiment, self.grid.data.n_train
        out = []
        for b in self.sizes:
            runs = tuple(r for r in base.runs if r.model.bn == "none" or _bn_fits(b, n))
            if runs:
                out.append(replace(base, runs=runs, batch_size=b, epochs=self.epochs(b)))
        return tuple(out)


@dataclass(frozen=True)
class SweepResult:
    """What a trained sweep keeps: one row per run, and the parameters along training of the
    reference batch's best runs (for the noise scale)."""

    metrics: pd.DataFrame  # network, bn, batch_size, epochs, steps, lr, seed, train, test, diverged
    reference: Experiment  # the reference batch size's runs
    trajectories: tuple  # per network and seed: (its best-lr run, parameters (E + 1, P))


def _run_rows(experiment: Experiment, history: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its settings and last epoch's train and test loss (NaN once diverged)."""
    last = history[history["epoch"] == experiment.epochs]
    finals = last.pivot(index="run", columns="split", values="loss").reindex(
        range(len(experiment.runs))
    )
    runs = experiment.runs
    return pd.DataFrame(
        {
            "network": [r.model.label for r in runs],
            "bn": [r.model.bn for r in runs],
            "batch_size": experiment.batch_size,
            "epochs": experiment.epochs,
            "steps": experiment.epochs * experiment.steps_per_epoch,
            "lr": [r.lr for r in runs],
            "seed": [r.seed for r in runs],
            "train": finals["train"].to_numpy(dtype=float),
            "test": finals["test"].to_numpy(dtype=float),
        }
    ).assign(diverged=lambda d: ~np.isfinite(d["train"]))


def best_trajectories(experiment: Experiment, result) -> tuple:
    """Returns per network and seed its best-lr run (the lowest final train loss) and that run's
    parameters at init and after every epoch (``result`` trained with ``record_parameters``)."""
    rows = _run_rows(experiment, result.history).assign(run=range(len(experiment.runs)))
    ok = rows[np.isfinite(rows["train"])]
    best = ok.loc[ok.groupby(["network", "seed"], sort=False)["train"].idxmin(), "run"]
    return tuple((experiment.runs[i], result.parameters[i]) for i in best)


def noise_epochs(epochs: int, at_most: int | None = None) -> np.ndarray:
    """Returns the epochs to measure (0 = init): all of them, or about ``at_most`` evenly spaced
    ones with the last always in.

    >>> noise_epochs(40, 20).tolist()[:4], int(noise_epochs(40, 20)[-1]), noise_epochs(3).tolist()
    ([0, 2, 4, 6], 40, [0, 1, 2, 3])
    """
    every = 1 if at_most is None else max(1, math.ceil(epochs / at_most))
    return np.unique(np.append(np.arange(0, epochs + 1, every), epochs))


def noise_along_training(
    experiment: Experiment, trajectories, at_most: int | None = None
) -> pd.DataFrame:
    """Returns B_noise along training of each trajectory (``best_trajectories``), float64:
    exact without BN, from minibatches of the experiment's batch size with BN (``bnlr.noise``).

    Columns: network, bn, seed, lr, epoch (0 = the initial weights), noise_scale, estimator.
    """
    data = make_data(experiment.data, torch.float64)
    epochs = noise_epochs(experiment.epochs, at_most)
    parts = []
    for run, params in trajectories:
        values = noise.along_training(
            run.model, params[epochs], data.X_train, data.y_train, experiment.batch_size
        )
        parts.append(
            pd.DataFrame(
                {
                    "network": run.model.label,
                    "bn": run.model.bn,
                    "seed": run.seed,
                    "lr": run.lr,
                    "epoch": epochs,
                    "noise_scale": values,
                    "estimator": noise.estimator(
                        run.model, experiment.batch_size, experiment.data.n_train
                    ),
                }
            )
        )
    columns = ["network", "bn", "seed", "lr", "epoch", "noise_scale", "estimator"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def train_sweep(sweep: BatchSweep, progress=None, cancel=None) -> SweepResult:
    """Trains every batch size's experiment, keeping the parameters along training of the
    reference batch's best-lr runs. Progress in run-epochs over all of them."""
    experiments = sweep.experiments()
    total = sum(len(e.runs) * e.epochs for e in experiments)
    done, rows, reference, trajectories = 0, [], None, ()
    for exp in experiments:
        is_reference = exp.batch_size == sweep.reference

        def tick(d, t, base=done):
            if progress is not None:
                progress(base + d, total)

        result = train(exp, progress=tick, cancel=cancel, record_parameters=is_reference)
        rows.append(_run_rows(exp, result.history))
        if is_reference:
            reference, trajectories = exp, best_trajectories(exp, result)
        done += len(exp.runs) * exp.epochs
    return SweepResult(pd.concat(rows, ignore_index=True), reference, trajectories)


# ---------------------------------------------------------------- reading the sweep


def best_lr_per_seed(metrics: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """Returns per network, batch size and seed the lr of the lowest final ``split`` loss
    (columns network, bn, batch_size, seed, best_lr); a diverged run never is the best."""
    ok = metrics[np.isfinite(metrics[split])]
    rows = ok.loc[ok.groupby(["network", "batch_size", "seed"], sort=False)[split].idxmin()]
    out = rows[["network", "bn", "batch_size", "seed", "lr"]].rename(columns={"lr": "best_lr"})
    return out.sort_values(["network", "batch_size", "seed"], kind="stable").reset_index(drop=True)


def ridge(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Returns per network and batch size the best lr over seeds: its geometric mean and the
    90 % Student-t interval of log10 best lr (``evidence.t_interval``; NaN for one seed).

    Columns: network, bn, batch_size, best_lr, low, high, seeds.
    """
    out = []
    for (network, bn, b), part in per_seed.groupby(["network", "bn", "batch_size"], sort=False):
        logs = np.log10(part["best_lr"].to_numpy(dtype=float))
        low, high = t_interval(logs)
        out.append(
            {
                "network": network,
                "bn": bn,
                "batch_size": int(b),
                "best_lr": 10 ** logs.mean(),
                "low": 10**low,
                "high": 10**high,
                "seeds": len(logs),
            }
        )
    return pd.DataFrame(
        out, columns=["network", "bn", "batch_size", "best_lr", "low", "high", "seeds"]
    )


RULES = {"lr ∝ B": 1.0, "lr ∝ √B": 0.5}  # the scaling rules, as the power of B


def scaling_lines(ridge_table: pd.DataFrame) -> pd.DataFrame:
    """Returns per network each rule's lr at every batch size, through the smallest batch's best
    lr (columns network, bn, rule, batch_size, lr)."""
    out = []
    for (network, bn), part in ridge_table.groupby(["network", "bn"], sort=False):
        first = part.loc[part["batch_size"].idxmin()]
        for rule, power in RULES.items():
            lr = first["best_lr"] * (part["batch_size"] / first["batch_size"]) ** power
            out.append(
                pd.DataFrame(
                    {
                        "network": network,
                        "bn": bn,
                        "rule": rule,
                        "batch_size": part["batch_size"],
                        "lr": lr,
                    }
                )
            )
    return pd.concat(out, ignore_index=True)


def mccandlish(batch, eps_max: float, b_noise: float):
    """Returns McCandlish's ε_opt(B) = ε_max / (1 + B_noise / B).

    >>> float(mccandlish(1.0, 0.1, 1.0))
    0.05
    """
    return eps_max / (1 + b_noise / np.asarray(batch, dtype=float))


def fit_mccandlish(batch, best_lr) -> tuple[float, float, float]:
    """Returns (ε_max, B_noise, rms error in decades): least squares in log10 lr. For each
    B_noise on a log grid from 1/100 of the smallest to 100× the largest batch, log ε_max is
    the mean of log10 lr + log10(1 + B_noise / B); the B_noise of the smallest error wins."""
    b = np.asarray(batch, dtype=float)
    logs = np.log10(np.asarray(best_lr, dtype=float))
    grid = np.logspace(np.log10(b.min() / 100), np.log10(b.max() * 100), 801)
    shift = np.log10(1 + grid[:, None] / b[None, :])  # (G, n)
    log_eps = (logs[None, :] + shift).mean(1)  # (G,)
    err = np.sqrt(((log_eps[:, None] - shift - logs[None, :]) ** 2).mean(1))
    k = int(np.argmin(err))
    return float(10 ** log_eps[k]), float(grid[k]), float(err[k])


def fits(ridge_table: pd.DataFrame) -> pd.DataFrame:
    """Returns per network McCandlish's curve fitted to its ridge (columns network, bn, eps_max,
    b_noise, rms_decades)."""
    rows = []
    for (network, bn), part in ridge_table.groupby(["network", "bn"], sort=False):
        eps, b_noise, err = fit_mccandlish(part["batch_size"], part["best_lr"])
        rows.append(
            {"network": network, "bn": bn, "eps_max": eps, "b_noise": b_noise, "rms_decades": err}
        )
    return pd.DataFrame(rows, columns=["network", "bn", "eps_max", "b_noise", "rms_decades"])


def fit_curves(fit_table: pd.DataFrame, sizes) -> pd.DataFrame:
    """Returns each fitted curve on a fine log grid of B over ``sizes``' range (network, bn,
    batch_size, lr)."""
    sizes = np.asarray(sizes, dtype=float)
    b = np.logspace(np.log10(sizes.min()), np.log10(sizes.max()), 60)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "network": f.network,
                    "bn": f.bn,
                    "batch_size": b,
                    "lr": mccandlish(b, f.eps_max, f.b_noise),
                }
            )
            for f in fit_table.itertuples()
        ],
        ignore_index=True,
    )


def linear_until(per_seed: pd.DataFrame, ridge_table: pd.DataFrame, tolerance: float):
    """Returns per network and seed the largest batch size up to which linear scaling holds: at
    every batch size up to it, the seed's best lr is at least on the line lr ∝ B through the
    smallest batch's best lr over seeds (the chart's line), less ``tolerance`` decades (the lr
    grid's step: a best lr is one of the grid's). Columns network, bn, seed, smallest,
    linear_until, doublings (log2 of linear_until / smallest)."""
    anchor = ridge_table.loc[ridge_table.groupby(["network", "bn"])["batch_size"].idxmin()]
    anchor = anchor.set_index("network")
    rows = []
    for (network, bn, seed), part in per_seed.groupby(["network", "bn", "seed"], sort=False):
        part = part.sort_values("batch_size")
        b0, lr0 = anchor.loc[network, ["batch_size", "best_lr"]]
        b = part["batch_size"].to_numpy(dtype=float)
        lr = np.log10(part["best_lr"].to_numpy(dtype=float))
        line = np.log10(lr0 * b / b0)
        holds = np.cumprod(lr >= line - tolerance - 1e-9).astype(bool)
        until = b[holds][-1] if holds.any() else b0
        rows.append(
            {
                "network": network,
                "bn": bn,
                "seed": seed,
                "smallest": int(b0),
                "linear_until": int(until),
                "doublings": math.log2(until / b0),
            }
        )
    return pd.DataFrame(
        rows, columns=["network", "bn", "seed", "smallest", "linear_until", "doublings"]
    )


@dataclass(frozen=True)
class LinearVerdict:
    """Where linear scaling stops for one network, over seeds."""

    network: str
    bn: str
    smallest: int  # the smallest batch size (where the lines start)
    largest: int  # the largest batch size swept
    until: int  # the swept batch size nearest the geometric mean over seeds of linear_until
    holding: int  # seeds in which linear scaling holds at least up to ``until``
    per_seed: tuple[int, ...]  # each seed's linear_until
    doublings: Verdict  # over seeds: doublings of the batch it holds for (> 0: past the smallest)

    @property
    def seeds(self) -> int:
        return len(self.per_seed)

    def sentence(self) -> str:
        """The verdict in words (Markdown), e.g. "linear scaling (lr ∝ B from B = 2) holds up
        to B ≈ 64 in 2 of 2 seeds (...)"."""
        v = self.doublings
        text = (
            f"linear scaling (lr ∝ B from B = {self.smallest}) holds up to **B ≈ {self.until}** "
            f"in **{self.holding} of {self.seeds}** seeds"
        )
        if self.seeds <= 5:
            text += f" (per seed: up to {', '.join(str(b) for b in self.per_seed)})"
        if not v.answered:
            return text + f"; {v.reason}."
        low, high = (self.smallest * 2**x for x in (v.low, v.high))
        if low < self.smallest / 1.01 or high > self.largest * 1.01:
            return (
                text + f"; over seeds its 90 % interval ({low:.3g} – {high:.3g}) is wider than "
                f"the batch sizes swept ({self.smallest} – {self.largest}): more seeds would "
                "narrow it."
            )
        return text + f"; over seeds its 90 % interval is B = {low:.3g} – {high:.3g}."


def linear_verdicts(until: pd.DataFrame, largest: dict) -> list[LinearVerdict]:
    """Returns each network's verdict from ``linear_until``'s table (``largest``: per network
    the largest batch size swept, for the interval's words)."""
    out = []
    for (network, bn), part in until.groupby(["network", "bn"], sort=False):
        b = part["linear_until"].to_numpy()
        smallest = int(part["smallest"].iloc[0])
        swept = [s for s in (smallest * 2.0**k for k in range(0, 20)) if s <= largest[network]]
        swept = sorted(set(swept) | set(b.tolist()))
        centre = 2 ** np.log2(b).mean()
        until_b = int(min(swept, key=lambda s: abs(math.log2(s / centre))))
        verdict = judge(
            f"{network}: linear scaling holds past B = {smallest}",
            pd.Series(part["doublings"].to_numpy(), index=part["seed"].to_numpy()),
            "past",
            "not past",
            "doublings",
        )
        out.append(
            LinearVerdict(
                network,
                bn,
                smallest,
                int(largest[network]),
                until_b,
                int((b >= until_b).sum()),
                tuple(int(x) for x in b),
                verdict,
            )
        )
    return out


@dataclass(frozen=True)
class SweepReport:
    """What the batch-size page shows."""

    heat: pd.DataFrame  # per network × batch size × lr: final loss over seeds (geometric mean)
    per_seed: pd.DataFrame  # best_lr_per_seed
    ridge: pd.DataFrame  # best lr over seeds per network × batch size, with its interval
    lines: pd.DataFrame  # scaling_lines
    fits: pd.DataFrame  # McCandlish's curve fitted per network
    curves: pd.DataFrame  # the fitted curves, drawable
    until: pd.DataFrame  # linear_until per network × seed
    verdicts: list[LinearVerdict]
    steps: pd.DataFrame  # per batch size: epochs and steps trained


def lr_step(lrs) -> float:
    """Returns the lr grid's step in decades (the largest gap between neighbours).

    >>> lr_step([0.001, 0.01, 0.1])
    1.0
    """
    logs = np.log10(np.sort(np.asarray(lrs, dtype=float)))
    return float(np.diff(logs).max()) if len(logs) > 1 else 0.0


def sweep_report(result: SweepResult, split: str = "train") -> SweepReport:
    """Returns the batch-size page's tables from a trained sweep, judged on the ``split`` loss."""
    m = result.metrics
    finite = m[split].where(np.isfinite(m[split]))
    heat = (
        m.assign(log=np.log10(finite))
        .groupby(["network", "bn", "batch_size", "lr"], sort=False)
        .agg(log=("log", "mean"), diverged=("diverged", "sum"), seeds=("seed", "size"))
        .reset_index()
    )
    heat["final_loss"] = 10 ** heat.pop("log")
    per_seed = best_lr_per_seed(m, split)
    r = ridge(per_seed)
    f = fits(r)
    until = linear_until(per_seed, r, lr_step(m["lr"].unique()))
    largest = m.groupby("network")["batch_size"].max().to_dict()
    steps = m.groupby("batch_size")[["epochs", "steps"]].first().reset_index()
    return SweepReport(
        heat,
        per_seed,
        r,
        scaling_lines(r),
        f,
        fit_curves(f, r["batch_size"]),
        until,
        linear_verdicts(until, largest),
        steps,
    )


def lr_factor(ridge_table: pd.DataFrame, times: int = 8) -> pd.DataFrame:
    """Returns per network the factor its best lr (geometric mean over seeds) changes by when the
    batch goes from the smallest to ``times`` × it (when that batch size was swept).

    Columns network, bn, from_batch, to_batch, factor.
    """
    rows = []
    for (network, bn), part in ridge_table.groupby(["network", "bn"], sort=False):
        lr = part.set_index("batch_size")["best_lr"]
        small = int(lr.index.min())
        if small * times in lr.index:
            rows.append(
                {
                    "network": network,
                    "bn": bn,
                    "from_batch": small,
                    "to_batch": small * times,
                    "factor": float(lr[small * times] / lr[small]),
                }
            )
    return pd.DataFrame(rows, columns=["network", "bn", "from_batch", "to_batch", "factor"])


# ---------------------------------------------------------------- what a sweep costs

# The sweep's tables and schedule checks per run and optimizer step. ``bnlr.cost``'s step_row
# and schedule_step terms, fitted at the article's 14 steps per epoch, put 4 µs on each; at
# 350 steps per epoch (B = 2) they were measured at 0.03–0.04 µs (python bench/batch_size.py),
# so a sweep prices them here, with a margin.
ROW_S = 1e-7
# CPU seconds of the noise scale per parameter vector, per sample × parameter: exact
# per-example gradients, or per repeat of the two-batch estimator (same bench).
NOISE_EXACT_S = 2e-7
NOISE_REPEAT_S = 3e-8


def estimate(sweep: BatchSweep) -> float:
    """Returns the estimated seconds to train ``sweep`` (``bnlr.cost``'s model per batch size,
    its per-step rows at ``ROW_S``; a kernel compiles once for all batch sizes)."""
    from . import cost

    total, compile_s = 0.0, 0.0
    for exp in sweep.experiments():
        terms = cost.breakdown(exp)
        rows = len(exp.runs) * exp.epochs * exp.steps_per_epoch
        once = terms["fused_compile"]
        total += sum(terms.values()) - terms["step_row"] - terms["schedule_step"] - once
        total += cost.SPEED * ROW_S * rows
        compile_s = max(compile_s, once)
    return total + compile_s


def noise_estimate(sweep: BatchSweep, at_most: int | None = None) -> float:
    """Returns the estimated seconds of the noise scale along training (``noise_along_training``
    of each network's and seed's best run at the reference batch size)."""
    from . import cost
    from .models import layout

    data, points = sweep.grid.data, len(noise_epochs(sweep.grid.epochs, at_most))
    total = 0.0
    for run in {(r.model, r.seed): r for r in sweep.grid.experiment.runs}.values():
        p = sum(math.prod(shape) for _, shape in layout(run.model, data.n_features))
        unit = NOISE_EXACT_S if run.model.bn == "none" else NOISE_REPEAT_S * noise.REPEATS
        total += unit * data.n_train * p * points
    return cost.SPEED * total
