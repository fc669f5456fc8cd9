"""Claims with evidence: a per-seed effect, how many seeds it holds in, and a Student-t interval.

These networks are chaotic at the article's larger learning rates, so one seed is one sample of
chaos. A claim about the runs on screen is therefore judged seed by seed: each seed gives one
*effect* (e.g. BN's LR sensitivity minus the plain models', in decades), the claim *holds* in a
seed when that effect is > 0 (a tie, = 0, does not hold), and the mean effect gets a 90 %
interval over seeds: mean ± t · sd / √n, t the 92 % quantile of Student's t with n − 1 degrees of
freedom (why 92 for a 90 % promise: below). The words follow the interval: the
claim's direction ("more") only when the whole interval is above 0, the opposite ("less") only
when it is below, otherwise "no consistent difference". One seed cannot answer at all.

Why Student's t and not the percentile bootstrap this module used before (issue #24): at a few
seeds the bootstrap's interval is far narrower than it says (with 2 seeds it is the two seeds
themselves), so with no effect at all it named a direction in about half of all trials at 2 seeds
and 1 in 5 at 5 seeds, where 1 in 10 is promised. Student's t is exact for normal effects at
every n ≥ 2, but effects of skewness 1 make its 90 % interval name a direction in 12 % of null
trials at 3–5 seeds; taking t at 92 % brings that to ≤ 10 %, so the interval covers at least 90 %
for normal, moderately skewed (skewness ≤ 1) and heavy-tailed (t₃) effects: normal ones get 92 %
(``bench/interval_coverage.py`` measures it, ``docs/coverage.md`` has the table). At 2 seeds it
names a direction only when the two agree within about a fifth of their size; otherwise the
verdict says how many seeds it would need.

Beside the interval, the sign count is put against a fair coin: the chance that a coin lands at
least as many of n throws on the seeds' majority side (the sign test with no effect).

A seed whose effect is not finite (a run in it diverged, so a spread or a ratio has no value) is
left out of the count and named in ``left_out``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
import pandas as pd

LEVEL = 0.90  # the coverage the interval promises, at least
T_LEVEL = 0.92  # the Student-t level that keeps that promise for effects of skewness up to 1
MAX_SEEDS = 1000  # seeds_needed gives up beyond this many seeds


def t_within(t: float, df: int) -> float:
    """Returns P(|T| ≤ t) for Student's T with ``df`` (an integer ≥ 1) degrees of freedom.

    Exact, from the finite series for integer df (Abramowitz & Stegun 26.7.3–4), with
    θ = atan(t / √df).

    >>> round(t_within(2.919986, 2), 6)
    0.9
    """
    if df < 1 or df != int(df):
        raise ValueError(f"degrees of freedom must be an integer ≥ 1, got {df!r}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:  # sin θ · (1 + ½ c² + (1·3)/(2·4) c⁴ + …), df/2 terms
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total
    term, total = 1.0, 0.0  # (2/π)(θ + sin θ cos θ (1 + ⅔ c² + (2·4)/(3·5) c⁴ + …))
    for k in range(1, (df - 1) // 2 + 1):
        total += term
        term *= c2 * (2 * k) / (2 * k + 1)
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


@lru_cache(maxsize=4096)
def t_quantile(level: float, df: int) -> float:
    """Returns the t with P(|T| ≤ t) = ``level``: the two-sided ``level`` quantile of Student's t
    with ``df`` degrees of freedom (``scipy.stats.t.ppf((1 + level) / 2, df)``), by bisection.

    >>> round(t_quantile(0.90, 1), 4), round(t_quantile(0.90, 19), 4)
    (6.3138, 1.7291)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    low, high = 0.0, 1.0
    while t_within(high, df) < level:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if mid in (low, high):
            break
        low, high = (mid, high) if t_within(mid, df) < level else (low, mid)
    return high


def t_interval(effects, level: float = T_LEVEL) -> tuple[float, float]:
    """Returns the Student-t interval of the mean of ``effects``: mean ± t · sd / √n, t the
    two-sided ``level`` quantile with n − 1 degrees of freedom (NaN for fewer than 2).

    >>> [round(b, 2) for b in t_interval([1.0, 3.0], 0.90)]  # 2 ± t(1) · √2 / √2, t(1) = 6.31
    [-4.31, 8.31]
    """
    x = np.asarray(effects, dtype=float)
    if len(x) < 2:
        return (math.nan, math.nan)
    half = t_quantile(level, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def seeds_needed(mean: float, sd: float, level: float = T_LEVEL) -> int | None:
    """Returns an estimate of the seeds the interval would need to exclude 0: the smallest n whose
    t-interval half-width at this ``sd`` is below ``|mean|``. None when there is no effect to
    find (mean 0, or not finite) or it would take more than ``MAX_SEEDS``.

    It takes these seeds' mean and sd as the truth, which they are not: an estimate.

    >>> seeds_needed(1.0, 1.0), seeds_needed(0.1, 1.0), seeds_needed(0.0, 1.0)
    (6, 309, None)
    """
    if not (math.isfinite(mean) and math.isfinite(sd)) or mean == 0:
        return None
    if sd == 0:
        return 2

    def enough(n: int) -> bool:
        return t_quantile(level, n - 1) * sd / math.sqrt(n) < abs(mean)

    if not enough(MAX_SEEDS):
        return None
    low, high = 1, MAX_SEEDS  # enough(high), not enough(low): the half-width falls with n
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def coin_chance(k: int, n: int) -> float:
    """Returns the chance that a fair coin lands heads at least ``k`` times in ``n`` throws.

    >>> coin_chance(3, 3), coin_chance(2, 4)
    (0.125, 0.6875)
    """
    return sum(math.comb(n, i) for i in range(max(k, 0), n + 1)) / 2**n


def tries(p: float) -> str:
    """Returns a chance in words of tries, rounded to a simple fraction.

    >>> tries(0.125), tries(0.588), tries(0.75), tries(1.0), tries(2**-19)
    ('1 of 8 tries', '3 of 5 tries', '3 of 4 tries', 'every try', '1 of 524,288 tries')
    """
    if p <= 0.5:
        return f"1 of {round(1 / p):,} tries"
    near = Fraction(p).limit_denominator(10)
    if near == 1:
        return "every try" if p == 1 else "almost every try"
    return f"{near.numerator} of {near.denominator} tries"


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
    low: float  # the 90 % interval of the mean effect (Student's t at T_LEVEL)
    high: float
    word: str  # the claim's word ("more"), its opposite ("less"), "no consistent difference",
    # or "cannot say" (fewer than two seeds, or none could answer)
    reason: str = ""  # why it cannot say, in words
    unit: str = ""  # the effect's unit, e.g. "decades"
    left_out: tuple[int, ...] = ()  # seeds without a finite effect (a run diverged)
    seeds_against: int = 0  # seeds in which the effect is < 0
    sd: float = math.nan  # the effects' standard deviation over seeds
    seeds_needed: int | None = None  # no consistent difference: an estimate of the seeds it
    # would take for the interval to exclude 0 at this mean and sd (None: no effect to find, or
    # more than MAX_SEEDS)

    @property
    def answered(self) -> bool:
        return self.word != "cannot say"

    @property
    def consistent(self) -> bool:
        """True when the interval excludes no effect (0)."""
        return self.answered and (self.low > 0 or self.high < 0)

    @property
    def majority(self) -> int:
        """Returns the seeds on the majority's side of 0 (holding, or against when more are)."""
        return max(self.seeds_holding, self.seeds_against)

    @property
    def coin(self) -> float:
        """Returns the chance that a fair coin lands at least ``majority`` of ``seeds`` throws on
        one chosen side: the sign count's evidence when there is no effect."""
        return coin_chance(self.majority, self.seeds)

    @property
    def coin_words(self) -> str:
        """The sign count against a coin, e.g. "a coin would do this in 1 of 8 tries": the chance
        of ``majority`` or more heads in ``seeds`` throws."""
        return f"a coin would do this in {tries(self.coin)}"

    @property
    def needed_words(self) -> str:
        """How many seeds it would take to tell, in words ("" when the verdict names a side)."""
        if not self.answered or self.consistent:
            return ""
        if self.seeds_needed is None:
            if self.effect == 0 or not math.isfinite(self.effect):
                return "these seeds show no effect at all to chase with more seeds"
            return f"at this mean and spread it would take more than {MAX_SEEDS:,} seeds to tell"
        return (
            f"at this mean and spread it would take about {self.seeds_needed} seeds to tell "
            "(an estimate: this mean and spread are themselves uncertain)"
        )


def judge(
    claim: str,
    effects: pd.Series,
    yes: str,
    no: str,
    unit: str = "",
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
    holding, against = seeds_holding(finite), int((finite < 0).sum())

    def cannot_say(reason: str) -> Verdict:
        return Verdict(
            claim, holding, n, _mean(finite), math.nan, math.nan, "cannot say", reason, unit,
            left_out, against,
        )  # fmt: skip

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
    low, high = t_interval(finite.to_numpy())
    word = yes if low > 0 else no if high < 0 else "no consistent difference"
    mean, sd = float(finite.mean()), float(finite.std(ddof=1))
    needed = seeds_needed(mean, sd) if word == "no consistent difference" else None
    return Verdict(
        claim, holding, n, mean, low, high, word, "", unit, left_out, against, sd, needed
    )


def cannot(claim: str, reason: str) -> Verdict:
    """Returns a verdict that cannot say, and why (e.g. the runs hold no BN model)."""
    return Verdict(claim, 0, 0, math.nan, math.nan, math.nan, "cannot say", reason)


def _mean(x: pd.Series) -> float:
    return float(x.mean()) if len(x) else math.nan


def sentence(v: Verdict, subject: str, yes: str = "") -> str:
    """Returns the verdict as one sentence of Markdown (two when it cannot tell yet: then the
    second says how many seeds it would take).

    Args:
        subject: the claim with ``{word}`` where the verdict's word goes, e.g. "BN models react
            **{word}** to the learning rate than plain ones".
        yes: the claim's own word (e.g. "more"), for the sentence when the interval includes 0.

    >>> v = judge("c", pd.Series([0.1, 0.2, 0.3], index=[1, 2, 3]), "more", "less", "decades")
    >>> sentence(v, "BN reacts **{word}**")  # doctest: +NORMALIZE_WHITESPACE
    'BN reacts **more**: the claim holds in **3 of 3** seeds (a coin would do this in 1 of 8
    tries); mean effect +0.20 decades, 90 % interval [+0.01, +0.39], above 0.'
    """
    if not v.answered:
        return f"**No answer**: {v.reason}."
    unit = f" {v.unit}" if v.unit else ""
    against = f", the opposite in {v.seeds_against}" if v.seeds_against > v.seeds_holding else ""
    counts = (
        f"holds in **{v.seeds_holding} of {v.seeds}** seeds{against} ({v.coin_words}); "
        f"mean effect {bound(v.effect)}{unit}, {LEVEL * 100:.0f} % interval "
        f"[{bound(v.low)}, {bound(v.high)}]"
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
    text += "."
    if v.needed_words:
        text += f" {v.needed_words[0].upper()}{v.needed_words[1:]}."
    return text


def bound(x: float) -> str:
    """An interval's bound with its sign and 2 decimals; up to 4 where those would show 0 for a
    bound that is not (the words say which side of 0 an interval is on, and so must its numbers),
    and 2 significant digits in powers of ten below that.

    >>> bound(0.0612), bound(0.0012), bound(-0.00004), bound(0.0), bound(-1e-10)
    ('+0.06', '+0.001', '-0.00004', '+0.00', '-1.0e-10')
    """
    decimals = 2
    while x and round(abs(x), decimals) == 0 and decimals < 5:
        decimals += 1
    if x and round(abs(x), decimals) == 0:
        return f"{x:+.1e}"
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
        "coin": v.coin if v.answered else math.nan,
        "seeds_needed": v.seeds_needed,
    }
