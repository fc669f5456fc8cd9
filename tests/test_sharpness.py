"""bnlr.sharpness against torch.autograd.functional.hessian of the real MLP in train mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bnlr
from bnlr import sharpness as sh
from bnlr.data import make_data
from bnlr.models import MLP, initial_parameters

DATA = make_data(bnlr.DataConfig(), torch.float64)
X, Y = DATA.X_train, DATA.y_train


def mse(model: bnlr.ModelConfig):
    """The MSE over the whole split through bnlr.models.MLP (train mode: batch statistics), as
    a function of the flat parameters."""
    mlp = MLP(model, X.shape[1], torch.float64).train()
    blocks = sh.layout(model, X.shape[1])

    def loss(flat):
        parts = torch.split(flat, [int(np.prod(shape)) for _, shape in blocks])
        named = {name: p.reshape(shape) for (name, shape), p in zip(blocks, parts)}
        return ((torch.func.functional_call(mlp, named, (X,)) - Y) ** 2).mean()

    return loss


def autograd_hessian(model: bnlr.ModelConfig, theta: np.ndarray) -> np.ndarray:
    return torch.autograd.functional.hessian(mse(model), torch.tensor(theta)).numpy()


def autograd_gradient(model: bnlr.ModelConfig, theta: np.ndarray) -> np.ndarray:
    flat = torch.tensor(theta, requires_grad=True)
    return torch.autograd.grad(mse(model)(flat), flat)[0].numpy()


def start(model: bnlr.ModelConfig, seed: int) -> np.ndarray:
    """initial_parameters, and BN's affine drawn away from (1, 0) so that it matters."""
    gen = torch.Generator().manual_seed(seed)
    layers = initial_parameters(model, X.shape[1], gen, torch.float64)
    if model.bn == "none":
        return sh.flat_parameters(layers)
    gammas = [0.5 + torch.rand(w, generator=gen, dtype=torch.float64) for w in model.widths]
    betas = [0.3 * torch.randn(w, generator=gen, dtype=torch.float64) for w in model.widths]
    return sh.flat_parameters(layers, gammas, betas)


def trained(model: bnlr.ModelConfig, theta: np.ndarray, steps=20, lr=0.05) -> np.ndarray:
    """A few hand-written full-batch SGD steps through the MLP, away from the initial point."""
    mlp = MLP(model, X.shape[1], torch.float64).train()
    blocks = sh.layout(model, X.shape[1])
    flat = torch.tensor(theta, requires_grad=True)
    for _ in range(steps):
        parts = torch.split(flat, [int(np.prod(shape)) for _, shape in blocks])
        named = {name: p.reshape(shape) for (name, shape), p in zip(blocks, parts)}
        loss = ((torch.func.functional_call(mlp, named, (X,)) - Y) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, flat)
        flat = (flat - lr * grad).detach().requires_grad_()
    return flat.detach().numpy()


CASES = [
    (act, bn, widths)
    for act in ("tanh", "relu")
    for bn in ("none", "pre", "post")
    for widths in ((4, 4, 4), (4, 3, 4, 4))
] + [(act, bn, (4, 4, 4)) for act in ("sigmoid", "leaky_relu") for bn in ("none", "pre", "post")]


@pytest.mark.parametrize(("act", "bn", "widths"), CASES)
def test_hessian_and_sharpness_match_autograd(act, bn, widths):
    model = bnlr.ModelConfig(widths=widths, activation=act, bn=bn)
    theta0 = start(model, 929)
    params = np.stack([theta0, trained(model, theta0)])
    assert params.shape[1] == sh.parameter_count(model, X.shape[1])
    H = sh.hessian(model, params, X, Y)
    lam, grads = sh.sharpness_and_gradients(model, params, X, Y)
    for run in range(2):
        ref = autograd_hessian(model, params[run])
        np.testing.assert_allclose(H[run], ref, rtol=0, atol=1e-9 * np.abs(ref).max())
        assert np.array_equal(H[run], H[run].T)
        ref_lam = np.linalg.eigvalsh(ref)[-1]
        assert abs(lam[run] - ref_lam) <= 1e-8 * abs(ref_lam)
        ref_g = autograd_gradient(model, params[run])
        np.testing.assert_allclose(grads[run], ref_g, rtol=0, atol=1e-10 * np.abs(ref_g).max())


def test_layout_is_the_mlp_parameter_order():
    model = bnlr.ModelConfig(widths=(4, 4, 4), bn="pre")
    mlp = MLP(model, 5, torch.float64)
    with torch.no_grad():
        for i, p in enumerate(mlp.parameters()):
            p.copy_(torch.arange(p.numel(), dtype=torch.float64).reshape(p.shape) + 100 * i)
    names = [name for name, _ in sh.layout(model, 5)]
    assert sorted(names) == sorted(n for n, _ in mlp.named_parameters())
    flat = sh.from_module(mlp)
    params = dict(mlp.named_parameters())
    assert np.array_equal(flat, np.concatenate([params[n].detach().numpy().ravel() for n in names]))
    assert flat.size == sh.parameter_count(model, 5) == 93


def test_runs_are_independent_and_flat_parameters_matches_from_module():
    model = bnlr.ModelConfig(widths=(4, 4, 4), bn="post")
    gen = torch.Generator().manual_seed(3)
    layers = initial_parameters(model, 5, gen, torch.float64)
    mlp = MLP(model, 5, torch.float64).load_initial(layers)
    theta = sh.flat_parameters(layers, [torch.ones(4)] * 3, [torch.zeros(4)] * 3)
    assert np.array_equal(theta, sh.from_module(mlp))  # the same numbers, copied: bit for bit
    runs = {"theta": theta, "other": start(model, 5), "third": trained(model, start(model, 7), 5)}

    def of(names):
        params = np.stack([runs[n] for n in names])
        lam, grads = sh.sharpness_and_gradients(model, params, X, Y)
        return lam, grads, sh.hessian(model, params, X, Y)

    alone = {name: of([name]) for name in runs}
    for batch in (("theta", "other"), ("other", "theta"), ("other", "third", "theta")):
        lam, grads, H = of(batch)
        for i, name in enumerate(batch):
            lam1, grads1, H1 = alone[name]
            # A run's Hessian and gradient come from its own parameters alone (one kernel call
            # per run, nothing summed across runs): bit for bit the same in any batch.
            assert np.array_equal(H[i], H1[0]) and np.array_equal(grads[i], grads1[0])
            # λ_max: LAPACK (eigvalsh over the (R, P, P) stack) does not promise bit-equal
            # results for the same matrix in another batch (an AMD EPYC with AVX2 gave
            # 23.570550404108992 in a batch, 23.570550404109 alone). What is promised: a run's
            # λ_max does not depend on its neighbours, to 1e-12 relative. A neighbour's data
            # leaking in would move it by far more: the runs' λ_max differ by O(1).
            assert abs(lam[i] - lam1[0]) <= 1e-12 * abs(lam1[0]), (batch, name, lam[i], lam1[0])
    lams = sorted(alone[name][0][0] for name in runs)
    assert all(b - a > 1e-3 * b for a, b in zip(lams, lams[1:]))
