"""Charts of "past the wall" and warmup: pure functions, ``bnlr.edge`` tables → alt.Chart.

Same grammar as the other pages: colour = network, dash = BatchNorm placement, one line per
seed; one panel per factor of the wall 2/λ₀ (smallest first).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from bnlr.analysis import label
from ui.style import MUTED, colour, dash

OUTCOME_COLOURS = {  # Okabe–Ito: calm → wild
    "lazy": "#0072B2",
    "edge of stability": "#009E73",
    "catapult": "#E69F00",
    "diverged": "#D55E00",
}


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    return label(df.assign(arch=df["network"])).assign(
        series=lambda d: d["network"] + " · seed " + d["seed"].astype(str)
    )


def _factor_panels(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    order = [f"{f:g} × 2/λ₀" for f in sorted(df["factor"].unique())]
    return df.assign(panel=[f"{f:g} × 2/λ₀" for f in df["factor"]]), order


def loss_chart(traj: pd.DataFrame, width: int = 220, height: int = 150, columns: int = 3):
    """The full-batch loss per gradient-descent step, one panel per factor (log y); dashed: each
    run's starting loss is the first point, so a catapult shows as a hump above it."""
    df, order = _factor_panels(_labelled(traj))
    df = df[np.isfinite(df["loss"]) & (df["loss"] > 0)]
    line = (
        alt.Chart()
        .mark_line(strokeWidth=1.2)
        .encode(
            x=alt.X("step:Q", title="gradient-descent step"),
            y=alt.Y("loss:Q", title="train MSE (full batch)", scale=alt.Scale(type="log")),
            color=colour(df),
            strokeDash=dash(df),
            detail=alt.Detail("series:N"),
            tooltip=[
                alt.Tooltip("network:N"),
                alt.Tooltip("seed:O"),
                alt.Tooltip("step:Q"),
                alt.Tooltip("loss:Q", format=".4g"),
            ],
        )
    )
    return (
        alt.layer(line, data=df)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("panel:N", sort=order, title=None), columns=columns)
    )


def sharpness_chart(traj: pd.DataFrame, width: int = 220, height: int = 150, columns: int = 3):
    """λ_max ÷ (2/lr) at each measured step, one panel per factor (log y); dashed: 1, the wall."""
    df, order = _factor_panels(_labelled(traj))
    df = df[np.isfinite(df["sharpness"]) & (df["sharpness"] > 0)]
    df = df.assign(ratio=df["sharpness"] * df["lr"] / 2)
    line = (
        alt.Chart()
        .mark_line(point=alt.OverlayMarkDef(size=12), strokeWidth=1.2)
        .encode(
            x=alt.X("step:Q", title="gradient-descent step"),
            y=alt.Y("ratio:Q", title="λ_max ÷ (2/lr)", scale=alt.Scale(type="log")),
            color=colour(df),
            strokeDash=dash(df),
            detail=alt.Detail("series:N"),
            tooltip=[
                alt.Tooltip("network:N"),
                alt.Tooltip("seed:O"),
                alt.Tooltip("step:Q"),
                alt.Tooltip("sharpness:Q", format=".4g", title="λ_max"),
                alt.Tooltip("ratio:Q", format=".3f", title="λ_max ÷ (2/lr)"),
            ],
        )
    )
    wall = alt.Chart().mark_rule(color=MUTED, strokeDash=[6, 3]).encode(y=alt.YDatum(1))
    return (
        alt.layer(line, wall, data=df)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("panel:N", sort=order, title=None), columns=columns)
    )


def outcome_chart(runs: pd.DataFrame, width: int = 420) -> alt.Chart:
    """What each run did: one row per network and seed, one column per factor, coloured by the
    outcome; the cell's text says where λ ended against the wall."""
    df = runs.assign(run=runs["network"] + " · seed " + runs["seed"].astype(str))
    df = df.assign(
        factor_label=[f"{f:g}×" for f in df["factor"]],
        ratio=df["last_sharpness"] * df["lr"] / 2,
    )
    order = [f"{f:g}×" for f in sorted(df["factor"].unique())]
    rows = list(dict.fromkeys(df["run"]))
    base = alt.Chart(df).encode(
        x=alt.X("factor_label:O", sort=order, title="lr ÷ (2/λ₀)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("run:N", sort=rows, title=None, axis=alt.Axis(labelOverlap=False)),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color(
            "outcome:N",
            title="outcome",
            scale=alt.Scale(domain=list(OUTCOME_COLOURS), range=list(OUTCOME_COLOURS.values())),
            legend=alt.Legend(orient="top"),
        ),
        tooltip=[
            alt.Tooltip("network:N"),
            alt.Tooltip("seed:O"),
            alt.Tooltip("factor:Q", format="g"),
            alt.Tooltip("lr:Q", format=".3g"),
            alt.Tooltip("outcome:N"),
            alt.Tooltip("start_loss:Q", format=".3g", title="loss at start"),
            alt.Tooltip("peak_loss:Q", format=".3g", title="peak loss"),
            alt.Tooltip("final_loss:Q", format=".3g", title="final loss"),
            alt.Tooltip("ratio:Q", format=".2f", title="last λ_max ÷ (2/lr)"),
            alt.Tooltip("rose:Q", format=".0%", title="steps the loss rose"),
        ],
    )
    return cells.properties(width=width, height=alt.Step(20))


def warmup_chart(table: pd.DataFrame, width: int = 420, height: int = 220) -> alt.LayerChart:
    """The largest trainable lr against the warmup length: the geometric mean over seeds per
    network (line) and each seed (dots)."""
    df = label(table.assign(arch=table["network"]))
    df = df[np.isfinite(df["largest_lr"])]
    mean = (
        df.assign(log=np.log10(df["largest_lr"]))
        .groupby(["network", "net", "bn", "BN", "warmup_epochs"], as_index=False)["log"]
        .mean()
        .assign(largest_lr=lambda d: 10 ** d["log"])
    )
    lengths = sorted(df["warmup_epochs"].unique().tolist())
    x = alt.X(
        "warmup_epochs:Q",
        title="linear warmup (epochs)",
        scale=alt.Scale(nice=False),
        axis=alt.Axis(values=lengths, format="d"),
    )
    y = alt.Y("largest_lr:Q", title="largest trainable lr", scale=alt.Scale(type="log"))
    lines = (
        alt.Chart(mean)
        .mark_line()
        .encode(
            x=x,
            y=y,
            color=colour(mean),
            strokeDash=dash(mean),
            tooltip=[
                alt.Tooltip("network:N"),
                alt.Tooltip("warmup_epochs:Q"),
                alt.Tooltip("largest_lr:Q", format=".3g", title="geometric mean over seeds"),
            ],
        )
    )
    dots = (
        alt.Chart(df)
        .mark_point(size=25, opacity=0.6)
        .encode(
            x=x,
            y=y,
            color=colour(df, legend=False),
            tooltip=[
                alt.Tooltip("network:N"),
                alt.Tooltip("seed:O"),
                alt.Tooltip("largest_lr:Q", format=".3g"),
            ],
        )
    )
    return alt.layer(lines, dots).properties(width=width, height=height)


def band_chart(band: pd.DataFrame, width: int = 560, height=None) -> alt.LayerChart:
    """Per network on a log lr axis: the band from the naive wall 2/λ₀ to the largest lr full-batch
    gradient descent trains at (medians over seeds), and ✕ the sweep's first diverged lr."""
    df = label(band.assign(arch=band["network"]))
    nets = list(df["network"])
    x_scale = alt.Scale(type="log")
    y = alt.Y("network:N", sort=nets, title=None, axis=alt.Axis(labelOverlap=False))
    bar = (
        alt.Chart(df)
        .mark_bar(height=10, opacity=0.55)
        .encode(
            x=alt.X("wall_at_init:Q", title="learning rate", scale=x_scale),
            x2=alt.X2("largest_lr:Q"),
            y=y,
            color=colour(df, legend=False),
            tooltip=[
                alt.Tooltip("network:N"),
                alt.Tooltip("wall_at_init:Q", format=".3g", title="2/λ₀"),
                alt.Tooltip("largest_lr:Q", format=".3g", title="largest lr GD trains at"),
                alt.Tooltip("largest_factor:Q", format="g", title="× 2/λ₀"),
            ],
        )
    )
    wall = (
        alt.Chart(df)
        .mark_tick(color=MUTED, thickness=2, size=16)
        .encode(x=alt.X("wall_at_init:Q"), y=y)
    )
    swept = df[np.isfinite(df["first_diverged_lr"])]
    cross = (
        alt.Chart(swept)
        .mark_point(shape="cross", size=120, filled=True, color="#D55E00", angle=45)
        .encode(
            x=alt.X("first_diverged_lr:Q"),
            y=y,
            tooltip=[alt.Tooltip("network:N"), alt.Tooltip("first_diverged_lr:Q", format=".3g")],
        )
    )
    # a step per network: a number would squeeze the rows into Streamlit's default height
    return alt.layer(bar, wall, cross).properties(width=width, height=height or alt.Step(26))
