"""The LR range test: its rules on tiny hand-made curves; the test itself vs a plain torch loop."""

import math

import pandas as pd
import pytest
import torch
from torch import nn

import bnlr
from bnlr import lrfinder
from bnlr.data import batch_order, make_data
from bnlr.models import MLP, initial_parameters


def test_smooth_is_the_bias_corrected_ema():
    # beta 0.5: avg = 0.5, 1.75, 2.375; corrections 0.5, 0.75, 0.875
    assert lrfinder.smooth([1.0, 3.0, 3.0], beta=0.5).tolist() == pytest.approx(
        [1.0, 1.75 / 0.75, 2.375 / 0.875]
    )
    assert lrfinder.smooth([2.0, 2.0, 2.0]).tolist() == pytest.approx([2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "smoothed, expected",
    [
        ([5.0, 2.0, 3.0, 9.0], 3),  # 9 > 4 × 2
        ([5.0, 2.0, 8.0, 9.0], 3),  # 8 is not > 8
        ([5.0, 4.0, 3.0], None),
        ([5.0, float("nan")], 1),
    ],
)
def test_stop_index(smoothed, expected):
    assert lrfinder.stop_index(smoothed, 4.0) == expected


def test_steep_picks_the_start_of_the_steepest_fall_per_log_lr():
    # slopes per decade: -1, -4, +15 → the fall from 1e-2 to 1e-1
    assert lrfinder.steep([1e-3, 1e-2, 1e-1, 1.0], [10.0, 9.0, 5.0, 20.0]) == 1e-2
    # the slope is per log lr: a 2-point fall over 1 decade beats a 3-point fall over 2
    assert lrfinder.steep([1e-4, 1e-2, 1e-1], [10.0, 7.0, 5.0]) == 1e-2


def test_valley_by_hand():
    # longest decreasing run: 5, 4, 3, 2, 1 (indices 0,1,3,4,5): end 5, start 0, index 0 + 1 + 0 = 1
    assert lrfinder.valley([1, 2, 3, 4, 5, 6, 7], [5, 4, 6, 3, 2, 1, 7]) == 2.0
    # a long clean fall 0..9: end 9, start 9 - 10 → clamped 0, index 0 + 3 + 1 = 4
    assert lrfinder.valley(list(range(10, 20)), list(range(10, 0, -1))) == 14.0
    # a two-point valley at the start: fastai's index would be -1 (the last lr); ours is 0
    assert lrfinder.valley([1, 2, 3], [5, 4, 6]) == 1.0


def test_minimum_is_a_tenth_of_the_lr_at_the_lowest_loss():
    assert lrfinder.minimum([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 1.0, 2.0]) == pytest.approx(0.3)


def test_trim_skips_a_tenth_at_the_start_and_five_at_the_end():
    assert lrfinder.trim(100, 100) == slice(10, 95)
    assert lrfinder.trim(12, 100) == slice(10, 12)  # short curve: keep at least two points


def test_suggestions_and_distance_to_the_sweep():
    lrs = [10.0 ** (k / 4 - 5) for k in range(20)]
    losses = (
        [10.0 - 0.1 * k for k in range(10)]
        + [6.0 - 0.5 * k for k in range(5)]
        + [5.0, 6.0, 9.0, 12.0, 15.0]
    )
    curves = pd.DataFrame({"arch": "a", "seed": 7, "bn": "none", "lr": lrs, "smooth_loss": losses})
    s = lrfinder.suggestions(curves, num_it=20).set_index("rule")
    # trimmed to indices 2..14: one fall of 3.1 from index 9 to 10, the lowest loss (4.0) at 14
    assert s.loc["steep", "lr"] == pytest.approx(lrs[9])
    assert s.loc["minimum", "lr"] == pytest.approx(lrs[14] / 10)
    best = pd.DataFrame({"arch": ["a", "a"], "seed": [7, 8], "best_lr": [lrs[9], 1.0]})
    d = lrfinder.against_sweep(s.reset_index(), best)  # each test against its own seed's sweep
    assert d.set_index("rule").loc["steep", "decades"] == pytest.approx(0.0)
    assert d.set_index("rule").loc["minimum", "ratio"] == pytest.approx(lrs[14] / 10 / lrs[9])
    dist = lrfinder.rule_distances(d).set_index("rule")
    assert dist.loc["minimum", "median"] == pytest.approx(math.log10(lrs[14] / 10 / lrs[9]))
    assert dist.loc["steep", "n"] == 1


def test_range_test_rejects_bad_settings():
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lrfinder.RangeTest(start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_it"):
        lrfinder.RangeTest(num_it=3)


def plain_range_test(run, exp, start_lr, end_lr, num_it, beta=0.98):
    """The range test written out by hand: lr set from its formula, no scheduler, no helper."""
    data = make_data(exp.data)
    gen = torch.Generator().manual_seed(run.seed)
    model = MLP(run.model, 5).load_initial(initial_parameters(run.model, 5, gen))
    order = batch_order(len(data.X_train), math.ceil(num_it / exp.steps_per_epoch), gen)
    opt = torch.optim.SGD(model.parameters(), lr=start_lr)
    lrs, losses, smooth, avg, best = [], [], [], 0.0, math.inf
    batches = [idx for epoch in order for idx in epoch.split(exp.batch_size)]
    for i, idx in enumerate(batches[:num_it]):
        lr = start_lr * (end_lr / start_lr) ** (i / (num_it - 1))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(data.X_train[idx]), data.y_train[idx])
        loss.backward()
        opt.step()
        avg = beta * avg + (1 - beta) * loss.item()
        lrs.append(lr), losses.append(loss.item()), smooth.append(avg / (1 - beta ** (i + 1)))
        if smooth[-1] > 4 * best or not math.isfinite(smooth[-1]):
            break
        best = min(best, smooth[-1])
    return lrs, losses, smooth


@pytest.mark.parametrize("bn", ["none", "pre"])
def test_range_test_matches_a_plain_torch_loop(bn):
    exp = bnlr.Grid(depths=(3,), bns=(bn,), lrs=(0.01,)).experiment
    test = lrfinder.RangeTest(start_lr=1e-4, end_lr=30.0, num_it=120)
    curve = lrfinder.run_range_test(exp.runs[0], exp, test)
    lrs, losses, smooth = plain_range_test(exp.runs[0], exp, 1e-4, 30.0, 120)
    assert len(curve) == len(lrs) < 120  # it stopped by the 4× rule before the end
    assert curve["lr"].tolist() == pytest.approx(lrs, rel=1e-9)
    assert curve["loss"].tolist() == pytest.approx(losses, rel=1e-4)
    assert curve["smooth_loss"].tolist() == pytest.approx(smooth, rel=1e-4)


def test_range_test_covers_every_network_and_seed_once():
    exp = bnlr.Grid(lrs=(0.1, 0.01), seeds=(929, 930)).experiment
    curves = lrfinder.range_test(exp, lrfinder.RangeTest(num_it=20))
    pairs = curves.groupby(["arch", "seed"]).size()
    assert set(pairs.index) == {(r.model.label, r.seed) for r in exp.runs}  # not per lr


@pytest.mark.parametrize(
    "optimizer",
    [bnlr.OptimizerConfig("sgd"), bnlr.OptimizerConfig("sgd", 0.9), bnlr.OptimizerConfig("adam")],
    ids=["sgd", "momentum", "adam"],
)
def test_range_tests_trained_together_are_each_networks_own(optimizer):
    """``range_test`` trains every network and seed at once on the batched engine; each curve
    is ``run_range_test`` of that run alone (its initial weights, batch order, the real
    ExponentialLR), cut where it stops, to 1e-9 in float64. Without BN over the whole curve;
    with BN up to lr 0.1: past it BN's runs are chaotic, and rounding grows (the stop may then
    come a batch apart)."""
    grid = bnlr.Grid(lrs=(0.1,), seeds=(929, 930), optimizer=optimizer, dtype="float64")
    test = lrfinder.RangeTest(num_it=100)
    curves = lrfinder.range_test(grid.experiment, test)
    stopped = 0
    for run in grid.experiment.runs:
        alone = lrfinder.run_range_test(run, grid.experiment, test)
        mine = curves[(curves["arch"] == run.model.label) & (curves["seed"] == run.seed)]
        assert (mine["optimizer"] == optimizer.label).all()
        if run.model.bn == "none":
            assert len(mine) == len(alone)
            stopped += len(mine) < test.num_it
        n = len(alone) if run.model.bn == "none" else int((alone["lr"] <= 0.1).sum())
        for column in ("lr", "loss", "smooth_loss"):
            assert mine[column].to_numpy()[:n] == pytest.approx(
                alone[column].to_numpy()[:n], rel=1e-9
            )
    assert optimizer.name == "adam" or stopped  # the 4× rule cut some curves
