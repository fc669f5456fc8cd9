"""Colours and strokes shared by every chart: distinguishable for colour-blind viewers and in
greyscale (BN placement is carried by the dash pattern, never by colour alone)."""

import altair as alt
import pandas as pd

import bnlr.config

# Okabe & Ito's colour-blind-safe palette, darkest-contrast first.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
BN_DASH = {"none": [1, 0], "pre": [7, 3], "post": [2, 2]}  # solid / dashed / dotted
BN_LABEL = bnlr.config.BN_LABEL
# an epoch axis: whole epochs only (a short run would otherwise get ticks at 1.5, 2.5, …)
EPOCH_AXIS = {"tickMinStep": 1, "format": "d"}
# mid grey for labels, outlines and neutral legend symbols: reads on light and dark themes
MUTED = "#8c8c8c"
MEAN = PALETTE[1]  # a mean marked on a grey interval (vermillion): reads on light and dark themes


def colour_scale(df: pd.DataFrame) -> alt.Scale:
    """Returns the network colours: one palette colour per ``net`` of ``df``, in sorted order."""
    nets = sorted(df["net"].unique())
    return alt.Scale(domain=nets, range=PALETTE[: len(nets)])


def colour(df: pd.DataFrame, legend: bool = True) -> alt.Color:
    """Returns the colour encoding of the network (field ``net``)."""
    return alt.Color(
        "net:N",
        title="network",
        scale=colour_scale(df),
        legend=alt.Legend(orient="top", symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3)
        if legend
        else None,
    )


def dash(df: pd.DataFrame, legend: bool = True) -> alt.StrokeDash:
    """Returns the dash encoding of the BN placement (field ``BN``, its label; ``bn`` its key):
    only the placements ``df`` holds, in BN_LABEL's order."""
    bns = [b for b in BN_LABEL if b in set(df["bn"])]
    return alt.StrokeDash(
        "BN:N",
        title="BatchNorm",
        scale=alt.Scale(domain=[BN_LABEL[b] for b in bns], range=[BN_DASH[b] for b in bns]),
        legend=alt.Legend(orient="top", symbolType="stroke", symbolStrokeColor=MUTED)
        if legend
        else None,
    )
