"""Analysis over seeds for the pages and command line: tidy DataFrame in, DataFrame or record out.

The pages draw what these functions return, and ``python -m bnlr run --table ...`` prints it:

- ``seed_band``: a value summarised over seeds in log space (losses span decades): the geometric
  mean, and mean ± 1 sd of log10 or min–max as the band, diverged seeds left out and counted;
  ``history_band`` / ``metrics_band`` apply it to the loss curves and to per-run metrics.
- ``best_lr``: per network, the lr of the lowest seed-mean final loss; ``diverged_region``: the lr
  range from the first lr where some run diverged.
- ``bn_verdict``: does BatchNorm make a network react more to the lr (the article's claim 1)?
- ``range_test_medians``: how far each LR range-test rule lands from the sweep's best lr.
- ``schedule_lrs`` / ``epoch_table``: the scheduler playground's lr per step and per-epoch table.
- ``sensitivity_report`` / ``lr_curve_report``: everything one page shows, in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import claims, lrfinder, metrics
from .config import BN_LABEL, Grid
from .evidence import Verdict, cannot, judge, t_interval
from .optimizers import OptimizerConfig
from .schedules import parse_schedule, trajectory
from .train import Result

BANDS = {"spread": "mean ± 1 sd of log10 loss over seeds", "minmax": "min – max over seeds"}
BASELINE = "constant"  # the playground's reference schedule
ALL_MODELS = "all models"  # the arch of an lr curve that does not depend on the model


def label(df: pd.DataFrame) -> pd.DataFrame:
    """Returns df with ``net`` (the arch without its BN part) and ``BN`` (a readable BN label)."""
    nets = {a: a.split(" · ")[0] for a in df["arch"].unique()}  # (a handful of archs, many rows)
    return df.assign(net=df["arch"].map(nets), BN=df["bn"].map(BN_LABEL))


def seed_band(df: pd.DataFrame, value: str, keys: list[str], band: str = "spread") -> pd.DataFrame:
    """Returns per ``keys`` ``value``'s seed summary: geometric mean, lo, hi, n_seeds, n_finite.

    Log space because losses span decades: the centre is 10 ** mean(log10 v); ``spread`` gives
    10 ** (mean ± sd), ``minmax`` the smallest and largest seed. Non-finite values (diverged
    seeds) are left out; ``n_finite`` says how many seeds remain.
    """
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}; accepted: {', '.join(BANDS)}")

    v = df[value].to_numpy(dtype=float)
    ok = np.isfinite(v) & (v > 0)
    logs = df[keys].assign(log=np.where(ok, np.log10(np.where(ok, v, 1.0)), np.nan), ok=ok)
    g = logs.groupby(keys, sort=True)
    out = (
        g["log"]
        .agg(["mean", "std", "min", "max"])
        .join(g["ok"].agg(n_seeds="size", n_finite="sum"))
    )
    sd = out["std"].fillna(0.0)  # one seed: no spread
    lo, hi = (out["mean"] - sd, out["mean"] + sd) if band == "spread" else (out["min"], out["max"])
    out = pd.DataFrame(
        {
            value: 10 ** out["mean"],
            "lo": 10**lo,
            "hi": 10**hi,
            "n_seeds": out["n_seeds"],
            "n_finite": out["n_finite"],
        }
    ).reset_index()
    return out.astype({"n_seeds": int, "n_finite": int})


def history_band(history: pd.DataFrame, split: str = "train", band: str = "spread") -> pd.DataFrame:
    """Returns the loss curves summarised over seeds, one row per arch × lr × epoch.

    ``diverges_after`` marks the last epoch before some seed of that arch × lr diverged.
    """
    part = label(history[history["split"] == split])
    out = seed_band(part, "loss", ["arch", "net", "BN", "bn", "lr", "epoch"], band)
    nxt = out.groupby(["arch", "lr"])["n_finite"].shift(-1)
    out["diverges_after"] = (out["n_finite"] > 0) & nxt.notna() & (nxt < out["n_finite"])
    return out


def metrics_band(
    metrics: pd.DataFrame, value: str = "final_loss", band: str = "spread"
) -> pd.DataFrame:
    """Returns a run metric summarised over seeds per arch × lr, with ``diverged`` seeds counted."""
    part = label(metrics)
    out = seed_band(part, value, ["arch", "net", "BN", "bn", "lr"], band)
    div = (
        part.groupby(["arch", "lr"])["diverged_epoch"]
        .agg(lambda s: int(s.notna().sum()))
        .rename("diverged")
    )
    return out.merge(div.reset_index(), on=["arch", "lr"])


def best_lr(bands: pd.DataFrame, value: str = "final_loss") -> pd.DataFrame:
    """Returns per arch the lr of the lowest seed-mean ``value`` (best_lr) and that value."""
    ok = bands[np.isfinite(bands[value])]
    rows = ok.loc[ok.groupby("arch")[value].idxmin()]
    return (
        rows[["arch", "net", "BN", "bn", "lr", value]]
        .rename(columns={"lr": "best_lr"})
        .reset_index(drop=True)
    )


def diverged_region(bands: pd.DataFrame) -> pd.DataFrame:
    """Returns the lr range to shade (lo, hi) from the smallest lr where a run diverged, else empty.

    The edges sit half-way (in log lr) to the neighbouring grid points, so the shade covers whole
    points.
    """
    lrs = np.sort(bands["lr"].unique())
    first = first_diverged_lr(bands)
    if first is None:
        return pd.DataFrame(columns=["lo", "hi", "label"])
    step = np.sqrt(lrs[1] / lrs[0]) if len(lrs) > 1 else 2.0
    i = int(np.searchsorted(lrs, first))
    lo = np.sqrt(lrs[i - 1] * lrs[i]) if i > 0 else lrs[0] / step
    return pd.DataFrame(
        {"lo": [lo], "hi": [lrs[-1] * step], "label": [f"diverged (lr ≥ {first:.2g})"]}
    )


def first_diverged_lr(bands: pd.DataFrame) -> float | None:
    """Returns the smallest lr at which some run of some network diverged, or None."""
    bad = bands.loc[bands["diverged"] > 0, "lr"]
    return float(bad.min()) if len(bad) else None


def schedule_lrs(
    schedules: tuple[str, ...],
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    optimizer: OptimizerConfig,
    result: Result | None = None,
) -> pd.DataFrame:
    """Returns one row per schedule (per run for ReduceLROnPlateau) × optimizer step.

    Columns: schedule, curve (what one line is), arch, bn, step (1-based), epoch (1-based),
    x (epoch + fraction of it, the x axis), lr, momentum, every (epoch | batch).
    """
    S = steps_per_epoch
    parts = []
    for spec in schedules:
        every = parse_schedule(spec).every
        traj = trajectory(spec, lr, epochs, S, optimizer)
        if traj is not None:
            step = np.arange(1, len(traj.lr) + 1)
            parts.append(
                pd.DataFrame(
                    {
                        "schedule": spec,
                        "curve": spec,
                        "arch": ALL_MODELS,
                        "bn": "none",
                        "step": step,
                        "lr": traj.lr,
                        "momentum": traj.momentum,
                        "every": every,
                    }
                )
            )
        elif result is not None:  # ReduceLROnPlateau: each run's own lr, from training
            runs = result.runs[result.runs["schedule"] == spec][["run", "arch", "bn"]]
            steps = result.steps.merge(runs, on="run")
            parts.append(
                steps.assign(schedule=spec, curve=spec + " · " + steps["arch"], every=every)[
                    ["schedule", "curve", "arch", "bn", "step", "lr", "momentum", "every"]
                ]
            )
    df = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(
            columns=["schedule", "curve", "arch", "bn", "step", "lr", "momentum", "every"]
        )
    )
    df["epoch"] = (df["step"] - 1) // S + 1
    df["x"] = 1 + (df["step"] - 1) / S
    return df.dropna(subset=["lr"])


def per_epoch(lr: pd.DataFrame, steps_per_epoch: int) -> pd.DataFrame:
    """Returns the rows of the first step of each epoch: the lr an epoch starts with."""
    return lr[(lr["step"] - 1) % steps_per_epoch == 0]


def epoch_table(history: pd.DataFrame) -> pd.DataFrame:
    """Returns the CSV table: one row per run × epoch with its lr and its train and test loss."""
    keys = ["run", "arch", "bn", "optimizer", "schedule", "lr", "seed", "epoch"]
    wide = history.pivot_table(
        index=keys, columns="split", values="loss", dropna=False
    ).reset_index()
    lrs = history[history["split"] == "train"][["run", "epoch", "epoch_lr"]]
    out = wide.merge(lrs, on=["run", "epoch"]).rename(
        columns={"train": "train_loss", "test": "test_loss", "lr": "initial_lr"}
    )
    return out[
        [
            "run",
            "arch",
            "bn",
            "optimizer",
            "schedule",
            "initial_lr",
            "seed",
            "epoch",
            "epoch_lr",
            "train_loss",
            "test_loss",
        ]
    ]


def verdict_table(rows: list[tuple[dict, Verdict]]) -> pd.DataFrame:
    """Returns one row per verdict: the given labels, then seeds_holding, seeds, effect, low,
    high, verdict."""
    return pd.DataFrame(
        [
            {
                **labels,
                "holds in": f"{v.seeds_holding} of {v.seeds}",
                "effect": v.effect,
                "low": v.low,
                "high": v.high,
                "verdict": v.word,
            }
            for labels, v in rows
        ]
    )


def _needs_both(m: pd.DataFrame, claim: str) -> Verdict | None:
    """A verdict that cannot say, when the runs hold no BN model or no plain one; else None."""
    kinds = set(m["bn"])
    if "none" in kinds and kinds - {"none"}:
        return None
    missing = "a BN placement (pre or post)" if kinds == {"none"} else "no BN"
    return cannot(claim, f"it compares BN and plain models; add {missing} in the sidebar")


@dataclass(frozen=True)
class SensitivityReport:
    """What the LR sensitivity page shows."""

    bands: pd.DataFrame  # history_band: loss per epoch over seeds, per arch × lr
    metrics: pd.DataFrame  # metrics.run_metrics: one row per run
    sensitivity: pd.DataFrame  # metrics.lr_sensitivity: one row per architecture
    verdict: Verdict  # claim 1 over the seeds of these runs
    effects: pd.Series  # per seed: BN's mean sensitivity − the plain models', decades
    pairs: pd.DataFrame  # the same per BN model against its plain twin (verdict_table)


def sensitivity_report(
    result: Result, split: str = "train", band: str = "spread"
) -> SensitivityReport:
    """Returns the LR sensitivity page's tables and its verdict, judged over the runs' seeds."""
    m = metrics.run_metrics(result.history, split)
    sens = metrics.lr_sensitivity(m)
    statement = claims.STATEMENTS[1][0]
    per_seed = claims.sensitivity_per_seed(m)
    effects = claims.bn_sensitivity_effects(per_seed)
    missing = _needs_both(m, statement)
    verdict = missing or claims.verdict(1, effects)
    pairs = []
    if missing is None:
        per_pair = claims.bn_pair_effects(per_seed)
        for (arch, plain), part in per_pair.groupby(["arch", "plain"], sort=False):
            v = judge(
                f"{arch} reacts more than {plain}",
                part.set_index("seed")["effect"],
                "more",
                "less",
                "decades",
            )
            pairs.append(({"BN model": arch, "against": plain}, v))
    return SensitivityReport(
        history_band(result.history, split, band), m, sens, verdict, effects, verdict_table(pairs)
    )


@dataclass(frozen=True)
class LRCurveReport:
    """What the LR learning curve page shows."""

    metrics: pd.DataFrame  # one row per run, final_loss by the chosen rule
    bands: pd.DataFrame  # metrics_band: final loss over seeds per arch × lr
    best: pd.DataFrame  # best_lr per arch (of the seed-mean curve)
    best_over_seeds: pd.DataFrame  # per arch: per-seed best lr, its geometric mean and interval
    u_shape: Verdict  # claim 2 over these seeds
    bn_best_lr: Verdict  # do BN networks have a higher best lr than plain ones?
    suggested: pd.DataFrame  # each rule's lr per arch and seed, against that seed's best lr
    rules: pd.DataFrame  # per rule: median and 10–90 % range of the distance, in decades
    stability: pd.DataFrame | None = None  # per arch: lr predicted by 2/λ_max(0) vs diverged lr


def lr_curve_report(
    result: Result,
    curves: pd.DataFrame,
    num_it: int,
    split: str = "train",
    final: str = "last",
    k: int = 5,
    band: str = "spread",
    initial: pd.DataFrame | None = None,
) -> LRCurveReport:
    """Returns the LR learning curve page's tables: the U over seeds and the range test against it.

    Args:
        result: the sweep (``bnlr.train`` over a grid of lrs).
        curves: the range test of each network and seed (``lrfinder.range_test``).
        num_it: the range test's batches at most (its rules trim the curve by it).
        initial: ``why.initial_sharpness`` of the sweep's networks, to set the lr their
            curvature at init predicts (2/λ_max(0)) beside the lr where runs diverged.
    """
    m = metrics.run_metrics(result.history, split, final, k)
    bands = metrics_band(m, "final_loss", band)
    per_seed = claims.best_lr_per_seed(m)
    over_seeds = []
    for arch, part in per_seed.groupby("arch", sort=False):
        logs = np.log10(part["best_lr"].to_numpy())
        low, high = t_interval(logs)
        over_seeds.append(
            {
                "arch": arch,
                "best lr (geometric mean over seeds)": 10 ** logs.mean(),
                "low": 10**low,
                "high": 10**high,
                "seeds": len(logs),
            }
        )
    statement = "BN networks' best lr is higher than the plain ones'"
    bn_best = _needs_both(m, statement) or judge(
        statement, claims.bn_best_lr_effects(per_seed), "higher", "lower", "decades"
    )
    suggested = lrfinder.against_sweep(lrfinder.suggestions(curves, num_it), per_seed)
    stability = None if initial is None else stability_against_sweep(initial, bands)
    return LRCurveReport(
        m,
        bands,
        best_lr(bands),
        pd.DataFrame(over_seeds),
        claims.verdict(2, claims.u_shape_effects(m)),
        bn_best,
        suggested,
        lrfinder.rule_distances(suggested),
        stability,
    )


def stability_against_sweep(initial: pd.DataFrame, bands: pd.DataFrame) -> pd.DataFrame:
    """Returns per arch the lr its curvature at init predicts as the largest stable one (the
    median over seeds of 2(1 + μ)/λ_max(0)), the smallest lr of the sweep where some run
    diverged, and how many decades apart they are (NaN where nothing diverged)."""
    predicted = initial.groupby("arch", sort=False)["predicted_max_lr"].median()
    diverged = bands[bands["diverged"] > 0].groupby("arch")["lr"].min()
    out = pd.DataFrame(
        {"predicted_max_lr": predicted, "first_diverged_lr": diverged.reindex(predicted.index)}
    )
    out["decades"] = np.log10(out["first_diverged_lr"] / out["predicted_max_lr"])
    return out.reset_index()


@dataclass(frozen=True)
class ScheduleReport:
    """What the scheduler playground shows, but for the loss (``schedule_loss``: display choice)."""

    lrs: pd.DataFrame  # schedule_lrs: the lr and momentum at every optimizer step
    table: pd.DataFrame  # epoch_table: lr and train / test loss per run and epoch


def schedule_report(result: Result, grid: Grid) -> ScheduleReport:
    """Returns the playground's tables for ``result``, trained from ``grid`` (one lr, schedules)."""
    S = grid.experiment.steps_per_epoch
    lrs = schedule_lrs(grid.schedules, grid.lrs[0], grid.epochs, S, grid.optimizer, result)
    return ScheduleReport(lrs, epoch_table(result.history))


def schedule_loss(
    history: pd.DataFrame, split: str = "train", band: str = "spread"
) -> pd.DataFrame:
    """Returns the loss per epoch over seeds, one row per arch × schedule × epoch."""
    part = history[history["split"] == split]
    return seed_band(part, "loss", ["arch", "bn", "schedule", "epoch"], band)


def schedule_verdicts(history: pd.DataFrame, split: str = "train") -> tuple[pd.DataFrame, dict]:
    """Returns each schedule against the constant baseline, paired by seed (same initial weights
    and batch order): one row per schedule × model (final-loss ratio schedule / constant, its
    interval, lower in k of n seeds), and per schedule the verdict pooled over the models."""
    m = metrics.run_metrics(history, split)
    rows, pooled = [], {}
    for schedule in [s for s in dict.fromkeys(m["schedule"]) if s != BASELINE]:
        effects = claims.schedule_effects(m, schedule, BASELINE)
        claim = f"{schedule} ends lower than a constant lr"
        for arch, part in effects.groupby("arch", sort=False):
            v = judge(claim, part.set_index("seed")["effect"], "lower", "higher", "decades")
            rows.append(({"schedule": schedule, "model": arch}, v))
        pooled[schedule] = pooled_verdict(effects, claim)
    table = verdict_table(rows)
    if len(table):  # the effect as a ratio of final losses: schedule / constant
        table = table.assign(
            ratio=10 ** -table["effect"],
            ratio_low=10 ** -table["high"],
            ratio_high=10 ** -table["low"],
        )
    return table, pooled


def pooled_verdict(effects: pd.DataFrame, claim: str) -> Verdict:
    """Returns the verdict on "a schedule ends lower than another" from ``claims.schedule_effects``:
    per seed the mean effect over the models, judged over seeds."""
    return judge(claim, effects.groupby("seed")["effect"].mean(), "lower", "higher", "decades")


def schedule_against(m: pd.DataFrame, schedule: str, other: str) -> Verdict:
    """Returns the verdict on "``schedule`` ends lower than ``other``" from per-run metrics,
    paired by seed (same initial weights and batch order) and pooled over the models."""
    effects = claims.schedule_effects(m, schedule, other)
    return pooled_verdict(effects, f"{schedule} ends lower than {other}")
