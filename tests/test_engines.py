"""The batched engine against the reference loop (plain nn.Module + torch.optim + lr_scheduler)."""

import threading

import numpy as np
import pandas as pd
import pytest
import torch

import bnlr
from bnlr import Experiment, ModelConfig, OptimizerConfig, RunConfig

TOL = 1e-9  # relative, float64, non-chaotic learning rates


def both(exp: Experiment):
    return bnlr.train(exp, "reference"), bnlr.train(exp, "batched")


def assert_same(ref: bnlr.Result, fast: bnlr.Result, tol: float = TOL) -> None:
    a, b = ref.history, fast.history
    pd.testing.assert_frame_equal(a.drop(columns="loss"), b.drop(columns="loss"))
    np.testing.assert_array_equal(
        np.isfinite(a["loss"]), np.isfinite(b["loss"])
    )  # diverged at the same epoch
    finite = np.isfinite(a["loss"])
    rel = (np.abs(a["loss"] - b["loss"]) / np.abs(a["loss"]))[finite]
    assert rel.max() <= tol, (
        f"largest relative difference {rel.max():.3g} at\n{a.loc[rel.idxmax()]}"
    )
    np.testing.assert_array_equal(ref.steps["lr"], fast.steps["lr"])
    np.testing.assert_array_equal(ref.steps["momentum"], fast.steps["momentum"])


def exp_of(runs, epochs=40, **kw) -> Experiment:
    return Experiment(tuple(runs), epochs=epochs, dtype="float64", **kw)


def test_every_bn_placement_and_activation_matches():
    runs = [
        RunConfig(ModelConfig((4, 4, 4), act, bn), lr, seed=929)
        for bn in ("none", "pre", "post")
        for act in ("tanh", "relu", "sigmoid", "leaky_relu")
        for lr in (0.005, 0.002)
    ]
    assert_same(*both(exp_of(runs)))


@pytest.mark.parametrize(
    "opt, lr",
    [
        (OptimizerConfig("sgd", momentum=0.9), 0.001),
        (OptimizerConfig("sgd", momentum=0.9, nesterov=True, weight_decay=1e-3), 0.001),
        (OptimizerConfig("sgd", momentum=0.5, dampening=0.3), 0.003),
        (OptimizerConfig("adam"), 0.001),
        (OptimizerConfig("adam", weight_decay=1e-2, betas=(0.8, 0.99)), 0.001),
        (OptimizerConfig("adamw"), 0.001),
    ],
)
def test_every_optimizer_matches(opt, lr):
    runs = [
        RunConfig(ModelConfig((4, 4, 4), "tanh", bn), lr, seed=s, optimizer=opt)
        for bn in ("none", "pre", "post")
        for s in (929, 930)
    ]
    ref, fast = both(exp_of(runs))
    if opt.name == "sgd":
        assert_same(ref, fast)
        return
    # With BN "pre", the bias of the Linear before each BN has a true gradient of 0 (BN removes
    # the mean), so what either engine computes for it is rounding noise, ~1e-17. Adam divides
    # by sqrt(v) and turns that noise into steps of ±lr: the two engines then agree only to
    # ~1e-8 (the bias reaches the loss through BN's running mean, in eval mode).
    pre = ref.runs.index[ref.runs.bn == "pre"]

    def calm(r: bnlr.Result) -> bnlr.Result:
        return bnlr.Result(
            r.history[~r.history.run.isin(pre)].reset_index(drop=True),
            r.steps[~r.steps.run.isin(pre)],
            r.runs,
        )

    assert_same(calm(ref), calm(fast))
    assert_same(ref, fast, tol=1e-7)


SCHEDULES = [
    "constant",
    "power:s=2,c=1",
    "exponential:s=20",
    "exponential:gamma=0.9",
    "step:step_size=7,gamma=0.5",
    "multistep:milestones=5|15,gamma=0.3",
    "plateau:patience=2,factor=0.5",
    "plateau:patience=1,monitor=test,threshold=0.01",
    "cyclic",
    "cyclic:mode=triangular2,every=epoch",
    "cyclic:mode=exp_range,gamma=0.999",
    "onecycle",
    "onecycle:three_phase=true,anneal_strategy=linear",
    "cosine",
    "cosine:T_max=10,every=batch",
    "cosine_restarts:T_0=5,T_mult=2",
    "warmup_cosine:warmup=5",
    "polynomial:power=2",
    "linear:start_factor=1,end_factor=0.2,total_iters=30",
    "lambda:0.5**epoch",
    "lambda:1/(1+epoch/10)",
]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_family_matches(schedule):
    # CyclicLR and OneCycleLR also cycle SGD's momentum to 0.8–0.95, a tenfold larger effective
    # step: they need a smaller lr to stay out of the chaotic regime.
    lr = 0.001 if schedule.startswith(("cyclic", "onecycle")) else 0.01
    runs = [
        RunConfig(ModelConfig((4, 4, 4), "tanh", bn), lr, seed=929, schedule=schedule)
        for bn in ("none", "pre")
    ]
    assert_same(*both(exp_of(runs)))


@pytest.mark.parametrize("schedule", ["cyclic", "onecycle"])
def test_momentum_cycling_with_adam_cycles_beta1(schedule):
    runs = [
        RunConfig(
            ModelConfig((4, 4), "tanh", bn),
            0.003,
            schedule=schedule,
            optimizer=OptimizerConfig("adam"),
        )
        for bn in ("none", "post")
    ]  # not "pre": see test_every_optimizer_matches
    ref, fast = both(exp_of(runs, epochs=10))
    assert_same(ref, fast)
    # beta1 at every step is exactly what the torch scheduler sets on a bare Adam
    want = bnlr.trajectory(schedule, 0.003, 10, 14, OptimizerConfig("adam")).momentum
    for run in (0, 1):
        assert ref.steps[ref.steps.run == run]["momentum"].tolist() == list(want)
    assert min(want) < 0.9 - 0.04  # and it really moves away from Adam's 0.9


def test_first_epoch_matches_at_any_lr():
    runs = [
        RunConfig(ModelConfig((4, 4, 4, 4), "tanh", bn), lr)
        for bn in ("none", "pre", "post")
        for lr in (0.1, 0.3, 1.0)
    ]
    assert_same(*both(exp_of(runs, epochs=1)))


def test_each_steps_batch_loss_matches():
    """``record_step_losses``: every step's batch MSE before the step (the LR range test reads
    them), from the batched engine's torch path and the reference loop's ``loss.item()``."""
    runs = [
        RunConfig(ModelConfig((4, 4, 4), "tanh", bn), lr, seed=seed, optimizer=opt)
        for bn in ("none", "pre", "post")
        for lr in (0.001, 0.0003)
        for seed in (929, 930)
        for opt in (OptimizerConfig("sgd", momentum=0.9), OptimizerConfig("adam"))
    ]
    exp = exp_of(runs, epochs=5)
    ref, fast = (bnlr.train(exp, e, record_step_losses=True) for e in ("reference", "batched"))
    assert_same(ref, fast)
    assert len(ref.steps) == len(runs) * 5 * exp.steps_per_epoch
    np.testing.assert_allclose(fast.steps["loss"], ref.steps["loss"], rtol=TOL)
    assert (ref.steps["loss"] > 0).all() and "loss" not in bnlr.train(exp).steps


def test_float32_engines_agree_loosely():
    runs = [RunConfig(ModelConfig((4, 4, 4), "tanh", bn), 0.005) for bn in ("none", "pre")]
    exp = Experiment(tuple(runs), epochs=10, dtype="float32")
    assert_same(*both(exp), tol=1e-4)


def test_a_diverging_run_does_not_disturb_its_neighbours():
    calm = [RunConfig(ModelConfig((4, 4, 4), "tanh", "none"), lr) for lr in (0.01, 0.005)]
    wild = RunConfig(ModelConfig((4, 4, 4), "tanh", "none"), 10.0)  # the largest lr accepted
    together = bnlr.train(exp_of([calm[0], wild, calm[1]], epochs=15), "batched")
    alone = bnlr.train(exp_of(calm, epochs=15), "batched")
    h = together.history
    np.testing.assert_array_equal(
        h[h.run == 0].loss.to_numpy(), alone.history[alone.history.run == 0].loss.to_numpy()
    )
    np.testing.assert_array_equal(
        h[h.run == 2].loss.to_numpy(), alone.history[alone.history.run == 1].loss.to_numpy()
    )
    # the wild run is marked diverged from its divergence epoch on, with no loss after it
    div = together.runs.loc[1, "diverged_epoch"]
    ref = bnlr.train(exp_of([wild], epochs=15), "reference").runs.loc[0, "diverged_epoch"]
    assert div == ref and 1 <= div <= 15
    w = h[(h.run == 1) & (h.split == "train")]
    assert (w.diverged == (w.epoch >= div)).all()
    assert w[w.epoch > div].loss.isna().all() and w[w.epoch < div].loss.notna().all()


def test_runs_differing_only_in_lr_share_initial_weights_and_batch_order():
    # At lr → 0 nothing moves: every run's first-epoch loss is the loss of the shared initial
    # weights.
    runs = [RunConfig(ModelConfig((4, 4, 4), "tanh", "none"), lr, seed=7) for lr in (1e-12, 2e-12)]
    h = bnlr.train(exp_of(runs, epochs=1), "batched").history
    a, b = h[h.run == 0].loss.to_numpy(), h[h.run == 1].loss.to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_same_config_same_process_bit_identical_and_threads_isolated():
    g1 = bnlr.Grid(depths=(3,), bns=("none", "pre"), lrs=(0.01, 0.05), epochs=8)
    g2 = bnlr.Grid(
        depths=(4,), bns=("post",), lrs=(0.02,), seeds=(1, 2), epochs=8, schedules=("onecycle",)
    )
    alone1, alone2 = bnlr.train(g1).history, bnlr.train(g2).history
    pd.testing.assert_frame_equal(alone1, bnlr.train(g1).history)
    out = {}
    threads = [
        threading.Thread(target=lambda k, g: out.__setitem__(k, bnlr.train(g).history), args=(k, g))
        for k, g in (("a", g1), ("b", g2))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pd.testing.assert_frame_equal(out["a"], alone1)
    pd.testing.assert_frame_equal(out["b"], alone2)


def test_global_rng_is_never_touched():
    state = torch.get_rng_state()
    bnlr.train(bnlr.Grid(depths=(3,), lrs=(0.01,), epochs=2), "batched")
    bnlr.train(bnlr.Grid(depths=(3,), lrs=(0.01,), epochs=2), "reference")
    assert torch.equal(state, torch.get_rng_state())


def test_progress_reports_every_run_epoch_and_cancel_stops():
    seen = []
    g = bnlr.Grid(epochs=5)
    bnlr.train(g, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(g.experiment.runs) * 5,) * 2
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:]))
    for engine in ("batched", "reference"):
        with pytest.raises(bnlr.Cancelled):
            bnlr.train(g, engine, cancel=lambda: True)


def test_history_is_tidy():
    g = bnlr.Grid(
        depths=(3,),
        bns=("none", "pre"),
        lrs=(0.01, 0.005),
        seeds=(1, 2),
        epochs=3,
        schedules=("step:step_size=1,gamma=0.5",),
    )
    r = bnlr.train(g)
    h, runs = r.history, g.experiment.runs
    assert len(h) == len(runs) * 3 * 2 and len(r.steps) == len(runs) * 3 * 14
    # every row carries its run's settings, and its loss is that run's alone: the same run
    # trained by itself by the reference engine gives the same curve
    for run, cfg in enumerate(runs):
        rows = h[h.run == run]
        assert set(rows.bn) == {cfg.model.bn} and set(rows.lr) == {cfg.lr}
        assert set(rows.seed) == {cfg.seed} and set(rows.depth) == {3}
        alone = bnlr.train(Experiment((cfg,), epochs=3), "reference").history
        np.testing.assert_allclose(rows.loss.to_numpy(), alone.loss.to_numpy(), rtol=1e-4)
        # epoch_lr is the lr the epoch trained at: lr, lr/2, lr/4
        train_rows = rows[rows.split == "train"].sort_values("epoch")
        np.testing.assert_allclose(train_rows.epoch_lr, [cfg.lr, cfg.lr / 2, cfg.lr / 4])
        assert not rows.diverged.any()
