"""How often a verdict names a direction when there is no effect: the old rule beside the new (#24).

A verdict names a direction ("more" / "less") when its 90 % interval of the mean per-seed effect
excludes 0. With no effect at all, that should happen in at most 10 % of trials. Per-seed effects
of true mean 0 are drawn, ``--trials`` times per cell, from four shapes (each scaled to sd 1):

- normal;
- skewness 1: a centred gamma of shape 4;
- heavy-tailed: Student's t with 3 degrees of freedom;
- skewness 2: a centred exponential (beyond what the rule promises; shown for honesty).

and judged by two rules:

- old: the percentile bootstrap of the mean (4,000 resamples from ``default_rng(0)``), the rule
  ``bnlr.evidence`` used before #24, copied here;
- Student t at 90 %: the textbook t-interval, mean ± t₀.₉₀(n − 1) · sd / √n;
- new: ``bnlr.evidence.t_interval``, the rule the app uses now: the same at t's 92 % quantile.

Then the power row: a true effect of 1 sd, how often the new rule names its direction. With
``--ours`` it also trains the article's three claims over 20 seeds (about half a minute) and
prints the skewness and excess kurtosis of each family of per-seed effects the pages judge.

    python bench/interval_coverage.py        # 4,000 trials per cell (about a minute on 2 cores)
    python bench/interval_coverage.py --trials 1000 --ours
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from bnlr import evidence

SEEDS = (2, 3, 5, 10, 20)
SHAPES = ("normal", "skewness 1 (gamma 4)", "heavy (Student t3)", "skewness 2 (exponential)")


def draw(shape: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Returns per-seed effects of mean 0 and sd 1 of ``shape``, (trials, seeds)."""
    if shape == "normal":
        return rng.standard_normal(size)
    if shape == "skewness 1 (gamma 4)":
        return (rng.gamma(4.0, size=size) - 4.0) / 2.0
    if shape == "heavy (Student t3)":
        return rng.standard_t(3, size=size) / math.sqrt(3.0)
    if shape == "skewness 2 (exponential)":
        return rng.exponential(size=size) - 1.0
    raise ValueError(f"unknown shape {shape!r}; accepted: {', '.join(SHAPES)}")


def old_intervals(x: np.ndarray, level: float = 0.90, resamples: int = 4000) -> np.ndarray:
    """The pre-#24 rule for each row of ``x`` (trials, seeds): the percentile-bootstrap interval
    of the mean, resampled with ``default_rng(0)`` (the same resamples for every row, as the old
    ``bootstrap_interval`` drew them afresh from seed 0 for every call). Returns (trials, 2)."""
    n = x.shape[1]
    picks = np.random.default_rng(0).integers(0, n, size=(resamples, n))
    tail = (1 - level) / 2
    out = []
    for chunk in np.array_split(x, max(1, len(x) // 250)):
        means = chunk[:, picks].mean(axis=2)  # (chunk, resamples)
        out.append(np.quantile(means, [tail, 1 - tail], axis=1).T)
    return np.concatenate(out)


def new_intervals(x: np.ndarray, level: float = evidence.T_LEVEL) -> np.ndarray:
    """``evidence.t_interval`` (the rule in use at its default level) for each row of ``x``.
    Returns (trials, 2)."""
    return np.array([evidence.t_interval(row, level) for row in x])


def named(intervals: np.ndarray) -> np.ndarray:
    """True where an interval names a direction (excludes 0)."""
    return (intervals[:, 0] > 0) | (intervals[:, 1] < 0)


def table(trials: int, seed: int = 24) -> pd.DataFrame:
    """Returns the false-direction rate of each rule per shape × seeds, and the new rule's power
    at a true effect of 1 sd."""
    rows = []
    for i, shape in enumerate(SHAPES):
        for n in SEEDS:
            x = draw(shape, np.random.default_rng([seed, i, n]), (trials, n))
            rows.append(
                {
                    "shape": shape,
                    "seeds": n,
                    "old (percentile bootstrap)": named(old_intervals(x)).mean(),
                    "Student t at 90 %": named(new_intervals(x, 0.90)).mean(),
                    "new (t at 92 %)": named(new_intervals(x)).mean(),
                    "power at 1 sd (new)": (new_intervals(x + 1.0)[:, 0] > 0).mean(),
                }
            )
    return pd.DataFrame(rows)


def our_effects(seeds: int = 20) -> pd.DataFrame:
    """Trains the article's three claims over ``seeds`` seeds and returns, per family of per-seed
    effects that a page judges, its count, mean, sd, skewness and excess kurtosis."""
    from bnlr import article, claims, metrics, train

    runs = claims.claim_runs(claims.seeds_from(article.SEED, seeds))
    m = {
        k: metrics.run_metrics(train(g).history, "train")
        for k, g in ((1, runs.sensitivity), (2, runs.curve), (3, runs.schedules))
    }
    per_seed = claims.sensitivity_per_seed(m[1])
    schedule = claims.schedule_effects(m[3], claims.SCHEDULE)
    families = {
        "claim 1: BN − plain LR sensitivity": claims.bn_sensitivity_effects(per_seed),
        "claim 2: U-shape gap": claims.u_shape_effects(m[2]),
        "claim 3: constant − exponential (mean over models)": schedule.groupby("seed")[
            "effect"
        ].mean(),
        "LR curve: BN − plain log10 best lr": claims.bn_best_lr_effects(
            claims.best_lr_per_seed(m[2])
        ),
    }
    for (arch, _), part in claims.bn_pair_effects(per_seed).groupby(["arch", "plain"]):
        families[f"claim 1 pair: {arch} − its plain twin"] = part["effect"]
    for arch, part in schedule.groupby("arch"):
        families[f"claim 3 per model: {arch}"] = part["effect"]
    rows = []
    for name, e in families.items():
        e = pd.Series(e, dtype=float).dropna()
        rows.append(
            {
                "effects": name,
                "seeds": len(e),
                "mean": e.mean(),
                "sd": e.std(),
                "skewness": e.skew(),
                "excess kurtosis": e.kurt(),
                "distinct values": e.nunique(),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000, help="trials per cell (4000)")
    parser.add_argument("--ours", action="store_true", help="also our own effects at 20 seeds")
    args = parser.parse_args()
    git = ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or "?"
    print(f"# {' '.join(sys.argv)} · commit {commit} · {args.trials} trials per cell")
    t = table(args.trials)
    se = math.sqrt(0.1 * 0.9 / args.trials)
    print(f"\nFalse-direction rate with no effect (nominal 10 %, Monte-Carlo sd {se:.1%}):\n")
    for rule in t.columns[2:]:
        if rule.startswith("power"):
            print("\nPower: how often the new rule names the true direction of a 1 sd effect\n")
        wide = t.pivot(index="shape", columns="seeds", values=rule).loc[list(SHAPES)]
        print(f"{rule}:\n{wide.to_string(float_format='{:.1%}'.format)}\n")
    if args.ours:
        print("\nOur own per-seed effects at 20 seeds (train split):\n")
        print(our_effects().to_string(index=False, float_format="{:+.2f}".format))


if __name__ == "__main__":
    main()
