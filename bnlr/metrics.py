"""Per-run metrics of a loss curve, and how much each architecture reacts to the learning rate.

Definitions (also in the README):

- ``final_loss``: the loss at the last epoch (``final="last"``), the mean of the last ``k`` epochs
  (``"mean_last_k"``) or the lowest loss of the run (``"best"``); NaN for a run that diverged.
- ``best_loss``: the lowest loss over the epochs before divergence.
- ``instability``: how unsteady the curve is (the article's 不平稳): the total rise of
  log10(loss) between consecutive epochs, in decades, Σ max(0, log10 L_t − log10 L_{t−1}).
  A curve that only goes down scores 0; one that climbs back by a factor 10 in all scores 1.
- ``diverged_epoch``: the first epoch with a non-finite loss, or NaN.
- ``lr_sensitivity``: per architecture, the spread over the learning rates run of the seed-mean
  log10 final loss, ``max − min`` in decades (``sensitivity``) and its standard deviation
  (``sensitivity_std``); ``diverged_lrs`` counts the rates at which some seed diverged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SETTINGS = [
    "arch",
    "depth",
    "width",
    "activation",
    "bn",
    "bn_momentum",
    "optimizer",
    "schedule",
    "lr",
    "seed",
]
FINALS = ("last", "mean_last_k", "best")


def _curves(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the loss curves as (R, E) and each one's finite prefix length (R,)."""
    L = np.atleast_2d(np.asarray(losses, dtype=float))
    bad = ~np.isfinite(L)
    n = np.where(bad.any(axis=1), bad.argmax(axis=1), L.shape[1])
    return L, n


def instabilities(losses: np.ndarray) -> np.ndarray:
    """Returns Σ max(0, Δ log10 loss) over each curve's finite prefix (rows of ``losses``)."""
    L, n = _curves(losses)
    inside = np.arange(L.shape[1])[None, :] < n[:, None]  # (R, E): the finite prefix
    positive = np.where(inside, L > 0, True).all(axis=1)
    logs = np.log10(np.where(inside & (L > 0), L, 1.0))
    rises = np.where(inside[:, 1:], np.clip(np.diff(logs, axis=1), 0, None), 0.0)
    return np.where(positive & (n >= 2), rises.sum(axis=1), 0.0)


def instability(loss: np.ndarray) -> float:
    """Returns Σ max(0, Δ log10 loss) over the finite prefix of ``loss``, in decades.

    >>> instability(np.array([1.0, 0.1, 1.0, 0.1]))
    1.0
    """
    return float(instabilities(loss)[0])


def best_losses(losses: np.ndarray) -> np.ndarray:
    """Returns each curve's lowest loss before it diverged (NaN if it never had a finite one)."""
    L, n = _curves(losses)
    inside = np.arange(L.shape[1])[None, :] < n[:, None]
    best = np.where(inside, L, np.inf).min(axis=1, initial=np.inf)
    return np.where(n > 0, best, np.nan)


def final_losses(losses: np.ndarray, final: str = "last", k: int = 5) -> np.ndarray:
    """Returns each curve's final loss by the rule ``final``; NaN where it diverged (last, mean)."""
    if final not in FINALS:
        raise ValueError(f"unknown final-loss rule {final!r}; accepted: {', '.join(FINALS)}")
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    L, n = _curves(losses)
    if final == "best":
        return best_losses(L)
    value = L[:, -1] if final == "last" else L[:, -k:].mean(axis=1)
    return np.where(n == L.shape[1], value, np.nan)


def final_loss(loss: np.ndarray, final: str = "last", k: int = 5) -> float:
    """Returns the run's final loss by the rule ``final``; NaN if it diverged (for last / mean)."""
    return float(final_losses(loss, final, k)[0])


def run_metrics(
    history: pd.DataFrame, split: str = "train", final: str = "last", k: int = 5
) -> pd.DataFrame:
    """Returns one row per run: its settings, final_loss, best_loss, instability, diverged_epoch.

    Args:
        history: ``Result.history`` from ``bnlr.train``.
        split: ``train`` or ``test``.
        final: how ``final_loss`` is read off the curve: last, mean_last_k or best.
        k: epochs averaged by ``mean_last_k``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; accepted: train, test")
    part = history[history["split"] == split]
    wide = part.pivot(index="run", columns="epoch", values="loss").sort_index()  # (R, E)
    L, n = _curves(wide.to_numpy())
    epochs = wide.columns.to_numpy(dtype=float)
    settings = [c for c in SETTINGS if c in part]
    out = part.drop_duplicates("run").set_index("run").loc[wide.index, settings].reset_index()
    return out[[*settings, "run"]].assign(
        final_loss=final_losses(L, final, k),
        best_loss=best_losses(L),
        instability=instabilities(L),
        diverged_epoch=np.where(n < L.shape[1], epochs[np.minimum(n, L.shape[1] - 1)], np.nan),
    )


def lr_sensitivity(metrics: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Returns a row per architecture: sensitivity (decades), sensitivity_std, diverged_lrs, n_lrs.

    The seed-mean of log10(final_loss) is taken per learning rate; a rate where a seed diverged
    is counted in ``diverged_lrs`` and left out of the spread.

    Args:
        metrics: from ``run_metrics``.
        by: more columns to keep apart, e.g. ``("seed",)`` for one row per architecture and seed.
    """
    keys = [
        c for c in ("arch", "depth", "bn", "activation", "optimizer", "schedule") if c in metrics
    ] + list(by)
    f = metrics["final_loss"].to_numpy(dtype=float)
    ok = np.isfinite(f) & (f > 0)
    logs = metrics[[*keys, "lr"]].assign(log=np.log10(np.where(ok, f, 1.0)), ok=ok)
    per = logs.groupby([*keys, "lr"], sort=False).agg(log=("log", "mean"), ok=("ok", "all"))
    per["log"] = per["log"].where(per["ok"])  # a rate where a seed diverged has no mean
    g = per.groupby(level=list(range(len(keys))), sort=False)["log"]
    counted = g.count()
    out = pd.DataFrame(
        {
            "sensitivity": (g.max() - g.min()).where(counted > 1),
            "sensitivity_std": g.std(ddof=0).where(counted > 1),
            "diverged_lrs": (g.size() - counted).astype(int),
            "n_lrs": g.size().astype(int),
        }
    )
    return out.reset_index()
