"""bnlr.quiz: the answers a classroom question reveals, against answers worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from bnlr import quiz
from bnlr.evidence import judge
from ui.classroom import teacher_link


def test_decades_off_is_the_distance_in_log10():
    assert quiz.decades_off(0.01, 0.1) == pytest.approx(1.0)
    assert quiz.decades_off(0.3, 0.003) == pytest.approx(2.0)
    assert quiz.decades_off(0.03, 0.1) == pytest.approx(math.log10(0.1 / 0.03))  # 0.523
    with pytest.raises(ValueError, match="must be > 0"):
        quiz.decades_off(0.0, 0.1)


def test_best_lr_scores_the_guess_against_each_network_and_the_nearest():
    best = pd.DataFrame({"arch": ["A", "B", "C"], "best_lr": [0.1, 0.01, 0.1]})
    a = quiz.best_lr(best, 0.03)
    assert a.answer == (0.01, 0.1)
    by = a.per_network.set_index("arch")["decades"]
    assert by["A"] == pytest.approx(math.log10(0.1) - math.log10(0.03))  # 0.523
    assert by["B"] == pytest.approx(math.log10(0.03) - math.log10(0.01))  # 0.477, the nearest
    assert a.decades == pytest.approx(by["B"]) and not a.right
    assert quiz.best_lr(best, 0.01).right and quiz.best_lr(best, 0.01).decades == 0


def test_diverge_answer_is_the_smallest_lr_where_a_run_diverged():
    bands = pd.DataFrame(
        {"arch": ["A"] * 3 + ["B"] * 3, "lr": [0.01, 0.1, 1.0] * 2, "diverged": [0, 0, 2, 0, 1, 2]}
    )
    a = quiz.diverge(bands, 1.0)
    assert a.answer == 0.1 and not a.right and a.decades == pytest.approx(1.0)
    assert quiz.diverge(bands, 0.1).right
    assert not quiz.diverge(bands, quiz.NONE_DIVERGES).right
    calm = bands.assign(diverged=0)
    assert quiz.diverge(calm, quiz.NONE_DIVERGES).right
    assert (
        quiz.diverge(calm, 1.0).answer == quiz.NONE_DIVERGES and not quiz.diverge(calm, 1.0).right
    )


def _verdict(effects):
    return judge("c", pd.Series(effects, index=range(len(effects))), "more", "less", "decades")


def test_bn_more_answer_is_the_verdicts_word():
    assert quiz.bn_more(_verdict([0.2, 0.3, 0.25]), "yes").right
    assert quiz.bn_more(_verdict([-0.2, -0.3, -0.25]), "no").right
    mixed = quiz.bn_more(_verdict([0.3, -0.3, 0.1, -0.1]), "yes")
    assert mixed.answer == "no consistent difference" and not mixed.right
    one_seed = quiz.bn_more(_verdict([0.3]), "yes")
    assert one_seed.answer is None and not one_seed.right  # cannot say: nothing counts as right


def _history(final: dict[str, list[float]]) -> pd.DataFrame:
    """A two-epoch history: per schedule, one model, the given last-epoch train loss per seed."""
    rows = []
    for s, (schedule, losses) in enumerate(final.items()):
        for seed, loss in enumerate(losses):
            run = s * 100 + seed
            for epoch, value in ((1, 10.0), (2, loss)):
                rows.append(
                    {
                        "run": run,
                        "split": "train",
                        "epoch": epoch,
                        "loss": value,
                        "arch": "3×4 tanh · no BN",
                        "bn": "none",
                        "schedule": schedule,
                        "lr": 0.05,
                        "seed": 929 + seed,
                    }
                )
    return pd.DataFrame(rows)


def test_best_schedule_counts_what_the_seeds_cannot_tell_apart():
    # A is lowest in every seed; B is as low as A within the seeds' spread; constant clearly higher
    h = _history(
        {
            "constant": [1.0, 1.2, 0.9, 1.1],
            "A": [0.10, 0.11, 0.09, 0.10],
            "B": [0.09, 0.13, 0.08, 0.12],
        }
    )
    a = quiz.best_schedule(h, "B")
    geo = {s: 10 ** np.mean(np.log10(v)) for s, v in {"A": [0.10, 0.11, 0.09, 0.10]}.items()}
    assert a.answer == "A" and a.ranking["final_loss"].iloc[0] == pytest.approx(geo["A"])
    assert list(a.ranking["schedule"]) == ["A", "B", "constant"]
    assert a.also_right == ("B",) and a.right  # B is not consistently beaten
    assert a.verdicts["constant"].word == "lower" and not quiz.best_schedule(h, "constant").right
    one = quiz.best_schedule(_history({"constant": [1.0], "A": [0.1]}), "A")
    assert one.answer == "A" and one.right and not one.verdicts["constant"].answered


def test_teacher_link_keeps_every_setting_and_adds_the_class_ones():
    link = teacher_link(
        "http://host/lr-curve",
        {"epochs": ["5"], "depths": ["3", "4"], "quiz": ["old"], "present": ["false"]},
        "best_lr",
        ["seeds", "n"],
        True,
    )
    assert link == (
        "http://host/lr-curve?epochs=5&depths=3&depths=4&present=true&quiz=best_lr&hide=seeds,n"
    )
    assert teacher_link("", {}, None, [], False) == ""
