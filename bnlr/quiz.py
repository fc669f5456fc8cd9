"""Predict, then reveal: the questions a teacher's link can ask a class, and their honest answers.

A quiz names the page that asks it and its question in a student's words. Its answer is what
the page itself states, computed from the page's own tables (``bnlr.analysis``), never a
separate judgement:

- ``best_lr`` (LR learning curve): the best lr of each network's seed-mean U (the chart's
  diamonds); a guess is scored in decades, ``|log10(guess) − log10(answer)|``, against each
  network and the nearest one.
- ``diverge`` (LR learning curve): the smallest lr at which some run diverged (where the chart's
  grey region starts), or "none" when no run diverged at these settings.
- ``bn_more`` (LR sensitivity): the word of the page's verdict over seeds (more → yes, less → no,
  or no consistent difference); a verdict that cannot say has no right answer.
- ``past_wall`` (Why it happens): what most full-batch gradient-descent runs did at 1.5 × 2/λ₀
  (converge smoothly, oscillate but keep training, diverge: ``bnlr.edge.past_wall_answer``).
- ``warmup`` (Why it happens): the page's verdict over seeds on whether the longest linear warmup
  raises the largest trainable lr (``bnlr.edge.warmup_answer``).
- ``best_schedule`` (Scheduler playground): the schedule of the lowest final loss (geometric mean
  over models and seeds); any schedule the winner does not beat consistently over seeds, judged
  as the page judges a schedule against the constant lr, counts as right too.
- ``batch_lr`` (Batch size): the factor the best lr changes by from the smallest batch size to
  8 × it (the page's ridge, geometric mean over seeds), as the nearest of ÷ 8 … × 8 in log; a
  guess is right when it is the nearest for some network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import claims, metrics
from .analysis import first_diverged_lr, schedule_against
from .evidence import Verdict


@dataclass(frozen=True)
class Quiz:
    """One question a page can ask before it draws its answer."""

    page: str  # the page that asks it (ui's page name)
    question: str  # in a student's words
    asks_for: str  # "lr", "lr_or_none", "bn_word" or "schedule": what a guess is


QUIZZES = {
    "best_lr": Quiz(
        "lr_curve",
        "Which learning rate gives the lowest final loss? Pick it on the lr axis.",
        "lr",
    ),
    "diverge": Quiz(
        "lr_curve",
        "From which learning rate on does training diverge (the loss blows up to infinity)?",
        "lr_or_none",
    ),
    "bn_more": Quiz(
        "lr_sensitivity",
        "Does BatchNorm make the network react more to the learning rate?",
        "bn_word",
    ),
    "past_wall": Quiz(
        "why",
        "Full-batch gradient descent at 1.5 × the predicted wall 2/λ₀: does it converge "
        "smoothly, oscillate but keep training, or diverge?",
        "outcome",
    ),
    "warmup": Quiz(
        "why",
        "Does a 10-epoch linear warmup let the article's networks train at a larger learning "
        "rate than no warmup?",
        "word",
    ),
    "best_schedule": Quiz(
        "schedules",
        "Which schedule ends with the lowest loss?",
        "schedule",
    ),
    "batch_lr": Quiz(
        "batch_size",
        "I multiply the batch size by 8 (from the smallest on this page): by what factor should "
        "the learning rate change?",
        "factor",
    ),
}
NONE_DIVERGES = "none of these"  # the diverge quiz's guess that no lr of the grid diverges
BN_WORDS = {"more": "yes", "less": "no", "no consistent difference": "no consistent difference"}
BN_CHOICES = ("yes", "no", "no consistent difference")
# batch_lr's answers: the lr factor for a batch 8 × larger, and its power of 8
FACTORS = {"÷ 8": -1.0, "÷ √8 ≈ 2.8": -0.5, "× 1 (keep it)": 0.0, "× √8 ≈ 2.8": 0.5, "× 8": 1.0}


def for_page(page: str) -> list[str]:
    """Returns the names of the quizzes ``page`` can ask."""
    return [name for name, q in QUIZZES.items() if q.page == page]


def choices(name: str, lrs=(), schedules=()) -> list:
    """Returns what a student can answer to quiz ``name``: the page's lrs (ascending, as on the
    lr axis), those and ``NONE_DIVERGES``, the three BN words, or the page's schedules."""
    asks_for = QUIZZES[name].asks_for
    if asks_for == "lr":
        return sorted(lrs)
    if asks_for == "lr_or_none":
        return [*sorted(lrs), NONE_DIVERGES]
    if asks_for in ("bn_word", "word"):
        return list(BN_CHOICES)
    if asks_for == "outcome":
        from .edge import OUTCOMES

        return list(OUTCOMES)
    if asks_for == "factor":
        return list(FACTORS)
    return list(schedules)


def decades_off(guess: float, answer: float) -> float:
    """Returns how many factors of ten apart two learning rates are: |log10 guess − log10 answer|.

    >>> decades_off(0.01, 0.1)
    1.0
    """
    if not (guess > 0 and answer > 0):
        raise ValueError(f"learning rates must be > 0, got {guess!r} and {answer!r}")
    return abs(math.log10(guess) - math.log10(answer))


@dataclass(frozen=True)
class Answer:
    """The answer to a quiz at the page's settings, and how a guess fares against it."""

    answer: object  # the right answer (best lrs, an lr or NONE_DIVERGES, a BN word, a schedule);
    # None: the page cannot say
    right: bool  # the guess counts as right
    decades: float = math.nan  # how far an lr guess is from the answer (NaN: not an lr quiz)
    per_network: pd.DataFrame | None = None  # best_lr: arch, best_lr, decades off the guess
    verdicts: dict | None = None  # bn_more: the verdict; best_schedule: winner against others
    ranking: pd.DataFrame | None = None  # best_schedule: schedule, final_loss (lowest first)
    also_right: tuple = ()  # best_schedule: schedules not consistently beaten by the winner
    said: str = ""  # past_wall, warmup: the answer in words, as the page states it


def best_lr(best: pd.DataFrame, guess: float) -> Answer:
    """Returns the best-lr answer: each network's best lr (the lr of the lowest final loss of its
    seed-mean curve), and the guess's distance in decades to each and to the nearest.

    Networks can disagree (BN ones often prefer another lr), so the answer is the sorted distinct
    best lrs; the guess is right when it is one of them.

    Args:
        best: ``analysis.best_lr`` of the page's bands (arch, best_lr, ...): the chart's diamonds.
        guess: the student's lr.
    """
    per = best[["arch", "best_lr"]].copy()
    per["decades"] = [decades_off(guess, lr) for lr in per["best_lr"]]
    nearest = float(per["decades"].min())
    answer = tuple(sorted(float(lr) for lr in per["best_lr"].unique()))
    return Answer(answer, bool(np.isclose(nearest, 0.0)), nearest, per)


def diverge(bands: pd.DataFrame, guess) -> Answer:
    """Returns the smallest lr at which some run diverged (``NONE_DIVERGES`` when none did).

    Args:
        bands: ``analysis.metrics_band`` of the page (a ``diverged`` count per arch × lr).
        guess: an lr, or ``NONE_DIVERGES``.
    """
    first = first_diverged_lr(bands)
    if first is None:
        return Answer(NONE_DIVERGES, guess == NONE_DIVERGES)
    if guess == NONE_DIVERGES:
        return Answer(first, False)
    off = decades_off(float(guess), first)
    return Answer(first, bool(np.isclose(off, 0.0)), off)


def bn_more(verdict: Verdict, guess: str) -> Answer:
    """Returns the BN answer: the page's verdict over seeds in yes / no / no consistent
    difference; None (nothing counts as right) when the verdict cannot say."""
    answer = BN_WORDS.get(verdict.word)
    return Answer(answer, answer is not None and guess == answer, verdicts={"bn": verdict})


def best_schedule(history: pd.DataFrame, guess: str, split: str = "train") -> Answer:
    """Returns the schedule of the lowest final loss, and how each other one compares over seeds.

    The ranking is the geometric mean over models and seeds of the last epoch's loss (a run that
    diverged ranks last). The winner is judged against every other schedule as the page judges a
    schedule against the constant lr: per seed, the mean over models of log10 final loss of the
    other minus the winner's; a schedule the winner does not beat consistently (the 90 % interval
    includes 0) counts as right too. With one seed nothing can be judged: only the winner counts.
    """
    m = claims.finals(metrics.run_metrics(history, split))
    mean_log = m.groupby("schedule", sort=False)["log_final"].mean()
    ranking = (
        pd.DataFrame({"schedule": mean_log.index, "final_loss": 10 ** mean_log.to_numpy()})
        .sort_values("final_loss", kind="stable")
        .reset_index(drop=True)
    )
    winner = str(ranking["schedule"].iloc[0])
    verdicts, also = {}, []
    for other in ranking["schedule"].iloc[1:]:
        v = schedule_against(m, winner, other)
        verdicts[other] = v
        if v.answered and v.word != "lower":
            also.append(other)
    right = guess == winner or guess in also
    return Answer(winner, right, verdicts=verdicts, ranking=ranking, also_right=tuple(also))


def nearest_factor(factor: float) -> str:
    """Returns the answer of ``FACTORS`` nearest to an lr factor, in log (powers of 8).

    >>> nearest_factor(6.0), nearest_factor(1.2), nearest_factor(0.3)
    ('× 8', '× 1 (keep it)', '÷ √8 ≈ 2.8')
    """
    power = math.log(factor) / math.log(8)
    return min(FACTORS, key=lambda name: abs(FACTORS[name] - power))


def batch_lr(factors: pd.DataFrame, guess: str) -> Answer:
    """Returns the batch-size answer: per network the factor its best lr changes by from the
    smallest batch to 8 × it, and the nearest answer; the guess is right when it is the nearest
    for some network. None (nothing right) when no network has both batch sizes.

    Args:
        factors: ``bnlr.batch_size.lr_factor`` of the page's ridge (network, from_batch,
            to_batch, factor).
        guess: one of ``FACTORS``.
    """
    if factors.empty:
        return Answer(None, False)
    per = factors.assign(nearest=[nearest_factor(f) for f in factors["factor"]])
    answer = tuple(dict.fromkeys(per["nearest"]))
    return Answer(answer, guess in answer, per_network=per)
