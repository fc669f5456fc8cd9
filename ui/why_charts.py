"""Charts of the "Why it happens" page: pure functions, ``bnlr.why`` tables → alt.Chart.

Same grammar as the other pages: colour = network, dash = BatchNorm placement, one panel per
learning rate (largest first), log scales where values span decades.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from bnlr.analysis import label
from ui.style import EPOCH_AXIS, MUTED, colour, dash
from ui.theme import PANEL_PX

FACET = {"columns": 2}


def _panels(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    order = [f"lr = {lr:g}" for lr in sorted(df["lr"].unique(), reverse=True)]
    return df.assign(panel=[f"lr = {lr:g}" for lr in df["lr"]]), order


def _by_epoch(
    df: pd.DataFrame,
    field: str,
    title: str,
    log: bool = True,
    rule: str | None = None,
    width: int = PANEL_PX,
    height: int = 200,
    columns: int = FACET["columns"],
) -> alt.FacetChart:
    """Returns ``field`` per epoch, one line per run, one panel per lr, and an optional rule."""
    df, order = _panels(
        label(df).assign(series=lambda d: d["arch"] + " · seed " + d["seed"].astype(str))
    )
    ok = df[np.isfinite(df[field]) & ((df[field] > 0) if log else True)]
    y = alt.Y(f"{field}:Q", title=title, scale=alt.Scale(type="log") if log else alt.Scale())
    line = (
        alt.Chart()
        .mark_line()
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(**EPOCH_AXIS)),
            y=y,
            color=colour(ok),
            strokeDash=dash(ok),
            detail=alt.Detail("series:N"),
            tooltip=[
                alt.Tooltip("arch:N"),
                alt.Tooltip("seed:O"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip(f"{field}:Q", format=".4g"),
            ],
        )
    )
    layers = [line]
    if rule is not None:
        layers.append(
            alt.Chart()
            .mark_rule(color=MUTED, strokeDash=[6, 3], strokeWidth=2)
            .encode(
                y=alt.Y(f"mean({rule}):Q"),
                tooltip=[alt.Tooltip(f"mean({rule}):Q", format=".4g", title=rule)],
            )
        )
    return (
        alt.layer(*layers, data=ok)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("panel:N", sort=order, title=None), columns=columns)
    )


def sharpness_chart(
    epochs: pd.DataFrame, field: str = "sharpness", title: str = "sharpness λ_max", **size
) -> alt.FacetChart:
    """The sharpness per epoch against the optimizer's stability edge (dashed; ``edge``: 2(1 + μ)/lr
    for SGD, (2 + 2β₁)/((1 − β₁)·lr) for Adam, whose ``field`` is "preconditioned_sharpness");
    ``size``: width, height, columns of the panels."""
    return _by_epoch(epochs, field, title, rule="edge", **size)


def effective_lr_chart(epochs: pd.DataFrame) -> alt.FacetChart:
    """lr / ‖w‖² of the rows that feed BatchNorm (BN pre), per epoch."""
    return _by_epoch(epochs[epochs["bn"] == "pre"], "effective_lr", "effective lr = lr / ‖w‖²")


def twin_chart(epochs: pd.DataFrame, parted: float) -> alt.FacetChart:
    """The relative distance between twins per epoch; dashed: where they count as parted."""
    return _by_epoch(
        epochs.assign(parted=parted), "twin_distance", "twin distance ‖θ′ − θ‖ / ‖θ‖", rule="parted"
    )


def invariance_chart(epochs: pd.DataFrame, width: int = 560, height: int = 220) -> alt.Chart:
    """|w·∇L| / (‖w‖‖∇L‖) of the hidden weight rows per epoch, by BN placement (log y)."""
    df = label(epochs)
    df = df[np.isfinite(df["invariance"]) & (df["invariance"] > 0)]
    return (
        alt.Chart(df)
        .mark_line()
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(**EPOCH_AXIS)),
            y=alt.Y("invariance:Q", title="|w·∇L| / (‖w‖ ‖∇L‖)", scale=alt.Scale(type="log")),
            color=colour(df),
            strokeDash=dash(df),
            detail=alt.Detail("run:N"),
            tooltip=[
                alt.Tooltip("arch:N"),
                alt.Tooltip("lr:Q", format="g"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("invariance:Q", format=".2e"),
            ],
        )
        .properties(width=width, height=height)
    )


def lyapunov_chart(runs: pd.DataFrame, width: int = 560, height: int = 220) -> alt.LayerChart:
    """The finite-time Lyapunov exponent of each run against its lr (log x); 0 dashed."""
    df = label(runs)
    df = df[np.isfinite(df["lyapunov"])]
    points = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("lr:Q", title="learning rate", scale=alt.Scale(type="log")),
            y=alt.Y("mean(lyapunov):Q", title=["Lyapunov exponent", "(per epoch)"]),  # fits 220 px
            color=colour(df),
            strokeDash=dash(df),
            tooltip=[
                alt.Tooltip("arch:N"),
                alt.Tooltip("lr:Q", format="g"),
                alt.Tooltip("mean(lyapunov):Q", format="+.3f", title="mean over seeds"),
            ],
        )
    )
    zero = (
        alt.Chart(pd.DataFrame({"y": [0.0]}))
        .mark_rule(color=MUTED, strokeDash=[4, 3])
        .encode(y=alt.Y("y:Q"))
    )
    return alt.layer(zero, points).properties(width=width, height=height)
