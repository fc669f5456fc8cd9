"""Colours and strokes shared by every chart: distinguishable for colour-blind viewers and in
greyscale (BN placement is carried by the dash pattern, never by colour alone)."""

import bnlr.config

# Okabe & Ito's colour-blind-safe palette, darkest-contrast first.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
BN_DASH = {"none": [1, 0], "pre": [7, 3], "post": [2, 2]}  # solid / dashed / dotted
BN_LABEL = bnlr.config.BN_LABEL
# an epoch axis: whole epochs only (a short run would otherwise get ticks at 1.5, 2.5, …)
EPOCH_AXIS = {"tickMinStep": 1, "format": "d"}
