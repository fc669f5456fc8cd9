"""Why it happens: the curvature against 2/lr, BatchNorm's effective learning rate, and chaos.

Three measurements per run and epoch (epoch 0 = at init), from the parameters the batched engine
records after every epoch (``bnlr.train(..., record_parameters=True)``):

- **Sharpness** λ_max, the largest eigenvalue of the Hessian of the training loss over the whole
  training split (BatchNorm in train mode, normalising with that split's statistics), exact
  (``bnlr.sharpness``). Gradient descent on a quadratic with curvature λ is stable only for
  lr < 2/λ (2(1 + μ)/lr for heavy-ball momentum μ); with a large lr the sharpness rises until it
  hovers near 2/lr: the edge of stability (Cohen et al. 2021).
- **BatchNorm's effective learning rate.** A weight row w that feeds BatchNorm directly (BN "pre")
  is scale-invariant: L(c·w) = L(w), so w · ∇L = 0 and a step of lr moves its direction like a step
  of lr/‖w‖² on the unit sphere. Growing ‖w‖ shrinks that effective lr: BN "auto-tunes" the rate
  (van Laarhoven 2017; Hoffer et al. 2018; Arora, Li & Lyu 2019). Measured here: ‖w‖, lr/‖w‖²,
  the angle w turns per epoch, and |w·∇L| / (‖w‖‖∇L‖), which is ~1e-16 for "pre" and not small
  for "post" or "none".
- **Chaos.** Each run has a twin whose initial weights are multiplied by 1 + 1e-8 · N(0, 1), same
  batch order. Their relative parameter distance per epoch, and a finite-time Lyapunov exponent:
  the slope of ln(distance) per epoch while it grows. Twins *part* when the distance reaches 1e-2
  (a millionfold growth): there a single curve is one sample of chaos.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from .config import Experiment, Grid
from .data import make_data
from .history import Cancelled
from .models import layout
from .train import Result, train

TWIN = 1e-8  # relative perturbation of a twin's initial weights
PARTED = 1e-2  # relative parameter distance at which twins count as parted
BN_EPS = 1e-5


def with_twins(experiment: Experiment | Grid) -> Experiment:
    """Returns the experiment with a twin after all its runs (same runs, perturbed weights)."""
    exp = experiment.experiment if isinstance(experiment, Grid) else experiment
    twins = tuple(replace(r, perturb=TWIN) for r in exp.runs)
    return replace(exp, runs=exp.runs + twins)


def _blocks(model, in_features: int, params: torch.Tensor) -> dict[str, torch.Tensor]:
    """Splits (R, P) flat parameters into named (R, ...) blocks (``models.layout`` order)."""
    out, i = {}, 0
    for name, shape in layout(model, in_features):
        size = int(np.prod(shape))
        out[name] = params[:, i : i + size].reshape(params.shape[0], *shape)
        i += size
    return out


ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "leaky_relu": torch.nn.functional.leaky_relu,
}


def full_batch_loss(
    model, params: torch.Tensor, X: torch.Tensor, y: torch.Tensor, eps: float = BN_EPS
) -> torch.Tensor:
    """Returns (R,) MSE over the whole split of each run, BatchNorm in train mode on that split.
    ``X`` is (N, F), shared by the runs, or (R, N, F): each run's own batch (``y`` likewise).

    ``eps`` is BatchNorm's (nn.BatchNorm1d's 1e-5); with eps = 0 a BN "pre" layer is exactly
    scale-invariant, with eps > 0 only up to about eps / var.
    """
    b = _blocks(model, X.shape[-1], params)
    act = ACTIVATIONS[model.activation]
    x = X if X.dim() == 3 else X.expand(params.shape[0], *X.shape)  # (R, N, F)

    def norm(z, k):  # BatchNorm1d in train mode: the batch's mean and biased variance
        mu = z.mean(1, keepdim=True)
        var = ((z - mu) ** 2).mean(1, keepdim=True)
        g, beta = b[f"bns.{k}.weight"].unsqueeze(1), b[f"bns.{k}.bias"].unsqueeze(1)
        return (z - mu) / torch.sqrt(var + eps) * g + beta

    for k in range(model.depth):
        w, bias = b[f"linears.{k}.weight"], b[f"linears.{k}.bias"]
        z = torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2))  # (R, N, out)
        z = norm(z, k) if model.bn == "pre" else z
        x = act(z)
        x = norm(x, k) if model.bn == "post" else x
    pred = torch.baddbmm(b["out.bias"].unsqueeze(1), x, b["out.weight"].transpose(1, 2))
    return ((pred - y) ** 2).mean(dim=(1, 2))


def full_batch_gradients(model, params: np.ndarray, X, y, eps: float = BN_EPS) -> np.ndarray:
    """Returns (R, P): each run's gradient of ``full_batch_loss``, float64, by autograd (the
    page takes them from ``bnlr.sharpness``'s kernel; this one allows another BN eps)."""
    theta = torch.as_tensor(params, dtype=torch.float64).clone().requires_grad_(True)
    loss = full_batch_loss(model, theta, X.double(), y.double(), eps).sum()
    (g,) = torch.autograd.grad(loss, theta)
    return g.numpy()


def _rows(model, in_features: int) -> list[slice]:
    """The flat slices of each hidden Linear's weight, one slice per layer (rows inside)."""
    out, i = [], 0
    for name, shape in layout(model, in_features):
        size = int(np.prod(shape))
        if name.startswith("linears.") and name.endswith(".weight"):
            out.append((slice(i, i + size), shape))
        i += size
    return out


def row_measures(model, in_features: int, params: np.ndarray, grads: np.ndarray) -> dict:
    """Returns per run (R,): mean ‖w‖ over the hidden weight rows, and the mean of
    |w·∇L| / (‖w‖‖∇L‖) over them (the scale invariance of each row)."""
    norms, cosines = [], []
    for sl, (out, inp) in _rows(model, in_features):
        w = params[:, sl].reshape(-1, out, inp)
        g = grads[:, sl].reshape(-1, out, inp)
        wn, gn = np.linalg.norm(w, axis=2), np.linalg.norm(g, axis=2)
        norms.append(wn)
        cosines.append(np.abs((w * g).sum(axis=2)) / np.where(wn * gn > 0, wn * gn, np.nan))
    return {"weight_norm": np.concatenate(norms, 1), "invariance": np.concatenate(cosines, 1)}


def _angles(params: np.ndarray, model, in_features: int) -> np.ndarray:
    """Returns (E + 1, rows): the angle (degrees) each hidden weight row turned in each epoch."""
    out = []
    for sl, (rows, inp) in _rows(model, in_features):
        w = params[:, sl].reshape(len(params), rows, inp)  # (E + 1, rows, in)
        cos = (w[1:] * w[:-1]).sum(2) / (
            np.linalg.norm(w[1:], axis=2) * np.linalg.norm(w[:-1], axis=2)
        )
        out.append(
            np.vstack([np.full((1, rows), np.nan), np.degrees(np.arccos(np.clip(cos, -1, 1)))])
        )
    return np.concatenate(out, axis=1)


def _mean(values: np.ndarray) -> float:
    """The mean of the finite values (NaN when none is: a run diverged, or not measured)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def lyapunov(distance: np.ndarray) -> float:
    """Returns the slope of ln(distance) per epoch over the epochs before it saturates (< 0.1).

    >>> round(lyapunov(np.array([1e-8, 1e-7, 1e-6, 1e-5])), 4)  # ×10 per epoch: ln 10
    2.3026
    """
    d = np.asarray(distance, dtype=float)
    epochs = np.arange(len(d))
    ok = np.isfinite(d) & (d > 0) & (d < 0.1)
    if ok.sum() < 3:
        return float("nan")
    return float(np.polyfit(epochs[ok], np.log(d[ok]), 1)[0])


@dataclass(frozen=True)
class WhyReport:
    """The physics of the runs on screen."""

    epochs: pd.DataFrame  # per run × epoch (0 = init): sharpness, stability_lr, effective_lr, ...
    runs: pd.DataFrame  # per run: lyapunov, final twin distance, parted, predicted stable lr
    parting_lr: pd.DataFrame  # per network: the smallest lr whose twins parted (NaN: none did)


def preview_epochs(epochs: int, count: int = 9) -> tuple[int, ...]:
    """The epochs (0 = init … ``epochs``) a first, coarse curvature chart measures: ``count``
    of them evenly spaced, the first and the last among them.

    >>> preview_epochs(40)
    (0, 5, 10, 15, 20, 25, 30, 35, 40)
    >>> preview_epochs(3)
    (0, 1, 2, 3)
    """
    return tuple(int(e) for e in np.unique(np.linspace(0, epochs, min(count, epochs + 1)).round()))


@dataclass(frozen=True)
class Curvature:
    """Per network (``ModelConfig``): its runs' exact λ_max, λ_max(P⁻¹H) and full-batch gradients,
    (R · (E + 1),) and (R · (E + 1), P) in run-major order, NaN where not (yet) measured."""

    by_model: dict
    epochs: tuple[int, ...] | None  # the epochs measured (None: every epoch)


def curvature(
    experiment: Experiment,
    result: Result,
    cancel=None,
    epochs: tuple[int, ...] | None = None,
    known: Curvature | None = None,
    progress=None,
) -> Curvature:
    """Returns the exact curvature of the runs of ``result`` (trained from
    ``with_twins(experiment)`` with ``record_parameters=True``) after every epoch, or after
    ``epochs`` only. What ``known`` measured already (a preview's) is taken from it, not
    measured again. ``cancel()`` is polled before each network's Hessians (True:
    ``bnlr.Cancelled`` is raised); ``progress(done, total)`` is called after them, in Hessians
    (one per run and epoch)."""
    if result.parameters is None:
        raise ValueError(
            "physics needs the parameters of every epoch: train with record_parameters"
        )
    data = make_data(experiment.data, torch.float64)
    X, y = data.X_train, data.y_train
    from . import preconditioned as pc
    from .sharpness import sharpness_and_gradients  # numba: imported only where asked for

    # Adam's wall is on λ_max(P⁻¹H), P from its second moment: replayed (bnlr.preconditioned)
    replayed = pc.replay_adam(experiment, data, result.steps)
    by_model: dict = {}
    for i, run in enumerate(experiment.runs):
        by_model.setdefault(run.model, []).append(i)
    asks, out = {}, {}
    for model, idxs in by_model.items():
        stack = np.stack([result.parameters[i] for i in idxs])  # (R, E + 1, P)
        R, E1, P = stack.shape
        wanted = np.ones(E1, bool) if epochs is None else np.isin(np.arange(E1), epochs)
        ask = np.isfinite(stack.reshape(R * E1, P)).all(axis=1) & np.tile(wanted, R)
        if known is not None:
            ask &= ~np.tile(np.isin(np.arange(E1), known.epochs or range(E1)), R)
        asks[model] = ask
    total, measured = int(sum(a.sum() for a in asks.values())), 0
    for model, idxs in by_model.items():
        if cancel is not None and cancel():
            raise Cancelled()
        stack = np.stack([result.parameters[i] for i in idxs])  # (R, E + 1, P)
        R, E1, P = stack.shape
        flat = stack.reshape(R * E1, P)
        lam, pre = np.full(R * E1, np.nan), np.full(R * E1, np.nan)
        grads = np.full_like(flat, np.nan)
        ask = asks[model]
        if known is not None:
            had = known.by_model[model]
            done = np.tile(np.isin(np.arange(E1), known.epochs or range(E1)), R)
            lam[done], pre[done], grads[done] = had[0][done], had[1][done], had[2][done]
        if ask.any() and all(i in replayed for i in idxs):
            diag = np.concatenate([replayed[i][1] for i in idxs])  # (R · (E + 1), P)
            lam[ask], pre[ask], grads[ask] = pc.sharpness_pair(model, flat[ask], X, y, diag[ask])
        elif ask.any():
            lam[ask], grads[ask] = sharpness_and_gradients(model, flat[ask], X, y)
        out[model] = (lam, pre, grads)
        measured += int(ask.sum())
        if progress is not None:
            progress(measured, total)
    return Curvature(out, epochs)


def physics(
    experiment: Experiment, result: Result, cancel=None, curv: Curvature | None = None
) -> WhyReport:
    """Returns the why-page tables for ``result``, trained from ``with_twins(experiment)`` with
    ``record_parameters=True``; ``experiment`` is the one without twins. The curvature is
    ``curv`` (``curvature``'s; NaN where it did not measure), or measured after every epoch."""
    curv = curvature(experiment, result, cancel) if curv is None else curv
    n = len(experiment.runs)
    in_features = make_data(experiment.data, torch.float64).X_train.shape[1]
    from . import preconditioned as pc

    rows, per_run = [], []
    by_model: dict = {}
    for i, run in enumerate(experiment.runs):
        by_model.setdefault(run.model, []).append(i)
    measures: dict[int, dict] = {}
    for model, idxs in by_model.items():
        stack = np.stack([result.parameters[i] for i in idxs])  # (R, E + 1, P)
        R, E1, P = stack.shape
        lam, pre, grads = curv.by_model[model]
        rm = row_measures(model, in_features, stack.reshape(R * E1, P), grads)
        for j, i in enumerate(idxs):
            part = slice(j * E1, (j + 1) * E1)
            measures[i] = {
                "sharpness": lam[part],
                "preconditioned": pre[part],
                "weight_norm": rm["weight_norm"][part],
                "invariance": rm["invariance"][part],
                "angle": _angles(stack[j], model, in_features),
            }
    hist = result.history[result.history["split"] == "train"]
    for i, run in enumerate(experiment.runs):
        m = measures[i]
        own, twin = result.parameters[i], result.parameters[i + n]
        distance = np.linalg.norm(twin - own, axis=1) / np.linalg.norm(own, axis=1)
        lrs = hist[hist["run"] == i].sort_values("epoch")["epoch_lr"].to_numpy()
        lr_at = np.concatenate([[run.lr], lrs])  # the lr that follows each epoch's parameters
        momentum = run.optimizer.momentum if run.optimizer.name == "sgd" else 0.0
        adam, beta1 = pc.is_adam(run), run.optimizer.betas[0]
        pre = m["preconditioned"]
        effective = lr_at[:, None] / m["weight_norm"] ** 2 if run.model.bn == "pre" else None
        E1 = len(own)
        for e in range(E1):
            rows.append(
                {
                    "run": i,
                    "arch": run.model.label,
                    "bn": run.model.bn,
                    "lr": run.lr,
                    "seed": run.seed,
                    "epoch": e,
                    "sharpness": m["sharpness"][e],
                    "preconditioned_sharpness": pre[e],
                    "stability_lr": (
                        (pc.adam_threshold(pre[e], beta1) if pre[e] > 0 else np.nan)
                        if adam
                        else 2 / m["sharpness"][e]
                        if m["sharpness"][e] > 0
                        else np.nan
                    ),
                    "edge": (
                        pc.adam_threshold(lr_at[e], beta1)
                        if adam
                        else 2 * (1 + momentum) / lr_at[e]
                    ),
                    "effective_lr": float(np.nanmean(effective[e]))
                    if effective is not None
                    else np.nan,
                    "weight_norm": float(np.nanmean(m["weight_norm"][e])),
                    "angle": float(np.nanmean(m["angle"][e])) if e else np.nan,
                    "invariance": _mean(m["invariance"][e]),
                    "twin_distance": distance[e],
                }
            )
        lam0 = m["sharpness"][0]
        pre1 = pre[1] if len(pre) > 1 else np.nan  # Adam has no P before its first steps
        per_run.append(
            {
                "run": i,
                "arch": run.model.label,
                "bn": run.model.bn,
                "lr": run.lr,
                "seed": run.seed,
                "lyapunov": lyapunov(distance),
                "twin_distance": distance[-1],
                "parted": bool(np.nanmax(distance) >= PARTED) or not np.isfinite(distance[-1]),
                "sharpness_at_init": lam0,
                "predicted_max_lr": (
                    (pc.adam_threshold(pre1, beta1) if pre1 > 0 else np.nan)
                    if adam
                    else 2 * (1 + momentum) / lam0
                    if lam0 > 0
                    else np.nan
                ),
                "preconditioned_at_epoch_1": pre1,
                "diverged": bool(np.isnan(own[-1]).any()),
            }
        )
    runs = pd.DataFrame(per_run)
    parted = runs[runs["parted"]].groupby("arch")["lr"].min()
    parting = runs.groupby("arch", sort=False)["lr"].min().rename("smallest lr").to_frame()
    parting["parting_lr"] = parted.reindex(parting.index)
    return WhyReport(pd.DataFrame(rows), runs, parting.reset_index())


def train_twins(experiment: Experiment | Grid, progress=None, cancel=None) -> Result:
    """Trains ``experiment`` with twins in float64 (a relative 1e-8 is below float32's
    resolution), recording every epoch's parameters."""
    exp = _float64(experiment)
    return train(with_twins(exp), progress=progress, cancel=cancel, record_parameters=True)


def _float64(experiment: Experiment | Grid) -> Experiment:
    exp = experiment.experiment if isinstance(experiment, Grid) else experiment
    return replace(exp, dtype="float64")


@dataclass(frozen=True)
class Preview:
    """A first look at the physics: the curvature after a few epochs (``preview_epochs``), and
    what the whole report goes on from (the trained runs, the Hessians already measured)."""

    report: WhyReport  # NaN sharpness and invariance at the epochs not measured
    result: Result
    curvature: Curvature


def preview(experiment: Experiment | Grid, progress=None, cancel=None) -> Preview:
    """Trains the runs and their twins and measures the curvature after ``preview_epochs`` only:
    the first of the page's charts at a fraction of the Hessians' cost. ``progress(done,
    total)``: run-epochs trained, then Hessians measured, in one count."""
    exp = _float64(experiment)
    epochs = preview_epochs(exp.epochs)
    hessians = len(exp.runs) * len(epochs)
    trained, curvature_progress = _phases(progress, hessians)
    result = train_twins(exp, trained, cancel)
    curv = curvature(exp, result, cancel, epochs=epochs, progress=curvature_progress())
    return Preview(physics(exp, result, cancel, curv), result, curv)


def run_physics(
    experiment: Experiment | Grid, progress=None, cancel=None, after: Preview | None = None
) -> WhyReport:
    """Trains ``experiment`` with twins in float64, recording every epoch's parameters, and
    returns the physics; or goes on from ``after`` (a ``preview`` of the same experiment):
    its runs, and only the Hessians it did not measure. ``progress(done, total)``: run-epochs
    trained, then Hessians measured, in one count."""
    exp = _float64(experiment)
    if after is None:
        trained, curvature_progress = _phases(progress, len(exp.runs) * (exp.epochs + 1))
        result = train_twins(exp, trained, cancel)
        curv = curvature(exp, result, cancel, progress=curvature_progress())
        return physics(exp, result, cancel, curv)
    if len(after.result.parameters) != 2 * len(exp.runs):
        raise ValueError("after: a preview of another experiment (its runs differ)")
    curv = curvature(exp, after.result, cancel, known=after.curvature, progress=progress)
    return physics(exp, after.result, cancel, curv)


def _phases(progress, hessians: int):
    """Returns (the training's progress, a function giving the Hessians' progress): one count
    over both, the training's run-epochs first (at most ``hessians`` Hessians follow)."""
    trained = [0]

    def training(done: int, total: int) -> None:
        trained[0] = total
        if progress is not None:
            progress(done, total + hessians)

    def measuring():
        base = trained[0]
        if progress is None:
            return None
        return lambda done, total: progress(base + done, base + total)

    return training, measuring


def initial_sharpness(experiment: Experiment | Grid) -> pd.DataFrame:
    """Returns per network and seed λ_max at init and the lr it predicts as the largest stable
    one, 2(1 + μ)/λ_max(0) (columns arch, bn, seed, sharpness, predicted_max_lr)."""
    from .protocol import start
    from .sharpness import sharpness

    exp = experiment.experiment if isinstance(experiment, Grid) else experiment
    data = make_data(exp.data, torch.float64)
    seen, rows = {}, []
    for run in exp.runs:
        seen.setdefault((run.model, run.optimizer), {})[run.seed] = run
    for (model, optimizer), by_seed in seen.items():
        flats = []
        for run in by_seed.values():
            layers, _ = start(run, data, 1)
            flats.append(_flat_init(model, layers, data.X_train.shape[1]))
        lam = sharpness(model, np.stack(flats), data.X_train, data.y_train)
        momentum = optimizer.momentum if optimizer.name == "sgd" else 0.0
        for run, value in zip(by_seed.values(), lam):
            rows.append(
                {
                    "arch": model.label,
                    "bn": model.bn,
                    "seed": run.seed,
                    "sharpness": value,
                    "predicted_max_lr": 2 * (1 + momentum) / value,
                }
            )
    return pd.DataFrame(rows)


def _flat_init(model, layers, in_features: int) -> np.ndarray:
    """The initial [(W, b), ...] with BatchNorm's initial gamma = 1, beta = 0, flat."""
    from .sharpness import flat_parameters

    if model.bn == "none":
        return flat_parameters(layers)
    ones = [torch.ones(w, dtype=torch.float64) for w in model.widths]
    return flat_parameters(layers, ones, [torch.zeros_like(o) for o in ones])
