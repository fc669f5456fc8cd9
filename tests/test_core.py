"""Data, models, configs, metrics, the CLI, and that bnlr stays free of Streamlit."""

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import bnlr
from bnlr import DataConfig, Grid, ModelConfig
from bnlr.data import make_data
from bnlr.metrics import final_loss, instability, lr_sensitivity, run_metrics
from bnlr.models import MLP, initial_parameters

ROOT = Path(__file__).resolve().parents[1]


def test_article_data():
    d = make_data(DataConfig(), torch.float64)
    assert (
        d.X_train.shape == (700, 5) and d.X_test.shape == (300, 5) and d.y_train.shape == (700, 1)
    )
    X = torch.cat([d.X_train, d.X_test])
    y = torch.cat([d.y_train, d.y_test])
    noise = y.squeeze(1) - (X**2) @ torch.tensor([2.0, -1, 3, 1, 2], dtype=torch.float64)
    assert 0.008 < noise.std().item() < 0.012  # noise = 0.01·N(0,1)
    d2 = make_data(DataConfig(degree=3, bias=True, noise=0.0, n=200, w=(1.0, 2.0)), torch.float64)
    X, y = d2.X_train, d2.y_train.squeeze(1)
    torch.testing.assert_close(y, (X**3) @ torch.tensor([1.0, 2.0], dtype=torch.float64) + 1)


def test_initial_weights_are_nn_linear_default_init():
    cfg = ModelConfig((4, 3))
    ours = initial_parameters(cfg, 5, torch.Generator().manual_seed(42), torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(42)
        layers = [
            nn.Linear(5, 4, dtype=torch.float64),
            nn.Linear(4, 3, dtype=torch.float64),
            nn.Linear(3, 1, dtype=torch.float64),
        ]
    for (w, b), lin in zip(ours, layers):
        torch.testing.assert_close(w, lin.weight.detach(), rtol=0, atol=0)
        torch.testing.assert_close(b, lin.bias.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("bn", ["pre", "post"])
def test_bn_placement_matches_the_article(bn):
    net = MLP(ModelConfig((4, 4), "tanh", bn), 5, torch.float64)
    net.load_initial(
        initial_parameters(
            net_cfg := ModelConfig((4, 4), "tanh", bn),
            5,
            torch.Generator().manual_seed(1),
            torch.float64,
        )
    )
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    l1, l2, out = net.linears[0], net.linears[1], net.out
    b1, b2 = net.bns
    if bn == "pre":  # Linear → BN → act
        expected = out(torch.tanh(b2(l2(torch.tanh(b1(l1(x)))))))
    else:  # Linear → act → BN, the BN output feeding the next Linear
        expected = out(b2(torch.tanh(l2(b1(torch.tanh(l1(x)))))))
    net2 = MLP(net_cfg, 5, torch.float64).load_initial(
        initial_parameters(net_cfg, 5, torch.Generator().manual_seed(1), torch.float64)
    )
    torch.testing.assert_close(net2(x), expected)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Grid(lrs=(0.0,)), "lr must be a finite number > 0, got 0.0"),
        (lambda: Grid(lrs=(1e308,)), "lr must lie in [1e-12, 10], got 1e+308"),
        (lambda: Grid(lrs=(float("nan"),)), "lr must be a finite number > 0"),
        (lambda: Grid(lrs=()), "lrs is empty"),
        (lambda: Grid(epochs=0), "epochs must be an integer ≥ 1, got 0"),
        (
            lambda: Grid(batch_size=701),
            "batch_size 701 is larger than the training set (700 samples)",
        ),
        (lambda: Grid(width=0), "width must be an integer ≥ 1"),
        (lambda: ModelConfig(widths=()), "widths must be a non-empty list"),
        (
            lambda: Grid(activations=("gelu",)),
            "unknown activation 'gelu'; accepted: tanh, relu, sigmoid, leaky_relu",
        ),
        (lambda: Grid(bns=("mid",)), "unknown BN placement 'mid'"),
        (lambda: bnlr.OptimizerConfig("rmsprop"), "unknown optimizer 'rmsprop'"),
        (lambda: Grid(schedules=("warp",)), "unknown schedule 'warp'"),
        (lambda: Grid(schedules=("lambda:-1",)), "negative factor"),
        (lambda: bnlr.log_grid(1, 1e-4, 5), "lr grid range reversed"),
        (lambda: bnlr.train(Grid(epochs=1), engine="gpu"), "unknown engine 'gpu'"),
        (
            lambda: Grid(data=DataConfig(n=1002), batch_size=50, bns=("pre",)),
            "last batch of 1 sample",
        ),
    ],
)
def test_bad_inputs_raise_valueerror_naming_the_value(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert words in str(err.value)


def test_log_grid():
    assert bnlr.log_grid(1e-4, 1, 5) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1])


def test_metric_definitions():
    assert instability(np.array([4.0, 2.0, 1.0])) == 0.0
    assert instability(np.array([1.0, 10.0, 1.0, 100.0])) == pytest.approx(3.0)
    assert instability(np.array([1.0, 10.0, np.nan, np.nan])) == pytest.approx(1.0)
    curve = np.array([5.0, 3.0, 4.0, 2.0, 1.0])
    assert final_loss(curve) == 1.0 and final_loss(curve, "best") == 1.0
    assert final_loss(curve, "mean_last_k", 2) == 1.5
    assert math.isnan(final_loss(np.array([1.0, np.nan])))
    assert final_loss(np.array([1.0, np.nan]), "best") == 1.0


def test_run_metrics_and_sensitivity_on_a_made_up_history():
    rows = []
    for run, (arch, lr, curve) in enumerate(
        [
            ("A", 0.1, [1, 0.1]),
            ("A", 0.01, [1, 0.01]),
            ("B", 0.1, [1, 0.5]),
            ("B", 0.01, [1, np.nan]),
        ]
    ):
        for e, loss in enumerate(curve, 1):
            rows.append(dict(run=run, arch=arch, lr=lr, seed=1, epoch=e, split="train", loss=loss))
    m = run_metrics(pd.DataFrame(rows))
    assert list(m.final_loss[:3]) == pytest.approx([0.1, 0.01, 0.5]) and math.isnan(m.final_loss[3])
    assert m.diverged_epoch[3] == 2 and math.isnan(m.diverged_epoch[0])
    s = lr_sensitivity(m).set_index("arch")
    assert s.loc["A", "sensitivity"] == pytest.approx(1.0)  # one decade between the two lrs
    assert s.loc["B", "diverged_lrs"] == 1 and math.isnan(s.loc["B", "sensitivity"])


def test_bnlr_never_imports_streamlit():
    code = (
        "import sys, bnlr, bnlr.cli, bnlr.metrics; bnlr.train(bnlr.Grid(epochs=1)); "
        "print('streamlit' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bnlr", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_cli_schedule_writes_the_lr_of_each_epoch():
    out = cli("schedule", "--schedule", "lambda:0.5**epoch", "--lr", "0.05", "--epochs", "3")
    assert out.returncode == 0
    assert out.stdout.split() == ["epoch,lr", "1,0.05", "2,0.025", "3,0.0125"]


def test_cli_schedule_prints_torchs_own_trajectory_for_a_new_family():
    out = cli(
        "schedule",
        "--schedule",
        "polynomial:total_iters=10,power=2",
        "--lr",
        "0.1",
        "--epochs",
        "15",
    )
    assert out.returncode == 0, out.stderr
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=10, power=2.0)
    want = []
    for _ in range(15):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    got = pd.read_csv(io.StringIO(out.stdout))
    assert got["epoch"].tolist() == list(range(1, 16))
    assert got["lr"].tolist() == want


def test_cli_run_writes_the_tidy_table(tmp_path):
    path = tmp_path / "r.csv"
    out = cli(
        "run",
        "--depths",
        "3",
        "--bn",
        "none,pre",
        "--lrs",
        "0.01,0.005",
        "--epochs",
        "2",
        "--schedule",
        "step:step_size=1,gamma=0.5",
        "--out",
        str(path),
    )
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(path)
    assert {
        "depth",
        "width",
        "activation",
        "bn",
        "optimizer",
        "schedule",
        "lr",
        "seed",
        "epoch",
        "split",
        "loss",
    } <= set(df.columns)
    assert len(df) == 4 * 2 * 2 and set(df.schedule) == {"step:step_size=1,gamma=0.5"}


@pytest.mark.parametrize(
    "args, words",
    [
        (("run", "--lrs", "0,1"), "lr must be a finite number > 0, got 0.0"),
        (("run", "--lrs", "abc"), "expected comma-separated floats"),
        (("run", "--bn", "mid"), "unknown BN placement 'mid'"),
        (("run", "--lr-grid", "1:1e-4:24"), "lr grid range reversed"),
        (("run", "--engine", "gpu"), "unknown engine 'gpu'"),
        (("run", "--batch-size", "5000"), "batch_size 5000 is larger"),
        (
            ("schedule", "--schedule", "lambda:epoch.real", "--lr", "0.1", "--epochs", "2"),
            "attribute access",
        ),
        (("schedule", "--schedule", "step", "--lr", "-1", "--epochs", "2"), "--lr must be > 0"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(args, words):
    out = cli(*args)
    assert out.returncode == 2
    assert (
        words in out.stderr
        and len(out.stderr.strip().splitlines()) == 1
        and "Traceback" not in out.stderr
    )


def test_an_experiments_kept_hash_is_the_hash_of_its_fields():
    import pickle
    from dataclasses import replace

    exp = bnlr.Grid(seeds=(929, 930)).experiment
    fields = (exp.runs, exp.data, exp.epochs, exp.batch_size, exp.dtype)
    assert hash(exp) == hash(fields) == hash(bnlr.Grid(seeds=(929, 930)).experiment)
    other = replace(exp, epochs=3)
    assert hash(other) == hash((other.runs, other.data, 3, other.batch_size, other.dtype))
    assert {exp: 1}[bnlr.Grid(seeds=(929, 930)).experiment] == 1
    # unpickled in another process (another string-hash seed), it hashes as that process does
    code = (
        "import pickle, sys, bnlr; e = pickle.loads(sys.stdin.buffer.read()); "
        "print(hash(e) == hash(bnlr.Grid(seeds=(929, 930)).experiment))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(exp), capture_output=True, check=True
    )
    assert out.stdout.strip() == b"True"
