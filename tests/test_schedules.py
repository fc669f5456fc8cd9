"""Schedules: the spec language, closed-form answers, and the step order of the training loop."""

import math

import pytest
import torch
from torch.optim import lr_scheduler

import bnlr
from bnlr import FAMILIES, OptimizerConfig
from bnlr.schedules import parse_schedule, trajectory


def per_epoch(spec, lr=0.05, epochs=6, spe=1, opt=OptimizerConfig()):
    return list(trajectory(spec, lr, epochs, spe, opt).lr[::spe])


def test_article_lambda_example():
    assert per_epoch("lambda:0.5**epoch", 0.05, 3) == pytest.approx(
        [0.05, 0.025, 0.0125], rel=1e-15
    )


def test_power_is_geron_form():
    lrs = per_epoch("power:s=1,c=1", 0.06, 4)
    assert lrs == pytest.approx([0.06, 0.03, 0.02, 0.015], rel=1e-12)  # lr0, lr0/2, lr0/3, ...
    s, c = 3.0, 0.5
    assert per_epoch(f"power:s={s},c={c}", 0.1, 5) == pytest.approx(
        [0.1 / (1 + t / s) ** c for t in range(5)]
    )


def test_exponential_is_geron_form():
    assert per_epoch("exponential:s=2", 1.0, 5) == pytest.approx(
        [0.1 ** (t / 2) for t in range(5)], rel=1e-12
    )
    assert per_epoch("exponential:gamma=0.5", 1.0, 4) == pytest.approx([1, 0.5, 0.25, 0.125])


def test_piecewise_constant():
    assert per_epoch("step:step_size=2,gamma=0.1", 1.0, 5) == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert per_epoch("multistep:milestones=1|3,gamma=0.5", 1.0, 5) == pytest.approx(
        [1, 0.5, 0.5, 0.25, 0.25]
    )


def test_cosine_closed_form():
    T = 10
    assert per_epoch(f"cosine:T_max={T}", 1.0, T) == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * t / T)) for t in range(T)], abs=1e-12
    )


def test_onecycle_spans_the_run_per_batch_and_cycles_momentum():
    t = trajectory("onecycle", 0.1, 4, 10, OptimizerConfig())
    assert t.every == "batch" and len(t.lr) == 40
    assert t.lr[0] == pytest.approx(0.1 / 25)  # max_lr / div_factor
    assert max(t.lr) == pytest.approx(0.1, rel=1e-3)
    assert t.lr[-1] < 1e-5  # annealed to initial_lr / final_div_factor by the last step
    assert t.momentum[0] == pytest.approx(0.95) and min(t.momentum) == pytest.approx(0.85, abs=1e-3)


def test_cyclic_triangle_per_batch():
    t = trajectory("cyclic:base_lr=0.01,max_lr=0.05,step_size_up=4", 0.05, 2, 8, OptimizerConfig())
    assert t.lr[:9] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05, 0.04, 0.03, 0.02, 0.01])


def test_adam_gets_beta1_cycled():
    t = trajectory("onecycle", 0.01, 2, 5, OptimizerConfig("adam"))
    assert t.momentum[0] == pytest.approx(0.95) and min(t.momentum) < 0.9


def test_warmup_cosine_rises_then_falls():
    lrs = per_epoch("warmup_cosine:warmup=3", 0.3, 10)
    assert lrs[0] == pytest.approx(0.1) and lrs[3] == pytest.approx(0.3) and lrs[-1] < lrs[3]


def test_reference_loop_steps_in_the_documented_order():
    # The reference engine records the lr it trained each batch with, stepping the real scheduler
    # live; it must equal the trajectory of the same scheduler on a bare optimizer.
    g = bnlr.Grid(
        depths=(2,),
        bns=("none",),
        lrs=(0.01,),
        epochs=4,
        schedules=("lambda:0.5**epoch", "onecycle", "step:step_size=1,gamma=0.5"),
    )
    steps = bnlr.train(g, "reference").steps
    for run, spec in enumerate(g.schedules):
        assert list(steps[steps.run == run].lr) == list(
            trajectory(spec, 0.01, 4, 14, OptimizerConfig()).lr
        )


def test_plateau_lowers_lr_when_loss_stalls():
    g = bnlr.Grid(
        depths=(3,),
        bns=("none",),
        lrs=(1e-5,),
        epochs=12,
        schedules=("plateau:patience=1,factor=0.5,threshold=0.5",),
    )
    h = bnlr.train(g, "reference").history
    lrs = h[h.split == "train"].sort_values("epoch").epoch_lr.tolist()
    assert lrs[0] == 1e-5 and lrs[-1] < 1e-5  # a 50 % improvement per epoch is never met: lr halves


@pytest.mark.parametrize(
    "spec, words",
    [
        ("nope", "unknown schedule 'nope'"),
        ("step:size=3", "unknown key 'size'"),
        ("step:step_size=0", "step_size=0 is out of range"),
        ("step:step_size=abc", "is not a whole number"),
        ("multistep:milestones=5|3", "must be increasing"),
        ("plateau:factor=2", "factor=2 is out of range"),
        ("plateau:every=batch", "every=batch is not accepted"),
        ("cyclic:mode=square", "triangular, triangular2 or exp_range"),
        ("onecycle:pct_start=1.5", "out of range"),
        ("cosine_restarts:T_0=0", "T_0=0 is out of range"),
        ("lambda:__import__('os')", "only calls to"),
        ("step:gamma", "needs a value"),
    ],
)
def test_bad_specs_name_the_bad_part(spec, words):
    with pytest.raises(ValueError, match=None) as err:
        parse_schedule(spec)
    assert words in str(err.value)


def test_torch_rejections_become_plain_valueerrors():
    with pytest.raises(ValueError, match=r"base_lr .* above max_lr"):
        bnlr.schedules.check_schedule("cyclic:base_lr=0.5,max_lr=0.1", 0.1, 5, 3)
    with pytest.raises(ValueError, match=r"negative factor .* at epoch 3"):
        bnlr.schedules.check_schedule("lambda:1-epoch/2.5", 0.1, 6, 3)
    with pytest.raises(ValueError, match="warmup=5 must be shorter"):
        bnlr.schedules.check_schedule("warmup_cosine:warmup=5", 0.1, 5, 3)


def test_every_family_is_one_complete_definition():
    for name, family in FAMILIES.items():
        assert family.name == name and family.title and family.formula and family.torch
        assert family.explain or name == "constant"
        for key, spec in family.keys.items():
            assert spec.help and spec.accepted, (name, key)
            if spec.default is not None:  # None: resolved when the scheduler is built
                for v in spec.default if spec.kind == "ints" else (spec.default,):
                    assert spec.check(v), (name, key)
            if spec.kind == "choice":
                assert spec.default in spec.choices
        # the defaults resolve to a real torch scheduler that runs a whole run
        traj = trajectory(name if name != "lambda" else "lambda:1", 0.1, 12, 3)
        assert (traj is None) == (name == "plateau")  # its lr depends on the loss


def by_hand(make, epochs, lr=0.1):
    """The lr of each epoch from a torch scheduler on a bare SGD, stepped once per epoch."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_polynomial_is_torchs_polynomiallr_and_its_formula():
    got = per_epoch("polynomial:total_iters=10,power=2", 0.1, 15)
    assert got == by_hand(lambda o: lr_scheduler.PolynomialLR(o, total_iters=10, power=2.0), 15)
    assert got == pytest.approx([0.1 * (1 - min(t, 10) / 10) ** 2 for t in range(15)], abs=1e-15)
    # default total_iters: the whole run (torch's own default, 5, would leave lr 0 from epoch 5)
    whole = per_epoch("polynomial", 0.1, 8)
    assert whole == pytest.approx([0.1 * (1 - t / 8) for t in range(8)], abs=1e-15)


def test_linear_is_torchs_linearlr_and_its_formula():
    got = per_epoch("linear:start_factor=1,end_factor=0.1,total_iters=4", 0.2, 7)
    assert got == by_hand(
        lambda o: lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=4), 7, 0.2
    )
    want = [0.2 * (1 + (0.1 - 1) * min(t, 4) / 4) for t in range(7)]
    assert got == pytest.approx(want, abs=1e-15)
    # defaults: torch's factors (1/3 → 1), over the whole run
    assert per_epoch("linear", 0.3, 3) == pytest.approx(
        [0.3 * (1 / 3 + 2 / 3 * t / 3) for t in range(3)]
    )


@pytest.mark.parametrize(
    "spec, words",
    [
        ("linear:end_factor=1.5", "end_factor=1.5 is out of range; must be in [0, 1]"),
        ("linear:start_factor=0", "start_factor=0 is out of range"),
        ("polynomial:total_iters=0", "total_iters=0 is out of range; must be ≥ 1"),
        ("polynomial:power=-1", "power=-1 is out of range; must be > 0"),
    ],
)
def test_new_families_check_their_keys(spec, words):
    with pytest.raises(ValueError) as err:
        parse_schedule(spec)
    assert words in str(err.value)
