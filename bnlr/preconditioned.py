"""Adam's stability wall: the preconditioned sharpness λ_max(P⁻¹H) against (2 + 2β₁)/((1 − β₁)·lr).

Adam steps along P⁻¹ m̂, with P = diag(sqrt(v̂) + eps) and v̂ = exp_avg_sq / (1 − β₂^t) its own
second moment (torch.optim.Adam's ``denom``). Linearised around a minimum with P frozen, its
update is heavy-ball momentum β₁ on the preconditioned Hessian P⁻¹H with an lr of lr/(1 − β₁), so
it is stable only while λ_max(P⁻¹H) < (2 + 2β₁)/((1 − β₁)·lr), 38/lr at β₁ = 0.9; with a large lr
the preconditioned sharpness rises to hover there, Adam's edge of stability (Cohen et al. 2022).

P⁻¹H is not symmetric, but P^{-1/2} H P^{-1/2} is, with the same eigenvalues: ``eigvalsh`` of it,
with H the exact Hessian of ``bnlr.sharpness``.

Where P comes from: the batched engine keeps its optimizer state to itself, so
``replay_adam`` re-runs each Adam run's mini-batch steps from the same initial weights, batch
order and per-step lr (the result's ``steps`` table), in float64, with torch.optim.Adam's update
written out on (runs, P) arrays and the gradients of ``sharpness.losses_and_gradients``; its
parameters agree with the engine's recorded ones to ~1e-10 (``tests/test_edge.py``), so its v̂ is
the engine's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .config import Experiment, RunConfig
from .data import Dataset
from .protocol import start


def adam_threshold(lr, beta1: float):
    """Returns Adam's largest stable preconditioned sharpness at ``lr``: (2 + 2β₁)/((1 − β₁)·lr).

    >>> round(adam_threshold(0.1, 0.9), 6)
    380.0
    """
    return (2 + 2 * beta1) / ((1 - beta1) * lr)


def is_adam(run: RunConfig) -> bool:
    return run.optimizer.name in ("adam", "adamw")


def preconditioner(exp_avg_sq, step: int, beta2: float, eps: float) -> np.ndarray:
    """Returns diag P = sqrt(exp_avg_sq / (1 − β₂^step)) + eps, as torch.optim.Adam divides by."""
    v = np.asarray(exp_avg_sq, dtype=np.float64)
    return np.sqrt(v) / math.sqrt(1 - beta2**step) + eps


def preconditioned_sharpness(hessians: np.ndarray, diag: np.ndarray) -> np.ndarray:
    """Returns (R,) λ_max(P⁻¹H) = λ_max(P^{-1/2} H P^{-1/2}); hessians (R, P, P) symmetric (the
    lower triangle is read), diag (R, P) the preconditioner P > 0."""
    s = 1 / np.sqrt(np.asarray(diag, dtype=np.float64))
    scaled = hessians * s[:, :, None] * s[:, None, :]
    return torch.linalg.eigvalsh(torch.from_numpy(scaled), UPLO="L")[:, -1].numpy()


def sharpness_pair(model, params: np.ndarray, X, y, diag: np.ndarray):
    """Returns (R,) λ_max(H), (R,) λ_max(P⁻¹H) (NaN where diag is not finite) and (R, P) the
    full-batch gradients, from one exact Hessian per run."""
    from .sharpness import _lower_hessians

    H, grads = _lower_hessians(model, params, X, y)
    lam = torch.linalg.eigvalsh(torch.from_numpy(H), UPLO="L")[:, -1].numpy()
    pre = np.full(len(params), np.nan)
    ok = np.isfinite(diag).all(axis=1)
    if ok.any():
        pre[ok] = preconditioned_sharpness(H[ok], diag[ok])
    return lam, pre, grads


def _step_tables(runs, idxs, steps: pd.DataFrame | None, total: int):
    """(R, total) lr and beta1 of each step, from the result's steps table or the runs."""
    lrs = np.array([[runs[i].lr] * total for i in idxs], dtype=np.float64)
    beta1 = np.array([[runs[i].optimizer.betas[0]] * total for i in idxs], dtype=np.float64)
    if steps is not None and len(steps):
        for j, i in enumerate(idxs):
            mine = steps[steps["run"] == i].sort_values(["epoch", "step"])
            n = min(len(mine), total)
            lrs[j, :n] = mine["lr"].to_numpy()[:n]
            beta1[j, :n] = mine["momentum"].to_numpy()[:n]
    return lrs, beta1


def replay_adam(
    experiment: Experiment, data: Dataset, steps: pd.DataFrame | None = None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Returns, per Adam run of ``experiment`` (its index), its parameters and its preconditioner
    diag P, both (E + 1, P), at init (P: NaN, Adam has no state yet) and after every epoch.

    Each run's steps are replayed from its initial weights and batch order (``protocol.start``)
    with torch.optim.Adam's update (or AdamW's), in float64; ``steps`` (a result's per-step
    table: run, epoch, step, lr, momentum) gives each step's lr and β₁, else the run's lr.
    """
    from .sharpness import losses_and_gradients
    from .why import _flat_init

    X, y = data.X_train.double(), data.y_train.double()
    E, B = experiment.epochs, experiment.batch_size
    n_train = X.shape[0]
    S = -(-n_train // B)
    groups: dict = {}
    for i, run in enumerate(experiment.runs):
        if is_adam(run):
            groups.setdefault((run.model, run.optimizer), []).append(i)
    out = {}
    for (model, cfg), idxs in groups.items():
        starts = [start(experiment.runs[i], data, E) for i in idxs]
        p = np.stack([_flat_init(model, layers, X.shape[1]) for layers, _ in starts])
        orders = np.stack([order.numpy() for _, order in starts])  # (R, E, N)
        lrs, beta1 = _step_tables(experiment.runs, idxs, steps, E * S)
        beta2, eps, wd = cfg.betas[1], cfg.eps, cfg.resolved_weight_decay
        m, v = np.zeros_like(p), np.zeros_like(p)
        params = np.full((len(idxs), E + 1, p.shape[1]), np.nan)
        diag = np.full_like(params, np.nan)
        params[:, 0] = p
        t = 0
        for e in range(E):
            for b in range(S):
                rows = orders[:, e, b * B : (b + 1) * B]
                lr, b1 = lrs[:, t, None], beta1[:, t, None]
                t += 1
                with np.errstate(all="ignore"):
                    _, g = losses_and_gradients(model, np.nan_to_num(p), X, y, rows)
                    g = np.where(np.isfinite(p).all(1, keepdims=True), g, np.nan)
                    if wd and cfg.name == "adamw":
                        p = p * (1 - lr * wd)
                    elif wd:
                        g = g + wd * p
                    m = m + (g - m) * (1 - b1)  # torch's lerp_
                    v = v * beta2 + (1 - beta2) * g * g
                    denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + eps
                    p = p - (lr / (1 - b1**t)) * (m / denom)
            params[:, e + 1] = p
            diag[:, e + 1] = preconditioner(v, t, beta2, eps)
        for j, i in enumerate(idxs):
            out[i] = (params[j], diag[j])
    return out
