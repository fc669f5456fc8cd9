"""The generated PyTorch script, run as its own program, gives bnlr's reference losses exactly."""

import ast
import csv
import io
import subprocess
import sys

import pytest
import torch

import bnlr
from bnlr.codegen import optimizer_states, script

torch.set_num_threads(1)  # as the generated script (and bnlr's app): sums round the same way

SGD, MOMENTUM, ADAM = (
    bnlr.OptimizerConfig(),
    bnlr.OptimizerConfig(momentum=0.9),
    bnlr.OptimizerConfig(name="adam"),
)
TANH, BN_PRE = bnlr.ModelConfig(), bnlr.ModelConfig(bn="pre")
RELU_POST = bnlr.ModelConfig(widths=(5, 3), activation="relu", bn="post", bn_momentum=0.3)


def experiment() -> bnlr.Experiment:
    runs = [
        bnlr.RunConfig(TANH, 0.05, 929, "lambda:0.5 ** epoch", SGD),
        bnlr.RunConfig(BN_PRE, 0.05, 929, "lambda:max(0.2, exp(-epoch / 2))", SGD),
        bnlr.RunConfig(TANH, 0.02, 930, "onecycle:pct_start=0.25", MOMENTUM),
        bnlr.RunConfig(BN_PRE, 0.01, 929, "cyclic:mode=triangular2,step_size_up=7", ADAM),
        bnlr.RunConfig(BN_PRE, 0.05, 929, "plateau:patience=0,threshold=0.5,factor=0.5", SGD),
        bnlr.RunConfig(TANH, 0.05, 929, "plateau:patience=0,threshold=0.5,monitor=test", MOMENTUM),
        bnlr.RunConfig(RELU_POST, 0.03, 929, "warmup_cosine:warmup=2", SGD),
        bnlr.RunConfig(RELU_POST, 0.03, 929, "power:s=2,c=1.5", ADAM),
        bnlr.RunConfig(TANH, 0.05, 929, "constant", SGD),
        bnlr.RunConfig(BN_PRE, 0.05, 929, "polynomial:total_iters=3,power=2", MOMENTUM),
        bnlr.RunConfig(TANH, 0.05, 930, "linear:start_factor=0.5,end_factor=0.1", ADAM),
    ]
    return bnlr.Experiment(tuple(runs), epochs=5, dtype="float64")


def run_script(code: str) -> dict[tuple[int, int], tuple[float, float]]:
    # The script sets one thread, as this process: a parallel sum over the 700 training samples
    # rounds differently with another thread count (~1e-9 relative).
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return {
        (int(r["run"]), int(r["epoch"])): (float(r["train_loss"]), float(r["test_loss"]))
        for r in csv.DictReader(io.StringIO(out.stdout))
    }


def test_script_reproduces_reference_engine():
    exp = experiment()
    got = run_script(script(exp))
    hist = bnlr.train(exp, engine="reference").history
    want = hist.pivot_table(index=["run", "epoch"], columns="split", values="loss")
    assert len(got) == len(want) == len(exp.runs) * exp.epochs
    for (run, epoch), (train, test) in got.items():
        assert train == pytest.approx(want.loc[(run, epoch), "train"], rel=1e-12)
        assert test == pytest.approx(want.loc[(run, epoch), "test"], rel=1e-12)
    # the plateau runs really did lower their lr, so the metric reached the scheduler
    lrs = hist[(hist.run == 4) & (hist.split == "train")].epoch_lr
    assert lrs.iloc[-1] < lrs.iloc[0]


def test_script_subset_float32_prints_the_chosen_runs_only():
    exp = bnlr.Grid(
        depths=(3,),
        bns=("none", "pre"),
        lrs=(0.05,),
        schedules=("step:step_size=1,gamma=0.5",),
        epochs=2,
    ).experiment
    got = run_script(script(exp, runs=[1]))
    hist = bnlr.train(exp, engine="reference").history
    assert sorted(got) == [(1, 1), (1, 2)]
    for (run, epoch), (train, _) in got.items():
        row = hist[(hist.run == run) & (hist.epoch == epoch) & (hist.split == "train")]
        assert train == row.loss.item()  # float32 printed with repr: the very same number


def test_script_imports_only_torch_and_math():
    tree = ast.parse(script(experiment()))
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    assert modules == {"torch", "math"}


def test_script_rejects_bad_run_indices():
    exp = experiment()
    with pytest.raises(ValueError, match=f"run index {len(exp.runs)} out of range"):
        script(exp, runs=[len(exp.runs)])


def test_optimizer_states_match_a_bare_torch_loop():
    # The article's example, by hand: SGD(lr=0.05), LambdaLR(lambda epoch: 0.5 ** epoch).
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    want = [dict(opt.state_dict()["param_groups"][0])]
    for _ in range(3):
        opt.step()
        sched.step()
        want.append(dict(opt.state_dict()["param_groups"][0]))
    got = optimizer_states("lambda:0.5 ** epoch", 0.05, epochs=40, steps_per_epoch=14, steps=3)
    assert [s["param_group"] for s in got] == want
    assert [s["param_group"]["lr"] for s in got] == [0.05, 0.025, 0.0125, 0.00625]
    assert all(s["param_group"]["initial_lr"] == 0.05 for s in got)
    assert [s["get_last_lr"] for s in got] == [[g["lr"]] for g in want]


def test_optimizer_states_plateau_waits_for_patience():
    got = optimizer_states(
        "plateau:patience=1,factor=0.5", 0.1, epochs=10, steps_per_epoch=14, steps=4
    )
    # metric 1.0 every epoch: first is the best, then no improvement; after patience=1 bad epochs
    # lr halves
    assert [s["param_group"]["lr"] for s in got] == [0.1, 0.1, 0.1, 0.05, 0.05]
