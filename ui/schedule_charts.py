"""Charts of the scheduler playground: pure functions, tidy DataFrame -> alt.Chart.

They draw ``bnlr.analysis.schedule_lrs`` (the lr and momentum / Adam beta1 at every optimizer
step) and the loss over seeds. Colour = the schedule (the constant baseline in grey), dash =
BatchNorm placement (``ui.style``).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from bnlr.analysis import BASELINE
from ui.style import BN_LABEL, EPOCH_AXIS, PALETTE, dash

BASELINE_COLOUR = "#888888"  # grey: a reference line, readable on light and dark themes


def colours(schedules: list[str], shown: list[str] | None = None) -> alt.Scale:
    """The baseline in grey, every other schedule its own Okabe-Ito colour, in the order given.

    ``shown`` (a subset of ``schedules``) limits the legend to what a chart draws while every
    schedule keeps the colour it has in the page's other charts.
    """
    others = [s for s in schedules if s != BASELINE]
    colour = {BASELINE: BASELINE_COLOUR} | {s: PALETTE[i % 6] for i, s in enumerate(others)}
    domain = ([BASELINE] if BASELINE in schedules else []) + others
    domain = [s for s in domain if shown is None or s in shown]
    return alt.Scale(domain=domain, range=[colour[s] for s in domain])


def lr_chart(
    lr: pd.DataFrame,
    schedules: list[str],
    log_y: bool = False,
    per_batch: bool = False,
    field: str = "lr",
    title: str = "learning rate",
    width: int = 700,
    height: int = 260,
) -> alt.Chart:
    """Returns the lr (or momentum) per epoch, or per batch, one line per curve.

    Per epoch, each value holds for its whole epoch (a step line); per batch, x advances by
    1 / batches-per-epoch each optimizer step.
    """
    df = lr.assign(BN=lr["bn"].map(BN_LABEL))
    drawn = [s for s in schedules if s in set(df["schedule"])]  # legend: only what is drawn
    lo, hi = (df[field].min(), df[field].max()) if len(df) else (0.0, 1.0)
    lo = 0.0 if field == "lr" else lo  # an lr axis starts at 0; momentum zooms on its cycle
    # headroom: the constant baseline (and every schedule's peak) sits at the top; without it the
    # line lay on the plot's edge and was hidden
    pad = 0.1 * (hi - lo) if hi > lo else 0.01
    scale = (
        alt.Scale(type="log")
        if log_y
        else alt.Scale(domain=[max(0.0, lo - pad), hi + pad], nice=False)
    )
    return (
        alt.Chart(df, width=width, height=height)
        .mark_line(interpolate="linear" if per_batch else "step-after", clip=True)
        .encode(
            x=alt.X(
                "x:Q",
                title="epoch" + (" (each batch a step)" if per_batch else ""),
                scale=alt.Scale(domainMin=1, nice=False),
            ),
            y=alt.Y(f"{field}:Q", title=title, scale=scale),
            color=alt.Color(
                "schedule:N",
                title="schedule",
                scale=colours(schedules, drawn),
                legend=alt.Legend(orient="top", labelLimit=320, columns=2),
            ),
            strokeDash=dash(df),
            detail=alt.Detail("curve:N"),
            tooltip=[
                alt.Tooltip("schedule"),
                alt.Tooltip("arch"),
                alt.Tooltip("epoch"),
                alt.Tooltip("step"),
                alt.Tooltip(f"{field}:Q", format=".4g"),
            ],
        )
    )


def loss_frame(bands: pd.DataFrame) -> pd.DataFrame:
    """Returns the seed-summarised loss with a readable BN column and the network label."""
    return bands.assign(BN=bands["bn"].map(BN_LABEL), model=bands["arch"])


def loss_chart(
    bands: pd.DataFrame,
    schedules: list[str],
    log_y: bool = True,
    columns: int = 2,
    width: int = 340,
    height: int = 230,
) -> alt.FacetChart:
    """Returns the loss per epoch, one panel per model, one line per schedule (baseline in grey).

    ``bands`` has one row per arch × bn × schedule × epoch with loss, lo, hi (the seed band) and
    n_seeds; the band is drawn when there is more than one seed.
    """
    df = loss_frame(bands)
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    colour = alt.Color(
        "schedule:N",
        title="schedule",
        scale=colours(schedules),
        legend=alt.Legend(orient="top", labelLimit=320, columns=2),
    )
    base = alt.Chart(width=width, height=height)
    line = base.mark_line().encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(**EPOCH_AXIS)),
        y=alt.Y("loss:Q", title="MSE loss", scale=y_scale),
        color=colour,
        strokeDash=dash(df),
        tooltip=[
            alt.Tooltip("model"),
            alt.Tooltip("schedule"),
            alt.Tooltip("epoch"),
            alt.Tooltip("loss:Q", format=".4g"),
        ],
    )
    layers = [line]
    if (df["n_seeds"] > 1).any():
        layers.insert(
            0,
            base.mark_area(opacity=0.15).encode(
                x=alt.X("epoch:Q"), y=alt.Y("lo:Q", scale=y_scale), y2=alt.Y2("hi:Q"), color=colour
            ),
        )
    return alt.layer(*layers, data=df).facet(
        facet=alt.Facet("model:N", title=None), columns=columns
    )
