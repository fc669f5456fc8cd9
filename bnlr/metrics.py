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


def instability(loss: np.ndarray) -> float:
    """Returns Σ max(0, Δ log10 loss) over the finite prefix of ``loss``, in decades.

    >>> instability(np.array([1.0, 0.1, 1.0, 0.1]))
    1.0
    """
    finite = loss[: _finite_prefix(loss)]
    if len(finite) < 2 or (finite <= 0).any():
        return 0.0
    rises = np.diff(np.log10(finite))
    return float(np.clip(rises, 0, None).sum())


def _finite_prefix(loss: np.ndarray) -> int:
    bad = np.flatnonzero(~np.isfinite(loss))
    return int(bad[0]) if len(bad) else len(loss)


def final_loss(loss: np.ndarray, final: str = "last", k: int = 5) -> float:
    """Returns the run's final loss by the rule ``final``; NaN if it diverged (for last / mean)."""
    if final not in FINALS:
        raise ValueError(f"unknown final-loss rule {final!r}; accepted: {', '.join(FINALS)}")
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    n = _finite_prefix(loss)
    if final == "best":
        return float(loss[:n].min()) if n else float("nan")
    if n < len(loss):
        return float("nan")
    return float(loss[-1]) if final == "last" else float(loss[-k:].mean())


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
    rows = []
    for run, curve in history[history["split"] == split].groupby("run", sort=True):
        curve = curve.sort_values("epoch")
        loss = curve["loss"].to_numpy(dtype=float)
        n = _finite_prefix(loss)
        row = {c: curve[c].iloc[0] for c in SETTINGS if c in curve}
        row.update(
            run=run,
            final_loss=final_loss(loss, final, k),
            best_loss=float(loss[:n].min()) if n else float("nan"),
            instability=instability(loss),
            diverged_epoch=float(curve["epoch"].iloc[n]) if n < len(loss) else float("nan"),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def lr_sensitivity(metrics: pd.DataFrame) -> pd.DataFrame:
    """Returns a row per architecture: sensitivity (decades), sensitivity_std, diverged_lrs, n_lrs.

    The seed-mean of log10(final_loss) is taken per learning rate; a rate where a seed diverged
    is counted in ``diverged_lrs`` and left out of the spread.
    """
    keys = [
        c for c in ("arch", "depth", "bn", "activation", "optimizer", "schedule") if c in metrics
    ]
    rows = []
    for key, part in metrics.groupby(keys, sort=False):
        per_lr = part.groupby("lr")["final_loss"].apply(
            lambda s: np.log10(s).mean() if s.notna().all() and (s > 0).all() else np.nan
        )
        ok = per_lr.dropna()
        rows.append(
            {
                **dict(zip(keys, key)),
                "sensitivity": float(ok.max() - ok.min()) if len(ok) > 1 else float("nan"),
                "sensitivity_std": float(ok.std(ddof=0)) if len(ok) > 1 else float("nan"),
                "diverged_lrs": int(per_lr.isna().sum()),
                "n_lrs": len(per_lr),
            }
        )
    return pd.DataFrame(rows)
