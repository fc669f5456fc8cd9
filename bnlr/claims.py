"""The article's three claims, each judged seed by seed (``bnlr.evidence``).

1. **BatchNorm models react more to the learning rate.** Per seed: the LR sensitivity of every
   model (max − min over the lrs of log10 final loss), the mean over the BN models minus the mean
   over the plain models of the same networks, in decades. It holds in a seed when > 0.
2. **Final loss against the learning rate is U-shaped.** Per seed and network: how much worse
   (decades of final loss) the better of the two ends of the lr grid is than the best lr; 0 when
   the best lr is an end. A diverged run counts as infinitely worse. Per seed: the smallest of
   these over the networks, so it holds only when every network has its best lr inside the grid.
3. **Lowering the lr while training beats a constant lr.** Per seed: the mean over the networks
   of log10(final loss with a constant lr) − log10(final loss with Géron's exponential
   scheduling, lr0 · 0.1^(t/20)), at the same initial lr and from the same initial weights.

``article_claims`` trains the article's setup for each claim over the seeds 929, 930, … and
returns one verdict per claim; ``python -m bnlr claims`` prints them, the Home page shows them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from . import article, metrics
from .config import Grid, log_grid
from .evidence import Verdict, as_row, judge
from .train import Result, train

SCHEDULE = "exponential:s=20"  # claim 3's schedule: Géron's exponential scheduling
SCHEDULE_LR = 0.05  # claim 3's initial lr (the scheduler playground's default)
CURVE_LRS = log_grid(1e-4, 1.0, 16)  # claim 2's grid (the LR learning curve page's default)


def finals(m: pd.DataFrame) -> pd.DataFrame:
    """Per-run metrics with log10 final loss (+inf for a run that diverged)."""
    return m.assign(log_final=np.where(m["final_loss"] > 0, np.log10(m["final_loss"]), np.inf))


def sensitivity_per_seed(m: pd.DataFrame) -> pd.DataFrame:
    """Returns the LR sensitivity of every model in every seed (``metrics.lr_sensitivity`` of
    one seed: max − min over the lrs of log10 final loss; NaN when a run diverged)."""
    return metrics.lr_sensitivity(m, by=("seed",))


def bn_sensitivity_effects(s: pd.DataFrame) -> pd.Series:
    """Returns per seed: mean LR sensitivity of the BN models − that of the plain models (decades).

    NaN in a seed where some model's sensitivity is NaN (it diverged at some lr), or where the
    runs hold no BN or no plain model.

    Args:
        s: from ``sensitivity_per_seed``.
    """
    out = {}
    for seed, part in s.groupby("seed"):
        bn, plain = part[part["bn"] != "none"], part[part["bn"] == "none"]
        ok = len(bn) and len(plain) and part["sensitivity"].notna().all()
        out[seed] = bn["sensitivity"].mean() - plain["sensitivity"].mean() if ok else np.nan
    return pd.Series(out, dtype=float).rename_axis("seed")


def bn_pair_effects(s: pd.DataFrame) -> pd.DataFrame:
    """Returns per BN model and seed its LR sensitivity minus that of the same network without BN.

    Args:
        s: from ``sensitivity_per_seed``.

    Returns columns: arch (the BN model), plain (its plain twin), seed, effect (decades).
    """
    net = s["arch"].str.split(" · ").str[0]
    s = s.assign(net=net)
    plain = s[s["bn"] == "none"].set_index(["net", "seed"])["sensitivity"]
    rows = []
    for _, r in s[s["bn"] != "none"].iterrows():
        twin = plain.get((r["net"], r["seed"]), np.nan)
        rows.append(
            {
                "arch": r["arch"],
                "plain": f"{r['net']} · no BN",
                "seed": r["seed"],
                "effect": r["sensitivity"] - twin,
            }
        )
    return pd.DataFrame(rows, columns=["arch", "plain", "seed", "effect"])


def u_shape_effects(m: pd.DataFrame) -> pd.Series:
    """Returns per seed the smallest, over the networks, gap (decades) between the better end of
    the lr grid and the best lr; > 0 when every network's best lr lies inside the grid."""
    f = finals(m)
    lo, hi = f["lr"].min(), f["lr"].max()
    out = {}
    for seed, part in f.groupby("seed"):
        gaps = []
        for _, curve in part.groupby("arch"):
            by_lr = curve.set_index("lr")["log_final"]
            best = by_lr.min()
            gaps.append(min(by_lr[lo], by_lr[hi]) - best if np.isfinite(best) else np.nan)
        out[seed] = min(gaps)
    return pd.Series(out, dtype=float).rename_axis("seed")


def schedule_effects(m: pd.DataFrame, schedule: str, baseline: str = "constant") -> pd.DataFrame:
    """Returns per network and seed log10(final loss with ``baseline``) − log10(with ``schedule``):
    > 0 when the schedule ends lower. Columns: arch, seed, effect (decades), ratio (= 10^effect)."""
    f = finals(m)
    wide = f.pivot_table(index=["arch", "seed"], columns="schedule", values="log_final")
    effect = (wide[baseline] - wide[schedule]).replace([np.inf, -np.inf], np.nan)
    out = effect.rename("effect").reset_index()
    return out.assign(ratio=10 ** out["effect"])


def best_lr_per_seed(m: pd.DataFrame) -> pd.DataFrame:
    """Returns per network and seed the lr of the lowest final loss (arch, bn, seed, best_lr)."""
    f = finals(m)
    rows = f.loc[f.groupby(["arch", "seed"])["log_final"].idxmin()]
    return (
        rows[["arch", "bn", "seed", "lr"]].rename(columns={"lr": "best_lr"}).reset_index(drop=True)
    )


def bn_best_lr_effects(best: pd.DataFrame) -> pd.Series:
    """Returns per seed: mean log10 best lr of the BN networks − that of plain ones (decades)."""
    logs = best.assign(log=np.log10(best["best_lr"]))
    out = {}
    for seed, part in logs.groupby("seed"):
        bn, plain = part[part["bn"] != "none"]["log"], part[part["bn"] == "none"]["log"]
        out[seed] = bn.mean() - plain.mean() if len(bn) and len(plain) else np.nan
    return pd.Series(out, dtype=float).rename_axis("seed")


# The claims: what each says, its word when it holds and when the opposite holds, and its unit.
STATEMENTS = {
    1: ("BN models react more to the learning rate than plain ones", "more", "less"),
    2: ("final loss against the learning rate is U-shaped (best lr inside the grid)", "yes", "no"),
    3: (
        f"lowering the lr while training ({SCHEDULE}) ends lower than a constant lr",
        "lower",
        "higher",
    ),
}


def verdict(number: int, effects: pd.Series) -> Verdict:
    statement, yes, no = STATEMENTS[number]
    return judge(statement, effects, yes, no, "decades")


@dataclass(frozen=True)
class ClaimRuns:
    """The article's setup for each claim, over the given seeds."""

    sensitivity: Grid  # claim 1: the article's 2×2
    curve: Grid  # claim 2: the lr grid of the LR learning curve page
    schedules: Grid  # claim 3: constant vs exponential scheduling


def claim_runs(seeds: tuple[int, ...]) -> ClaimRuns:
    """Returns the grids the three claims are judged on (the article's setup, these seeds)."""
    return ClaimRuns(
        Grid(seeds=seeds),
        Grid(lrs=CURVE_LRS, seeds=seeds),
        Grid(lrs=(SCHEDULE_LR,), seeds=seeds, schedules=("constant", SCHEDULE)),
    )


def seeds_from(first: int, count: int) -> tuple[int, ...]:
    """Returns ``count`` seeds from ``first`` (929, 930, … by default: the article's seed first)."""
    return tuple(range(first, first + count))


def judge_claims(results: dict[int, Result], split: str = "train") -> dict[int, Verdict]:
    """Returns the verdict on each claim from its trained runs ({1: result, 2: ..., 3: ...})."""
    return judge_metrics({k: metrics.run_metrics(r.history, split) for k, r in results.items()})


def judge_metrics(m: dict[int, pd.DataFrame]) -> dict[int, Verdict]:
    """Returns the verdict on each claim from its runs' metrics (``metrics.run_metrics``)."""
    return {k: judge_claim(k, m[k]) for k in (1, 2, 3)}


def judge_claim(claim: int, metrics: pd.DataFrame) -> Verdict:
    """Returns the verdict on one claim (1, 2 or 3) from its runs' metrics."""
    return verdict(claim, claim_effects(claim, metrics))


def claim_effects(claim: int, metrics: pd.DataFrame) -> pd.Series:
    """Returns one claim's effect per seed (index: the seed; > 0: it holds in that seed)."""
    if claim == 1:
        return bn_sensitivity_effects(sensitivity_per_seed(metrics))
    if claim == 2:
        return u_shape_effects(metrics)
    return schedule_effects(metrics, SCHEDULE).groupby("seed")["effect"].mean()


def article_claims(seeds: int = 20, split: str = "train") -> pd.DataFrame:
    """Trains the article's setup over ``seeds`` seeds from 929 and returns one row per claim:
    claim, statement, seeds_holding, seeds, effect, low, high, unit, verdict, coin (the chance
    of the sign count from a fair coin), seeds_needed (no consistent difference: an estimate)."""
    runs = claim_runs(seeds_from(article.SEED, seeds))
    results = {1: train(runs.sensitivity), 2: train(runs.curve), 3: train(runs.schedules)}
    verdicts = judge_claims(results, split)
    rows = pd.DataFrame([as_row(k, STATEMENTS[k][0], v) for k, v in verdicts.items()])
    return rows.astype({"seeds_needed": "Int64"})  # a count, blank where none is needed


REPLICATION_SEEDS = 20  # how many seeds a page's replication uses, from the article's 929


@functools.lru_cache(maxsize=64)
def replicate(grid: Grid, count: int = REPLICATION_SEEDS) -> Grid:
    """Returns the same experiment over ``count`` seeds from 929 (929–948 by default): the same
    object for an equal grid (a page asks on every rerun; building its hundreds of runs was a
    quarter of LR sensitivity's cached rerun, and the same experiment object is found at once
    in every cache keyed by it)."""
    return replace(grid, seeds=seeds_from(article.SEED, count))
