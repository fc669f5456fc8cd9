"""Claims with evidence: the statistics against hand-computed examples and scipy, the interval's
coverage with no effect and its power, the claims' per-seed effects on made-up metrics, and the
words against the interval."""

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest

import bnlr
from bnlr import claims, evidence
from bnlr.evidence import judge, seeds_holding, sentence, t_interval


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 19, 100, 999])
@pytest.mark.parametrize("level", [0.5, 0.9, 0.92, 0.99])
def test_t_quantile_matches_scipy(df, level):
    stats = pytest.importorskip("scipy.stats")
    assert evidence.t_quantile(level, df) == pytest.approx(stats.t.ppf((1 + level) / 2, df), 1e-12)


def test_t_quantile_by_hand():
    # df 1 is the Cauchy: t = tan(π · level / 2); df 2: P(|T| ≤ t) = t / √(2 + t²)
    assert evidence.t_quantile(0.9, 1) == pytest.approx(math.tan(math.pi * 0.45), 1e-12)
    t = evidence.t_quantile(0.9, 2)
    assert t / math.sqrt(2 + t * t) == pytest.approx(0.9, 1e-12)


def test_t_interval_of_two_values_by_hand():
    # mean 2, sd √2, n 2: 2 ± t₀.₉₂(1) · √2 / √2, t₀.₉₂(1) = tan(0.46 π)
    half = math.tan(0.46 * math.pi)
    assert t_interval([1.0, 3.0]) == pytest.approx((2 - half, 2 + half), 1e-12)
    assert t_interval([0.2] * 8) == pytest.approx((0.2, 0.2))
    assert math.isnan(t_interval([0.2])[0])  # one seed: no interval


SHAPES = {  # per-seed effects of mean 0 and sd 1
    "normal": lambda rng, size: rng.standard_normal(size),
    "skewness 1": lambda rng, size: (rng.gamma(4.0, size=size) - 4.0) / 2.0,
    "Student t3": lambda rng, size: rng.standard_t(3, size=size) / math.sqrt(3.0),
}
TRIALS = 4000  # per cell: the Monte-Carlo sd of a 10 % rate is 0.47 %
MARGIN = 0.015  # 3 Monte-Carlo sd


def names_a_direction(x: np.ndarray, interval=t_interval) -> np.ndarray:
    """Per trial (row of per-seed effects): does the interval exclude 0?"""
    bounds = np.array([interval(row) for row in x])
    return (bounds[:, 0] > 0) | (bounds[:, 1] < 0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [2, 3, 5, 10, 20])
def test_with_no_effect_a_direction_is_named_at_most_1_in_10(shape, n):
    # the 90 % promise at every n: the percentile bootstrap broke it (about 50 % at 2 seeds)
    x = SHAPES[shape](np.random.default_rng([24, n, len(shape)]), (TRIALS, n))
    assert names_a_direction(x).mean() <= 0.10 + MARGIN


@pytest.mark.parametrize("shape", SHAPES)
def test_a_1_sd_effect_at_20_seeds_is_named_9_times_in_10(shape):
    x = SHAPES[shape](np.random.default_rng([20, len(shape)]), (TRIALS, 20)) + 1.0
    bounds = np.array([t_interval(row) for row in x])
    assert (bounds[:, 0] > 0).mean() >= 0.90


def test_judge_states_the_t_interval():
    e = pd.Series([0.3, -0.1, 0.2, 0.5, 0.0, 0.4, 0.1, 0.25], index=range(8))
    v = judge("c", e, "more", "less")
    assert (v.low, v.high) == t_interval(e.to_numpy())
    assert v.sd == pytest.approx(e.std()) and v.effect == pytest.approx(e.mean())


def test_two_seeds_name_a_direction_only_when_they_agree_closely():
    assert judge("c", effects(0.9, 1.0), "more", "less").word == "more"
    v = judge("c", effects(-0.27, -0.0000000001), "more", "less")  # the 2-seed verdict
    assert v.word == "no consistent difference"
    assert v.seeds_needed is not None and v.seeds_needed > 2


def test_seeds_needed_is_the_first_n_whose_interval_clears_0():
    mean, sd = 0.3, 1.0
    n = evidence.seeds_needed(mean, sd)
    half = [evidence.t_quantile(evidence.T_LEVEL, k - 1) * sd / math.sqrt(k) for k in (n - 1, n)]
    assert half[0] >= mean > half[1]
    assert evidence.seeds_needed(0.0, 1.0) is None  # no effect to find
    assert evidence.seeds_needed(1e-3, 1.0) is None  # more than MAX_SEEDS


def test_no_consistent_difference_says_how_many_seeds_it_would_take():
    v = judge("c", effects(0.3, -0.1, 0.4), "more", "less")
    assert v.word == "no consistent difference"
    text = sentence(v, "BN reacts **{word}**", "more")
    assert f"about {v.seeds_needed} seeds to tell" in text and "an estimate" in text
    named = judge("c", effects(0.3, 0.31, 0.29), "more", "less")
    assert named.seeds_needed is None and "to tell" not in sentence(named, "x **{word}**")


@pytest.mark.parametrize(
    "values, chance, words",
    [
        ((0.1, 0.2, 0.3), 1 / 8, "a coin would do this in 1 of 8 tries"),
        ((-0.1, -0.2, -0.3, 0.1), 5 / 16, "a coin would do this in 1 of 3 tries"),
        ((0.1, -0.2), 3 / 4, "a coin would do this in 3 of 4 tries"),
    ],
)
def test_the_sign_count_is_put_against_a_coin(values, chance, words):
    # the chance of at least the majority's count of n heads from a fair coin
    v = judge("c", effects(*values), "more", "less")
    assert v.coin == pytest.approx(chance) and v.coin_words == words
    assert words in sentence(v, "x **{word}**")


@pytest.mark.parametrize(
    "x, printed",
    [(0.0612, "+0.06"), (0.0012, "+0.001"), (-0.00004, "-0.00004"), (-1e-10, "-1.0e-10")],
)
def test_a_bound_near_0_prints_its_side_readably(x, printed):
    assert evidence.bound(x) == printed


def test_ties_do_not_hold():
    assert seeds_holding([0.2, 0.0, -0.1, 0.3, float("nan")]) == 2


def effects(*values, seeds=None):
    return pd.Series(values, index=seeds or range(929, 929 + len(values)), dtype=float)


@pytest.mark.parametrize(
    "values, word",
    [
        ((0.2, 0.3, 0.1, 0.25), "more"),
        ((-0.2, -0.3, -0.1, -0.25), "less"),
        ((0.4, -0.3, 0.1, -0.25), "no consistent difference"),  # the interval straddles 0
    ],
)
def test_words_follow_the_interval(values, word):
    v = judge("c", effects(*values), "more", "less")
    assert v.word == word
    assert (v.low > 0) == (word == "more") and (v.high < 0) == (word == "less")
    text = sentence(v, "BN reacts **{word}**", "more")
    if word == "no consistent difference":
        assert "**more**" not in text and "**No consistent difference**" in text
    else:
        assert f"**{word}**" in text
    assert f"**{v.seeds_holding} of 4** seeds" in text


@pytest.mark.parametrize("sign", [1, -1])
def test_the_printed_interval_is_on_the_side_its_words_say(sign):
    # effects whose interval clears 0 by less than 0.005: "+0.00" would contradict "more"
    v = judge("c", effects(*(sign * e for e in (0.004, 0.006, 0.005, 0.0045))), "more", "less")
    assert v.word == ("more" if sign > 0 else "less")
    text = sentence(v, "BN reacts **{word}**", "more")
    low, high = (float(b) for b in re.search(r"interval \[(\S+), (\S+)\]", text).groups())
    assert (low > 0) if sign > 0 else (high < 0)
    assert abs(low - v.low) <= 0.005 and abs(high - v.high) <= 0.005  # the same numbers, rounded


def test_one_seed_cannot_answer_and_never_states_a_direction():
    v = judge("c", effects(0.8), "more", "less")
    assert v.word == "cannot say" and "one seed" in v.reason
    text = sentence(v, "BN reacts **{word}**", "more")
    assert "**more**" not in text and "**less**" not in text and "No answer" in text


def test_a_diverged_seed_is_left_out_and_named():
    v = judge("c", effects(0.2, float("nan"), 0.3, 0.1), "more", "less")
    assert (v.seeds, v.seeds_holding, v.left_out) == (3, 3, (930,))
    assert v.effect == pytest.approx(0.2)
    assert "1 seed(s) left out" in sentence(v, "x **{word}**")
    allgone = judge("c", effects(float("nan"), float("nan")), "more", "less")
    assert allgone.word == "cannot say" and "diverged" in allgone.reason


def metrics_of(rows):
    """A run_metrics-like table from (arch, bn, lr, seed, final_loss) rows."""
    return pd.DataFrame(rows, columns=["arch", "bn", "lr", "seed", "final_loss"]).assign(
        depth=3, activation="tanh", optimizer="SGD", schedule="constant"
    )


def test_bn_sensitivity_effect_by_hand():
    rows = []
    # seed 1: the BN model spans 2 decades (1 → 100), the plain one 1 decade: effect +1
    # seed 2: BN spans 0.5 decades, plain 1.5: effect −1
    for seed, bn_span, plain_span in ((1, 2.0, 1.0), (2, 0.5, 1.5)):
        for lr, frac in ((0.1, 1.0), (0.01, 0.0)):
            rows.append(("3×4 tanh · BN pre", "pre", lr, seed, 10 ** (bn_span * frac)))
            rows.append(("3×4 tanh · no BN", "none", lr, seed, 10 ** (plain_span * frac)))
    per_seed = claims.sensitivity_per_seed(metrics_of(rows))
    e = claims.bn_sensitivity_effects(per_seed)
    assert e.to_dict() == pytest.approx({1: 1.0, 2: -1.0})
    pairs = claims.bn_pair_effects(per_seed)
    assert pairs["effect"].tolist() == pytest.approx([1.0, -1.0])
    assert set(pairs["plain"]) == {"3×4 tanh · no BN"}


def test_u_shape_effect_by_hand():
    # seed 1: losses 10, 1, 100 over lrs 1e-3, 1e-2, 1e-1: best inside, better end 1 decade worse
    # seed 2: losses 1, 10, 100: the best lr is the grid's end: 0
    rows = [("a", "none", lr, 1, v) for lr, v in ((1e-3, 10.0), (1e-2, 1.0), (1e-1, 100.0))]
    rows += [("a", "none", lr, 2, v) for lr, v in ((1e-3, 1.0), (1e-2, 10.0), (1e-1, 100.0))]
    rows += [("a", "none", lr, 3, v) for lr, v in ((1e-3, 10.0), (1e-2, 1.0), (1e-1, np.nan))]
    e = claims.u_shape_effects(metrics_of(rows))
    assert e[1] == pytest.approx(1.0) and e[2] == 0.0
    assert e[3] == pytest.approx(1.0)  # a diverged end counts as worse: the small end decides


def test_schedule_effect_by_hand():
    rows = [("a", "none", 0.05, s, v) for s, v in ((1, 1.0), (2, 1.0))]
    m = metrics_of(rows)
    m = pd.concat([m, m.assign(schedule="step", final_loss=[0.1, 10.0])], ignore_index=True)
    e = claims.schedule_effects(m, "step").set_index("seed")
    assert e.loc[1, "effect"] == pytest.approx(1.0) and e.loc[2, "effect"] == pytest.approx(-1.0)
    assert e.loc[1, "ratio"] == pytest.approx(10.0)


def test_best_lr_effects_by_hand():
    best = pd.DataFrame(
        {
            "arch": ["b", "p", "b", "p"],
            "bn": ["pre", "none", "pre", "none"],
            "seed": [1, 1, 2, 2],
            "best_lr": [0.1, 0.01, 0.01, 0.01],
        }
    )
    assert claims.bn_best_lr_effects(best).to_dict() == pytest.approx({1: 1.0, 2: 0.0})


def test_a_mean_effect_near_zero_is_printed_with_the_digits_that_show_it():
    v = judge("BN models react more", pd.Series([-0.003, 0.001, -0.004]), "more", "less")
    text = sentence(v, "BN models react **{word}**", "more")
    assert "mean effect -0.002" in text and "-0.00," not in text


def test_a_replication_is_the_same_grid_over_20_seeds_and_the_same_object_for_an_equal_grid():
    grid = bnlr.Grid(lrs=(0.01, 0.1), seeds=(5,))
    replica = claims.replicate(grid)
    assert replica.seeds == tuple(range(929, 949))
    assert dataclasses.replace(replica, seeds=grid.seeds) == grid  # nothing else changed
    again = claims.replicate(bnlr.Grid(lrs=(0.01, 0.1), seeds=(5,)))  # a new, equal grid
    assert again is replica and again.experiment is replica.experiment
    assert claims.replicate(bnlr.Grid(lrs=(0.01, 0.2))).lrs == (0.01, 0.2)
