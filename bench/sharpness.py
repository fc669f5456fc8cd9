"""Sharpness λ_max per (run, epoch) point: bnlr.sharpness vs torch autograd, one thread.

For 3×4 tanh networks with BN none / pre / post on the article's training split (700 samples),
prints CPU ms per point for 16 and 64 runs at once (what one call costs a page per epoch), and
the autograd reference (``torch.autograd.functional.hessian`` + ``eigvalsh``, 16 runs) in the same
process, plus the largest relative difference of λ_max between the two. The first call's time is
numba's compile (or its cache load, with a warm ``__pycache__``).

    python bench/sharpness.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

import bnlr
from bnlr import sharpness as sh
from bnlr.data import make_data
from bnlr.models import MLP, initial_parameters


def points(model: bnlr.ModelConfig, runs: int) -> np.ndarray:
    """(runs, P): initial parameters of seeds 0…, BN's affine drawn away from (1, 0)."""
    out = []
    for seed in range(runs):
        gen = torch.Generator().manual_seed(seed)
        layers = initial_parameters(model, 5, gen, torch.float64)
        if model.bn == "none":
            out.append(sh.flat_parameters(layers))
            continue
        gammas = [0.5 + torch.rand(w, generator=gen, dtype=torch.float64) for w in model.widths]
        betas = [0.3 * torch.randn(w, generator=gen, dtype=torch.float64) for w in model.widths]
        out.append(sh.flat_parameters(layers, gammas, betas))
    return np.stack(out)


def autograd_sharpness(model, params, X, y) -> np.ndarray:
    mlp = MLP(model, X.shape[1], torch.float64).train()
    blocks = sh.layout(model, X.shape[1])

    def loss(flat):
        parts = torch.split(flat, [int(np.prod(shape)) for _, shape in blocks])
        named = {name: p.reshape(shape) for (name, shape), p in zip(blocks, parts)}
        return ((torch.func.functional_call(mlp, named, (X,)) - y) ** 2).mean()

    hs = [torch.autograd.functional.hessian(loss, torch.tensor(p)) for p in params]
    return torch.linalg.eigvalsh(torch.stack(hs))[:, -1].numpy()


def cpu_ms(fn, *args) -> tuple[float, object]:
    start = time.process_time()
    result = fn(*args)
    return (time.process_time() - start) * 1e3, result


def main() -> None:
    torch.set_num_threads(1)
    data = make_data(bnlr.DataConfig(), torch.float64)
    X, y = data.X_train, data.y_train
    first, _ = cpu_ms(sh.sharpness, bnlr.ModelConfig(), points(bnlr.ModelConfig(), 1), X, y)
    print(f"first call (numba compile or cache load): {first / 1e3:.1f} s")
    print("model                 P   ms/point: 16 runs  64 runs   autograd (16)  max rel diff")
    for bn in ("none", "pre", "post"):
        model = bnlr.ModelConfig(widths=(4, 4, 4), activation="tanh", bn=bn)
        params = points(model, 64)
        sh.sharpness(model, params[:1], X, y)  # compiled for this shape already; warm caches
        t16, lam16 = cpu_ms(sh.sharpness, model, params[:16], X, y)
        t64, _ = cpu_ms(sh.sharpness, model, params, X, y)
        tref, ref = cpu_ms(autograd_sharpness, model, params[:16], X, y)
        diff = np.max(np.abs(lam16 - ref) / np.abs(ref))
        print(
            f"{model.label:20s} {params.shape[1]:3d} {t16 / 16:17.2f} {t64 / 64:8.2f}"
            f" {tref / 16:15.1f} {diff:13.1e}"
        )


if __name__ == "__main__":
    main()
