"""Past the wall (bnlr.edge) and Adam's wall (bnlr.preconditioned), against independent answers:
a dense autograd Hessian with P from torch.optim.Adam's own state, a plain torch full-batch loop,
hand-made trajectories, and the command line's columns."""

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
from bnlr import edge
from bnlr import preconditioned as pc
from bnlr import sharpness as sh
from bnlr.data import make_data
from bnlr.models import MLP, layout

ROOT = Path(__file__).resolve().parents[1]
DATA = make_data(bnlr.DataConfig(), torch.float64)
X, Y = DATA.X_train, DATA.y_train


def flat_of(mlp: MLP, model: bnlr.ModelConfig) -> np.ndarray:
    named = dict(mlp.named_parameters())
    return torch.cat([named[n].detach().reshape(-1) for n, _ in layout(model, 5)]).numpy()


def mse_of(model: bnlr.ModelConfig):
    mlp = MLP(model, 5, torch.float64).train()
    blocks = layout(model, 5)

    def loss(flat):
        parts = torch.split(flat, [int(np.prod(s)) for _, s in blocks])
        named = {n: p.reshape(s) for (n, s), p in zip(blocks, parts)}
        return ((torch.func.functional_call(mlp, named, (X,)) - Y) ** 2).mean()

    return loss


@pytest.mark.parametrize("bn", ["none", "pre"])
def test_preconditioned_sharpness_is_the_top_eigenvalue_of_p_inverse_h(bn):
    model = bnlr.ModelConfig((3, 3), "tanh", bn)
    seeded = torch.Generator().manual_seed(0)
    layers = bnlr.models.initial_parameters(model, 5, seeded, torch.float64)
    mlp = MLP(model, 5, torch.float64).train().load_initial(layers)  # (MLP alone: uninitialised)
    opt = torch.optim.Adam(mlp.parameters(), lr=0.01)
    for _ in range(5):  # a few real Adam steps: its state is the preconditioner
        opt.zero_grad()
        torch.nn.functional.mse_loss(mlp(X), Y).backward()
        opt.step()
    named = dict(mlp.named_parameters())
    beta2, eps = opt.defaults["betas"][1], opt.defaults["eps"]
    diag = np.concatenate(
        [
            pc.preconditioner(
                opt.state[named[n]]["exp_avg_sq"].numpy().ravel(),
                int(opt.state[named[n]]["step"]),
                beta2,
                eps,
            )
            for n, _ in layout(model, 5)
        ]
    )
    theta = flat_of(mlp, model)
    H = hessian(mse_of(model), torch.tensor(theta)).numpy()  # dense, by autograd
    want = np.linalg.eigvals(np.diag(1 / diag) @ H).real.max()  # P⁻¹H, not symmetric
    lam, pre, _ = pc.sharpness_pair(model, theta[None], X, Y, diag[None])
    assert pre[0] == pytest.approx(want, rel=1e-8)
    assert lam[0] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-8)


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_the_adam_replay_has_torch_optims_state_after_every_epoch(opt):
    cfg = bnlr.OptimizerConfig(opt, weight_decay=0.01)
    run = bnlr.RunConfig(bnlr.ModelConfig((4, 4), "tanh", "none"), 0.01, optimizer=cfg)
    exp = bnlr.Experiment((run,), epochs=3, dtype="float64")
    params, diag = pc.replay_adam(exp, DATA)[0]
    # the plain loop a PyTorch user writes (bnlr.protocol's weights and batch order)
    r = bnlr.protocol.torch_run(run, DATA, 3, exp.steps_per_epoch)
    named = dict(r.model.named_parameters())
    for epoch in range(3):
        for idx in r.order[epoch].split(exp.batch_size):
            r.optimizer.zero_grad()
            torch.nn.functional.mse_loss(r.model(X[idx]), Y[idx]).backward()
            r.optimizer.step()
        state = [r.optimizer.state[named[n]] for n, _ in layout(run.model, 5)]
        v = np.concatenate([s["exp_avg_sq"].numpy().ravel() for s in state])
        want = pc.preconditioner(v, int(state[0]["step"]), 0.999, 1e-8)
        np.testing.assert_allclose(diag[epoch + 1], want, rtol=1e-9)
        np.testing.assert_allclose(params[epoch + 1], flat_of(r.model, run.model), rtol=1e-9)
    assert np.isnan(diag[0]).all()  # no state before the first step


def test_the_adam_replay_follows_the_engines_recorded_runs():
    grid = bnlr.Grid(
        depths=(3,), lrs=(0.01, 0.003), epochs=4, optimizer=bnlr.OptimizerConfig("adam")
    )
    exp = replace(grid.experiment, dtype="float64")
    result = bnlr.train(exp, record_parameters=True)
    replayed = pc.replay_adam(exp, DATA, result.steps)
    for i, run in enumerate(exp.runs):
        # without BN bit-close; with BN, Adam divides the rounding noise of the gradients BN
        # zeroes (the biases before it) by its tiny second moment: the reference loop and the
        # engine differ by as much (~1e-8)
        tol = 1e-12 if run.model.bn == "none" else 1e-6
        np.testing.assert_allclose(replayed[i][0], result.parameters[i], rtol=0, atol=tol)


def test_the_why_report_puts_adam_against_its_own_wall():
    grid = bnlr.Grid(depths=(3,), bns=("none",), lrs=(0.05,), epochs=2)
    adam = bnlr.why.run_physics(replace(grid, optimizer=bnlr.OptimizerConfig("adam")))
    e = adam.epochs
    np.testing.assert_allclose(e["edge"], 38 / 0.05)
    assert np.isnan(e.loc[e["epoch"] == 0, "preconditioned_sharpness"]).all()
    later = e[e["epoch"] > 0]
    np.testing.assert_allclose(later["stability_lr"], 38 / later["preconditioned_sharpness"])
    sgd = bnlr.why.run_physics(grid)
    assert sgd.epochs["preconditioned_sharpness"].isna().all()
    np.testing.assert_allclose(sgd.epochs["edge"], 2 / 0.05)


@pytest.mark.parametrize(("bn", "seed", "factor"), [("none", 930, 3.0), ("pre", 929, 1.5)])
def test_gradient_descent_is_a_plain_torch_full_batch_loop(bn, seed, factor):
    model = bnlr.ModelConfig((4, 4, 4), "tanh", bn)
    past = edge.Past((model,), (seed,), (factor,), steps=30, every=10)
    traj = edge.trajectories(past)
    lr = traj["lr"].iloc[0]
    # the loop by hand: the module in train mode, MSE over the whole split, SGD
    mlp = MLP(model, 5, torch.float64).train()
    layers = bnlr.models.initial_parameters(
        model, 5, torch.Generator().manual_seed(seed), torch.float64
    )
    mlp.load_initial(layers)
    opt = torch.optim.SGD(mlp.parameters(), lr=lr)
    losses = []
    for _ in range(31):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(mlp(X), Y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    # to rounding; past the wall a step amplifies rounding (the catapult's spike, ~1e-7 by step
    # 20, as any two correct sums in another order would)
    np.testing.assert_allclose(traj["loss"][:13], losses[:13], rtol=1e-9)
    np.testing.assert_allclose(traj["loss"], losses, rtol=1e-6)
    theta0 = flat_of(MLP(model, 5, torch.float64).load_initial(layers), model)
    lam0 = np.linalg.eigvalsh(hessian(mse_of(model), torch.tensor(theta0)).numpy())[-1]
    assert lr == pytest.approx(factor * 2 / lam0, rel=1e-8)
    measured = traj.loc[traj["sharpness"].notna(), "step"].tolist()
    assert measured == [0, 10, 20, 30]


def test_catapult_at_three_times_the_wall_seed_930():
    """The issue's measurement: 3×4 tanh, no BN, seed 930 at 3 × 2/λ₀ spikes to ~1.8e3, then
    trains, ending with λ below 2/lr."""
    model = bnlr.ModelConfig((4, 4, 4), "tanh", "none")
    runs = edge.runs_table(edge.trajectories(edge.Past((model,), (930,), (3.0,), 200, 50)))
    row = runs.iloc[0]
    assert row["sharpness_at_init"] == pytest.approx(23.36, abs=0.01)
    assert row["peak_loss"] > 10 * row["start_loss"] and row["final_loss"] < row["start_loss"]
    assert row["last_sharpness"] < row["wall"]
    assert row["outcome"] == "catapult"


def test_classify_hand_made_runs():
    nan = float("nan")
    wall_lr = 0.5  # 2/lr = 4
    assert edge.classify([10, 8, 6, 5], [3, nan, nan, 3.5], wall_lr) == "lazy"
    # at the wall, non-monotone, ends lower
    assert edge.classify([10, 7, 8, 6, 7, 5], [3, nan, 4.5, nan, nan, 4.2], wall_lr) == (
        "edge of stability"
    )
    # a spike above the start, then below it with λ under the wall
    assert edge.classify([10, 400, 30, 6, 5], [5, nan, nan, nan, 2.0], wall_lr) == "catapult"
    # a spike, but it ends at the wall: edge of stability
    assert edge.classify([10, 40, 6, 5], [5, nan, nan, 4.5], wall_lr) == "edge of stability"
    assert edge.classify([10, 1e3, 1e7, nan], [5, nan, nan, nan], wall_lr) == "diverged"
    assert edge.classify([10, 12, 11, 10.5], [5, nan, nan, 1], wall_lr) == "diverged"


def test_largest_trainable_stops_at_the_first_divergence():
    runs = pd.DataFrame(
        {
            "network": "n",
            "bn": "none",
            "seed": 1,
            "factor": [0.5, 1.0, 2.0, 3.0, 4.0],
            "sharpness_at_init": 10.0,
            "outcome": ["lazy", "edge of stability", "diverged", "catapult", "diverged"],
        }
    )
    row = edge.largest_trainable(runs).iloc[0]
    assert row["largest_factor"] == 1.0 and row["first_diverged_factor"] == 2.0
    assert row["largest_lr"] == pytest.approx(1.0 * 2 / 10)


def test_bn_verdict_counts_seeds():
    rows = []
    for seed, (plain, bn) in {1: (2.0, 3.0), 2: (2.5, 4.0), 3: (2.0, 3.0)}.items():
        rows += [
            {"network": "3×4 tanh · no BN", "bn": "none", "seed": seed, "largest_factor": plain},
            {"network": "3×4 tanh · BN pre", "bn": "pre", "seed": seed, "largest_factor": bn},
        ]
    v = edge.bn_verdict(pd.DataFrame(rows))
    assert (v.seeds_holding, v.seeds) == (3, 3)
    want = np.mean([np.log10(1.5), np.log10(1.6), np.log10(1.5)])
    assert v.effect == pytest.approx(want)


def test_warmup_verdict_and_table():
    table = pd.DataFrame(
        [
            {"network": n, "bn": "none", "warmup_epochs": w, "seed": s, "largest_lr": lr}
            for n in ("a", "b")
            for s in (1, 2, 3)
            for w, lr in ((0, 0.2), (10, 0.2 * (1.1 + 0.1 * s)))
        ]
    )
    v = edge.warmup_verdict(table)
    assert v.word == "higher" and v.seeds_holding == 3
    assert edge.warmup_schedule(0, 14) == "constant"
    assert "total_iters=28" in edge.warmup_schedule(2, 14)


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnlr", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_cli_catapult_writes_the_issues_columns():
    out = cli(
        "catapult", "--depths", "3", "--width", "4", "--activation", "tanh", "--bn", "none",
        "--seeds", "929", "--factors", "0.8,1.5", "--steps", "6",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(io.StringIO(out.stdout))
    assert df.columns.tolist() == [
        "network", "bn", "seed", "factor", "lr", "step", "loss", "sharpness"
    ]  # fmt: skip
    assert len(df) == 2 * 7 and df["step"].min() == 0 and (df["seed"] == 929).all()
    assert df["sharpness"].notna().all()  # --every 1 by default: every step
    lam0 = df.loc[df["step"] == 0, "sharpness"].iloc[0]
    np.testing.assert_allclose(df.groupby("factor")["lr"].first(), [0.8 * 2 / lam0, 3 / lam0])
    assert cli("catapult", "--seeds", "x").returncode == 2


def test_cli_why_with_adam_adds_the_preconditioned_sharpness():
    common = ["why", "--depths", "3", "--bn", "none", "--lrs", "0.05", "--epochs", "1"]
    adam = pd.read_csv(io.StringIO(cli(*common, "--optimizer", "adam").stdout))
    assert "preconditioned_sharpness" in adam
    later = adam[adam["epoch"] == 1]
    np.testing.assert_allclose(later["stability_lr"], 38 / later["preconditioned_sharpness"])
    np.testing.assert_allclose(adam["edge"], 38 / 0.05)
    sgd = pd.read_csv(io.StringIO(cli(*common).stdout))
    assert "preconditioned_sharpness" not in sgd


def test_losses_and_gradients_match_autograd_on_mini_batches():
    model = bnlr.ModelConfig((4, 3), "sigmoid", "post")
    p = np.random.default_rng(0).normal(size=(3, sh.parameter_count(model, 5))) * 0.5
    rows = np.random.default_rng(1).integers(0, len(X), (3, 50))
    loss, grad = sh.losses_and_gradients(model, p, X, Y, rows)
    theta = torch.tensor(p, requires_grad=True)
    want = bnlr.why.full_batch_loss(model, theta, X[rows], Y[rows])
    (g,) = torch.autograd.grad(want.sum(), theta)
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, g.numpy(), rtol=1e-10, atol=1e-13)
