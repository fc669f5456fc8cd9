"""Claims with evidence: a per-seed effect, how many seeds it holds in, and a bootstrap interval.

These networks are chaotic at the article's larger learning rates, so one seed is one sample of
chaos. A claim about the runs on screen is therefore judged seed by seed: each seed gives one
*effect* (e.g. BN's LR sensitivity minus the plain models', in decades), the claim *holds* in a
seed when that effect is > 0 (a tie, = 0, does not hold), and the mean effect gets a 90 %
percentile-bootstrap interval over seeds, from a seeded generator so that the same runs always
give the same interval. The words follow the interval: the claim's direction ("more") only when
the whole interval is above 0, the opposite ("less") only when it is below, otherwise "no
consistent difference". One seed cannot answer at all.

A seed whose effect is not finite (a run in it diverged, so a spread or a ratio has no value) is
left out of the count and named in ``left_out``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.90  # the interval's coverage
RESAMPLES = 4000  # bootstrap resamples
BOOTSTRAP_SEED = 0  # the interval of the same effects is always the same


def bootstrap_interval(
    effects, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Returns the percentile-bootstrap interval of the mean of ``effects`` (NaN for fewer than 2).

    Resamples the seeds with replacement ``resamples`` times from ``numpy.random.default_rng(seed)``
    and returns the (1 − level)/2 and (1 + level)/2 quantiles of the resampled means.

    >>> bootstrap_interval([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    x = np.asarray(effects, dtype=float)
    if len(x) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def seeds_holding(effects) -> int:
    """Returns in how many seeds the claim holds: effect > 0 (a tie does not hold).

    >>> seeds_holding([0.2, 0.0, -0.1, 0.3])
    2
    """
    return int((np.asarray(effects, dtype=float) > 0).sum())


@dataclass(frozen=True)
class Verdict:
    """A claim about the runs, judged over seeds."""

    claim: str  # the claim in words, e.g. "BN models react more to the learning rate"
    seeds_holding: int  # seeds in which the effect is > 0
    seeds: int  # seeds that could answer (finite effect)
    effect: float  # mean effect over those seeds
    low: float  # the 90 % bootstrap interval of the mean effect
    high: float
    word: str  # the claim's word ("more"), its opposite ("less"), "no consistent difference",
    # or "cannot say" (fewer than two seeds, or none could answer)
    reason: str = ""  # why it cannot say, in words
    unit: str = ""  # the effect's unit, e.g. "decades"
    left_out: tuple[int, ...] = ()  # seeds without a finite effect (a run diverged)

    @property
    def answered(self) -> bool:
        return self.word != "cannot say"

    @property
    def consistent(self) -> bool:
        """True when the interval excludes no effect (0)."""
        return self.answered and (self.low > 0 or self.high < 0)


def judge(
    claim: str,
    effects: pd.Series,
    yes: str,
    no: str,
    unit: str = "",
    level: float = LEVEL,
) -> Verdict:
    """Returns the verdict on ``claim`` from one effect per seed (index: the seed).

    Args:
        claim: the claim in words.
        effects: the per-seed effect; > 0 means the claim holds in that seed.
        yes: the word when the interval is above 0 (e.g. "more").
        no: the word when it is below 0 (e.g. "less").
        unit: the effect's unit, for the sentence.
    """
    effects = pd.Series(effects, dtype=float)
    finite = effects[np.isfinite(effects)]
    left_out = tuple(int(s) for s in effects.index[~np.isfinite(effects)])
    n = len(finite)

    def cannot_say(reason: str) -> Verdict:
        return Verdict(
            claim,
            seeds_holding(finite),
            n,
            _mean(finite),
            math.nan,
            math.nan,
            "cannot say",
            reason,
            unit,
            left_out,
        )

    if len(effects) < 2:
        return cannot_say(
            "one seed cannot answer it: the result of one seed is one sample of "
            "chaos; choose 2 or more seeds"
        )
    if n < 2:
        return cannot_say(
            f"{len(left_out)} of {len(effects)} seeds have no finite value (a run "
            "diverged), too few are left to answer"
        )
    low, high = bootstrap_interval(finite.to_numpy(), level)
    word = yes if low > 0 else no if high < 0 else "no consistent difference"
    return Verdict(
        claim, seeds_holding(finite), n, float(finite.mean()), low, high, word, "", unit, left_out
    )


def cannot(claim: str, reason: str) -> Verdict:
    """Returns a verdict that cannot say, and why (e.g. the runs hold no BN model)."""
    return Verdict(claim, 0, 0, math.nan, math.nan, math.nan, "cannot say", reason)


def _mean(x: pd.Series) -> float:
    return float(x.mean()) if len(x) else math.nan


def sentence(v: Verdict, subject: str, yes: str = "") -> str:
    """Returns the verdict as one sentence of Markdown.

    Args:
        subject: the claim with ``{word}`` where the verdict's word goes, e.g. "BN models react
            **{word}** to the learning rate than plain ones".
        yes: the claim's own word (e.g. "more"), for the sentence when the interval includes 0.

    >>> v = judge("c", pd.Series([0.1, 0.2, 0.3], index=[1, 2, 3]), "more", "less", "decades")
    >>> sentence(v, "BN reacts **{word}**")  # doctest: +NORMALIZE_WHITESPACE
    'BN reacts **more**: the claim holds in **3 of 3** seeds; mean effect +0.20 decades,
    90 % interval [+0.13, +0.27], above 0.'
    """
    if not v.answered:
        return f"**No answer**: {v.reason}."
    unit = f" {v.unit}" if v.unit else ""
    counts = (
        f"holds in **{v.seeds_holding} of {v.seeds}** seeds; mean effect {v.effect:+.2f}{unit}, "
        f"90 % interval [{bound(v.low)}, {bound(v.high)}]"
    )
    if v.word == "no consistent difference":
        claim = subject.format(word=yes or "…").replace("**", "")
        text = (
            f"**No consistent difference** at these settings: “{claim}” {counts}, which includes 0"
        )
    else:
        said = subject.format(word=v.word)
        side = "above" if v.low > 0 else "below"
        text = f"{said[0].upper()}{said[1:]}: the claim {counts}, {side} 0"
    if v.left_out:
        text += f"; {len(v.left_out)} seed(s) left out (a run diverged)"
    return text + "."


def bound(x: float) -> str:
    """An interval's bound with its sign and 2 decimals, more where those would show 0 for a
    bound that is not: the words say which side of 0 an interval is on, and so must its numbers.

    >>> bound(0.0612), bound(0.0012), bound(-0.00004), bound(0.0)
    ('+0.06', '+0.001', '-0.00004', '+0.00')
    """
    decimals = 2
    while x and round(abs(x), decimals) == 0 and decimals < 12:
        decimals += 1
    return f"{x:+.{decimals}f}"


def as_row(number: int, statement: str, v: Verdict) -> dict:
    """Returns the verdict as a CSV row (``python -m bnlr claims``)."""
    return {
        "claim": number,
        "statement": statement,
        "seeds_holding": v.seeds_holding,
        "seeds": v.seeds,
        "effect": v.effect,
        "low": v.low,
        "high": v.high,
        "unit": v.unit,
        "verdict": v.word,
    }
