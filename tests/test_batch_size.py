"""The batch-size axis: the noise scale against a torch.func computation written here, the
two-batch estimator against the exact one, the ridge and the verdict on hand-made tables, the
quiz, the CLI's two tables, and the page in AppTest."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from apptest import charts, page
from torch.func import functional_call, grad, vmap

import bnlr
from bnlr import batch_size as bs
from bnlr import noise, quiz
from bnlr.config import DataConfig, ModelConfig, RunConfig
from bnlr.data import make_data
from bnlr.models import MLP
from bnlr.protocol import start
from bnlr.sharpness import flat_parameters


def independent_noise_scale(model: ModelConfig, layers, X, y) -> float:
    """tr Σ / |G|² from an nn.Module's per-example gradients (torch.func over the module)."""
    m = MLP(model, X.shape[1], torch.float64).load_initial(layers)
    params = {k: v.detach() for k, v in m.named_parameters()}

    def loss(p, x, t):
        return ((functional_call(m, p, (x[None],)) - t[None]) ** 2).mean()

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, X, y)
    flat = torch.cat([v.reshape(len(X), -1) for v in g.values()], 1)  # (N, P)
    mean = flat.mean(0)
    return float(((flat - mean) ** 2).sum(1).mean() / (mean @ mean))


@pytest.mark.parametrize("depth, seed", [(3, 929), (4, 930), (1, 931)])
def test_noise_scale_is_the_per_example_one_to_1e_8(depth, seed):
    data = make_data(DataConfig(), torch.float64)
    run = RunConfig(ModelConfig((4,) * depth, "tanh", "none"), 0.01, seed)
    layers, _ = start(run, data, 1)
    ours = noise.noise_scale(run.model, flat_parameters(layers), data.X_train, data.y_train)[0]
    theirs = independent_noise_scale(run.model, layers, data.X_train, data.y_train)
    assert ours == pytest.approx(theirs, rel=1e-8)


def test_the_articles_initial_weights_have_b_noise_0_72():
    data = make_data(DataConfig(), torch.float64)
    run = RunConfig(ModelConfig((4, 4, 4), "tanh", "none"), 0.01, 929)
    layers, _ = start(run, data, 1)
    value = noise.noise_scale(run.model, flat_parameters(layers), data.X_train, data.y_train)[0]
    assert round(value, 2) == 0.72


def test_two_batch_algebra_is_exact_given_the_exact_expectation():
    """E|G_b|² for batches drawn without replacement, from per-example gradients by hand."""
    data = make_data(DataConfig(n=60), torch.float64)
    X, y = data.X_train, data.y_train
    model = ModelConfig((4, 4), "tanh", "none")
    layers, _ = start(RunConfig(model, 0.01, 929), data, 1)
    theta = torch.as_tensor(flat_parameters(layers))[None]
    g = noise.per_example_gradients(model, theta, X, y)[0]  # (N, P)
    n, b = len(X), 5
    mean = g.mean(0)
    s = ((g - mean) ** 2).sum(1).sum() / (n - 1)  # tr S
    expected = float(mean @ mean + s * (1 / b - 1 / n))
    got = noise.from_two_batches(np.array(expected), b, np.array(float(mean @ mean)), n)
    assert float(got) == pytest.approx(noise.noise_scale(model, theta, X, y)[0], rel=1e-10)


def test_two_batch_estimator_finds_the_exact_noise_scale_without_bn():
    g = bnlr.Grid(depths=(3,), bns=("none",), lrs=(0.01,), seeds=(929,), epochs=6)
    result = bnlr.train(g.experiment, record_parameters=True)
    data = make_data(g.data, torch.float64)
    params = result.parameters[0][[0, 3, 6]]
    exact = noise.noise_scale(g.experiment.runs[0].model, params, data.X_train, data.y_train)
    estimate = noise.two_batch_noise_scale(
        g.experiment.runs[0].model, params, data.X_train, data.y_train, 4, repeats=20
    )
    assert exact[1] > 5 * exact[0]  # it grows along training
    np.testing.assert_allclose(estimate, exact, rtol=0.05)


def test_per_example_gradients_of_a_bn_network_are_refused():
    with pytest.raises(ValueError, match="two_batch_noise_scale"):
        noise.per_example_gradients(ModelConfig(bn="pre"), torch.zeros(1, 5), None, None)


# ---------------------------------------------------------------- the ridge and the verdict


def hand_table(best: dict) -> pd.DataFrame:
    """best: {seed: [best lr at B = 2, 4, 8, 16]} for one network."""
    return pd.DataFrame(
        [
            {"network": "n", "bn": "none", "batch_size": b, "seed": s, "best_lr": lr}
            for s, lrs in best.items()
            for b, lr in zip((2, 4, 8, 16), lrs)
        ]
    )


def test_ridge_is_the_geometric_mean_with_a_t_interval():
    per_seed = hand_table({1: [0.01, 0.02, 0.04, 0.04], 2: [0.01, 0.08, 0.04, 0.01]})
    r = bs.ridge(per_seed).set_index("batch_size")
    assert r.loc[4, "best_lr"] == pytest.approx(0.04)  # √(0.02 · 0.08)
    # by hand: logs −1.69897, −1.09691; mean ± t(0.92, 1 df) · sd / √2
    logs = np.log10([0.02, 0.08])
    t = 7.915815  # the two-sided 92 % quantile of Student's t with 1 degree of freedom
    half = t * logs.std(ddof=1) / math.sqrt(2)
    assert r.loc[4, "low"] == pytest.approx(10 ** (logs.mean() - half), rel=1e-5)
    assert r.loc[4, "high"] == pytest.approx(10 ** (logs.mean() + half), rel=1e-5)
    assert r.loc[2, "low"] == r.loc[2, "high"] == pytest.approx(0.01)  # the seeds agree
    lines = bs.scaling_lines(bs.ridge(per_seed)).set_index(["rule", "batch_size"])["lr"]
    assert lines[("lr ∝ B", 16)] == pytest.approx(0.08)
    assert lines[("lr ∝ √B", 16)] == pytest.approx(0.01 * math.sqrt(8))


def test_linear_scaling_holds_until_the_best_lr_falls_below_the_line():
    # seed 1 doubles with the batch up to 8 then stays; seed 2 stops after 4; an lr grid step
    # of 0.31 decades: at 16 the line is 0.08, seed 1's 0.04 is log10 2 = 0.301 below it
    per_seed = hand_table({1: [0.01, 0.02, 0.04, 0.04], 2: [0.01, 0.02, 0.01, 0.04]})
    until = bs.linear_until(per_seed, bs.ridge(per_seed), tolerance=0.31).set_index("seed")
    assert until["linear_until"].to_dict() == {1: 16, 2: 4}
    (v,) = bs.linear_verdicts(until.reset_index(), {"n": 16})
    assert (v.until, v.holding, v.seeds, v.per_seed) == (8, 1, 2, (16, 4))
    assert "holds up to **B ≈ 8** in **1 of 2** seeds" in v.sentence()
    strict = bs.linear_until(per_seed, bs.ridge(per_seed), tolerance=0.1).set_index("seed")
    assert strict["linear_until"].to_dict() == {1: 8, 2: 4}


def test_the_fit_recovers_mccandlish_parameters():
    b = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    eps, b_noise, err = bs.fit_mccandlish(b, bs.mccandlish(b, 0.2, 30.0))
    assert eps == pytest.approx(0.2, rel=0.02) and b_noise == pytest.approx(30, rel=0.02)
    assert err < 0.01


def test_same_steps_gives_a_big_batch_more_epochs():
    grid = bnlr.Grid(depths=(3,), lrs=(0.01,), epochs=4)
    sizes = bs.batch_sizes(1, 700, 50)
    assert sizes == (1, 2, 4, 8, 16, 32, 50, 64, 128, 256, 512, 700)
    steps = bs.BatchSweep(grid, sizes, "steps")
    assert steps.epochs(50) == 4 and steps.epochs(700) == 56 and steps.epochs(1) == 1
    assert bs.BatchSweep(grid, sizes, "epochs").epochs(700) == 4
    exps = {e.batch_size: e for e in steps.experiments()}
    assert {r.model.bn for r in exps[1].runs} == {"none"}  # BN cannot train on one sample
    assert {r.model.bn for r in exps[2].runs} == {"none", "pre"}


def test_quiz_answer_is_the_ridges_factor():
    ridge = bs.ridge(hand_table({1: [0.01, 0.02, 0.04, 0.08], 2: [0.01, 0.02, 0.04, 0.08]}))
    factors = bs.lr_factor(ridge)
    assert factors["factor"].iloc[0] == pytest.approx(8.0)
    assert quiz.batch_lr(factors, "× 8").right
    assert not quiz.batch_lr(factors, "× 1 (keep it)").right
    flat = bs.lr_factor(bs.ridge(hand_table({1: [0.01, 0.02, 0.01, 0.012]})))
    assert quiz.batch_lr(flat, "× 1 (keep it)").answer == ("× 1 (keep it)",)
    assert quiz.choices("batch_lr") == list(quiz.FACTORS)
    assert quiz.for_page("batch_size") == ["batch_lr"]


# ---------------------------------------------------------------- the CLI


def cli(*args) -> pd.DataFrame:
    out = subprocess.run(
        [sys.executable, "-m", "bnlr", "batch", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from io import StringIO

    return pd.read_csv(StringIO(out))


def test_cli_noise_table():
    t = cli(
        "--table", "noise", "--depths", "3", "--width", "4", "--activation", "tanh",
        "--bn", "none", "--seeds", "929", "--epochs", "1",
    )  # fmt: skip
    assert list(t.columns) == ["network", "bn", "seed", "epoch", "noise_scale"]
    assert t["epoch"].tolist() == [0, 1] and t["seed"].tolist() == [929, 929]
    assert round(t["noise_scale"].iloc[0], 2) == 0.72


def test_cli_best_lr_table():
    t = cli("--depths", "3", "--seeds", "929,930", "--lrs", "0.1,0.01,0.001", "--epochs", "2")
    assert list(t.columns) == ["network", "bn", "batch_size", "best_lr", "low", "high", "seeds"]
    assert set(t["batch_size"]) == {2, 4, 8, 16, 32, 50, 64, 128, 256, 512, 700}
    assert set(t["seeds"]) == {2} and set(t["bn"]) == {"none", "pre"}


# ---------------------------------------------------------------- the page


@pytest.mark.parametrize("present", [False, True])
def test_page_at_its_defaults_shows_heatmap_ridge_noise_and_verdict(present, uncapped):
    at = page("batch_size.py", **({"present": "true"} if present else {}))
    assert not at.exception
    specs = charts(at)
    assert len(specs) == 3  # heat map, ridge, noise scale
    heat, ridge, noise_spec = specs
    assert [layer["mark"]["type"] for layer in heat["spec"]["layer"]][:2] == ["rect", "rect"]
    assert {c for c in ("3×4 tanh · no BN", "3×4 tanh · BN pre")} <= set(
        heat["facet"]["column"]["sort"]
    )
    assert any("curve" in str(layer.get("transform")) for layer in ridge["spec"]["layer"])
    assert "noise_scale" in str(noise_spec)
    text = " ".join(m.value for m in at.markdown)
    assert text.count("linear scaling (lr ∝ B from B = 2) holds up to **B ≈") == 2
    assert "B_noise **0.8** at init" in text or "B_noise **0.72** at init" in text


def test_quiz_on_the_page_asks_then_reveals(uncapped):
    at = page("batch_size.py", quiz="batch_lr")
    assert not at.exception and not charts(at)  # nothing drawn before the reveal
    at.radio[0].set_value("× 8").run()
    at.button(key="_reveal:batch_lr").click().run()
    assert not at.exception and len(charts(at)) == 3
    said = [e.value for e in (*at.success, *at.warning)]
    assert any("Your answer: **× 8**" in s for s in said)


def test_page_opens_on_a_default_that_fits_a_slower_host(monkeypatch):
    """Where B = 2's sweep is over the cap (the torch path, a slower CPU), the default smallest
    batch is the first doubling of 2 whose sweep fits, and the page says so: it opens on its
    charts, not on a refusal."""
    from ui import runner

    grid = bnlr.Grid(depths=(3,), lrs=bnlr.log_grid(3e-4, 0.3, 8), seeds=(929, 930))
    n = grid.data.n_train
    cost = {
        b: bs.estimate(bs.BatchSweep(grid, bs.batch_sizes(b, n, grid.batch_size)))
        for b in (2, 4, 8, 16)
    }
    assert cost[2] > cost[4] > cost[8] > cost[16]
    monkeypatch.setattr(runner, "COST_CAP_S", (cost[8] + cost[16]) / 2)
    at = page("batch_size.py")
    assert not at.exception and not at.error
    assert at.number_input(key="b_min").value == 16
    assert len(charts(at)) >= 2  # the heat map and the ridge (the noise scale has its own cap)
    text = " ".join(m.value for m in at.markdown)
    assert text.count("linear scaling (lr ∝ B from B = 16)") == 2  # the sweep starts there
    assert any("The default starts at B = 16" in c.value for c in at.caption)
