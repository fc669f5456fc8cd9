"""The "why" measurements: recorded parameters, sharpness through the real module, BatchNorm's scale
invariance, twins, the Lyapunov exponent and the CLI."""

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.autograd.functional import hessian

import bnlr
from bnlr import Experiment, ModelConfig, RunConfig, why
from bnlr.data import make_data
from bnlr.models import MLP, layout

ROOT = Path(__file__).resolve().parents[1]
DATA = make_data(bnlr.DataConfig(), torch.float64)


def module_loss(config: ModelConfig, flat: torch.Tensor) -> torch.Tensor:
    """The MSE over the whole training split through the real nn.Module, in train mode."""
    model = MLP(config, 5, torch.float64).train()
    params, i = {}, 0
    for name, shape in layout(config, 5):
        size = int(np.prod(shape))
        params[name] = flat[i : i + size].reshape(shape)
        i += size
    pred = torch.func.functional_call(model, params, (DATA.X_train,))
    return torch.nn.functional.mse_loss(pred, DATA.y_train)


@pytest.mark.parametrize("bn", ["none", "pre", "post"])
def test_recorded_parameters_equal_the_reference_loops(bn):
    runs = [RunConfig(ModelConfig((4, 4, 4), "tanh", bn), lr) for lr in (0.005, 0.002)]
    exp = Experiment(tuple(runs), epochs=8, dtype="float64")
    ref = bnlr.train(exp, "reference", record_parameters=True).parameters
    fast = bnlr.train(exp, "batched", record_parameters=True).parameters
    for r in range(2):
        assert ref[r].shape == (9, sum(int(np.prod(s)) for _, s in layout(runs[0].model, 5)))
        np.testing.assert_allclose(fast[r], ref[r], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bn", ["none", "pre", "post"])
def test_sharpness_on_the_page_is_eigvalsh_of_autograds_hessian(bn):
    grid = bnlr.Grid(depths=(3,), bns=(bn,), lrs=(0.05,), epochs=3)
    report = why.run_physics(grid)
    params = bnlr.train(
        why.with_twins(replace(grid.experiment, dtype="float64")), record_parameters=True
    ).parameters[0]
    got = report.epochs.set_index("epoch")["sharpness"]
    for epoch in (0, 3):  # at init and after training
        flat = torch.tensor(params[epoch])
        h = hessian(lambda p: module_loss(grid.experiment.runs[0].model, p), flat)
        want = torch.linalg.eigvalsh(h)[-1].item()
        assert got[epoch] == pytest.approx(want, rel=1e-8)
    assert (report.epochs["stability_lr"] == 2 / report.epochs["sharpness"]).all()


@pytest.mark.parametrize("bn", ["none", "pre", "post"])
def test_full_batch_loss_is_the_modules(bn):
    config = ModelConfig((4, 3), "sigmoid", bn)
    layers = bnlr.models.initial_parameters(
        config, 5, torch.Generator().manual_seed(3), torch.float64
    )
    flat = torch.tensor(
        bnlr.sharpness.flat_parameters(
            layers,
            *(
                (
                    [torch.ones(w) * 1.3 for w in config.widths],
                    [torch.full((w,), 0.2) for w in config.widths],
                )
                if bn != "none"
                else ()
            ),
        )
    )
    mine = why.full_batch_loss(config, flat[None], DATA.X_train, DATA.y_train)[0]
    assert mine.item() == pytest.approx(module_loss(config, flat).item(), rel=1e-12)


def test_bn_pre_rows_are_scale_invariant_up_to_eps():
    params = {}
    for bn in ("none", "pre", "post"):
        config = ModelConfig((4, 4, 4), "tanh", bn)
        r = bnlr.train(
            Experiment((RunConfig(config, 0.05),), epochs=5, dtype="float64"),
            record_parameters=True,
        )
        params[bn] = (config, r.parameters[0][[0, 5]])

    def cosine(bn, eps):
        config, p = params[bn]
        g = why.full_batch_gradients(config, p, DATA.X_train, DATA.y_train, eps)
        return np.nanmax(why.row_measures(config, 5, p, g)["invariance"])

    # exact invariance (eps = 0): w · ∇L vanishes to rounding for the rows that feed BN
    assert cosine("pre", 0.0) <= 1e-10
    assert cosine("none", 0.0) > 1e-2 and cosine("post", 0.0) > 1e-2
    # nn.BatchNorm1d's eps = 1e-5 breaks it at about eps / var: small, but not rounding
    assert 1e-9 < cosine("pre", 1e-5) < 1e-3


def test_twins_stay_together_at_a_tiny_lr_and_part_at_the_articles_largest():
    calm = why.run_physics(bnlr.Grid(depths=(4,), bns=("pre",), lrs=(1e-4,)))
    assert calm.epochs["twin_distance"].max() < 1e-6
    assert not calm.runs["parted"].any()
    # lr 0.1, depth 4, BN pre (the article's setup): measured to part by a factor > 1e6 within
    # the 40 epochs, with a positive Lyapunov exponent (chaos), while at 1e-4 it shrinks
    wild = why.run_physics(bnlr.Grid(depths=(4,), bns=("pre",), lrs=(0.1,)))
    assert wild.runs["parted"].all() and wild.epochs["twin_distance"].max() >= 1e-2
    assert wild.runs["lyapunov"].iloc[0] > 0.1


def test_lyapunov_by_hand():
    d = 1e-8 * np.exp(0.5 * np.arange(10))
    assert why.lyapunov(d) == pytest.approx(0.5)
    assert np.isnan(why.lyapunov(np.array([1e-8, 1e-8])))


def test_cli_why_writes_one_row_per_run_and_epoch():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bnlr",
            "why",
            "--depths",
            "3",
            "--bn",
            "none,pre",
            "--lrs",
            "0.1,0.01",
            "--epochs",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(io.StringIO(out.stdout))
    assert len(df) == 4 * 3  # 4 runs × epochs 0, 1, 2
    for col in (
        "depth",
        "bn",
        "lr",
        "seed",
        "epoch",
        "sharpness",
        "stability_lr",
        "effective_lr",
        "twin_distance",
    ):
        assert col in df
    np.testing.assert_allclose(df["stability_lr"], 2 / df["sharpness"])
    assert df.loc[df["bn"] == "none", "effective_lr"].isna().all()
    pre = df[df["bn"] == "pre"]
    assert (pre["effective_lr"] > 0).all()


def _same_report(got: why.WhyReport, want: why.WhyReport) -> None:
    """The same tables; λ_max to 1e-12 (eigvalsh of the same Hessian in another batch)."""
    for c in ("sharpness", "stability_lr", "invariance"):
        np.testing.assert_allclose(got.epochs[c], want.epochs[c], rtol=1e-12)
    for c in ("weight_norm", "angle", "twin_distance", "effective_lr", "epoch", "lr"):
        np.testing.assert_array_equal(got.epochs[c], want.epochs[c])
    pd.testing.assert_frame_equal(got.runs, want.runs, rtol=1e-12)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_a_preview_measures_a_few_epochs_and_the_report_goes_on_from_it(opt, monkeypatch):
    from bnlr import sharpness

    grid = bnlr.Grid(depths=(3,), lrs=(0.1, 0.01), epochs=16, optimizer=bnlr.OptimizerConfig(opt))
    whole = why.run_physics(grid)
    counted = []
    real = sharpness._lower_hessians
    monkeypatch.setattr(
        sharpness, "_lower_hessians", lambda m, p, X, y: counted.append(len(p)) or real(m, p, X, y)
    )
    first = why.preview(grid)
    measured = why.preview_epochs(16)
    assert measured == (0, 2, 4, 6, 8, 10, 12, 14, 16)
    runs = len(grid.experiment.runs)
    assert sum(counted) == runs * len(measured)
    at = first.report.epochs["epoch"].isin(measured)
    assert first.report.epochs.loc[~at, "sharpness"].isna().all()
    np.testing.assert_allclose(
        first.report.epochs.loc[at, "sharpness"], whole.epochs.loc[at, "sharpness"], rtol=1e-12
    )
    counted.clear()
    rest = why.run_physics(grid, after=first)
    assert sum(counted) == runs * (17 - len(measured))  # only the epochs the preview skipped
    _same_report(rest, whole)


def test_progress_counts_the_training_then_the_hessians():
    grid = bnlr.Grid(depths=(3,), lrs=(0.05,), epochs=12)
    seen = []
    first = why.preview(grid, progress=lambda d, t: seen.append((d, t)))
    runs = len(grid.experiment.runs)
    trained = 2 * runs * 12  # the runs and their twins, run-epochs
    hessians = runs * len(why.preview_epochs(12))
    assert seen[-1] == (trained + hessians, trained + hessians)
    assert all(d <= t for d, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    seen.clear()
    why.run_physics(grid, progress=lambda d, t: seen.append((d, t)), after=first)
    assert seen[-1] == (runs * 13 - hessians,) * 2  # only the Hessians the preview left
