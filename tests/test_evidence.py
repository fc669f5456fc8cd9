"""Claims with evidence: the statistics against hand-computed examples, the claims' per-seed
effects on made-up metrics, and the words against the interval."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from bnlr import claims
from bnlr.evidence import bootstrap_interval, judge, seeds_holding, sentence


def test_bootstrap_of_two_values_spans_them():
    # resampling 2 seeds: the mean is a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4, so the
    # 5 % and 95 % quantiles of the resampled means are a and b
    assert bootstrap_interval([1.0, 3.0]) == (1.0, 3.0)


def test_bootstrap_is_seeded_contains_the_mean_and_shrinks_with_agreement():
    x = [0.3, -0.1, 0.2, 0.5, 0.0, 0.4, 0.1, 0.25]
    a, b = bootstrap_interval(x), bootstrap_interval(x)
    assert a == b  # the same seeds always give the same interval
    assert a[0] < np.mean(x) < a[1]
    assert bootstrap_interval([0.2] * 8) == (0.2, 0.2)
    assert math.isnan(bootstrap_interval([0.2])[0])  # one seed: no interval


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
