"""Chart builders for the batch-size page: pure functions DataFrame -> alt.Chart (tables:
``bnlr.batch_size``). One panel per network, BN and no BN side by side; log axes for the lr,
the batch size and the noise scale (they span decades)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui.style import BN_LABEL, EPOCH_AXIS, MUTED, PALETTE, colour, dash

BEST = "best lr (mean over seeds)"
SEED = "best lr of one seed"
FIT = "fit: ε_max / (1 + B_noise / B)"
CURVES = {
    BEST: "#000000",
    SEED: MUTED,
    "lr ∝ B": PALETTE[0],
    "lr ∝ √B": PALETTE[2],
    FIT: PALETTE[1],
}
CURVE_DASH = {BEST: [1, 0], SEED: [1, 0], "lr ∝ B": [6, 3], "lr ∝ √B": [2, 2], FIT: [1, 0]}


def panel_order(df: pd.DataFrame) -> list[str]:
    """Returns the networks in panel order: by shape, then no BN before BN (side by side)."""
    key = {b: i for i, b in enumerate(BN_LABEL)}
    nets = df[["network", "bn"]].drop_duplicates()
    nets = nets.assign(shape=nets["network"].str.split(" · ").str[0], k=nets["bn"].map(key))
    return nets.sort_values(["shape", "k"])["network"].tolist()


def heatmap(heat: pd.DataFrame, split: str = "train", width: int = 300, height: int = 200):
    """Returns the final loss per lr × batch size (colour: log10 of the seeds' geometric mean),
    one panel per network; ● the lowest cell of each batch size, ✕ every seed diverged."""
    h = heat.copy()
    h["log_loss"] = np.log10(h["final_loss"])
    lowest = h.loc[h.groupby(["network", "batch_size"])["log_loss"].idxmin().dropna()]
    h["mark"] = np.where(h["final_loss"].isna(), "✕", "")
    h.loc[lowest.index, "mark"] = "●"
    base = alt.Chart(h).encode(
        x=alt.X("batch_size:O", title="batch size B", sort="ascending"),
        y=alt.Y("lr:O", title="learning rate", sort="descending", axis=alt.Axis(format=".2g")),
    )
    # the colour stops at 1000 (ten times the loss at init): a run about to diverge reads 1e15
    low = float(h["log_loss"].min()) if h["log_loss"].notna().any() else 0.0
    top = (
        max(low + 0.5, min(float(h["log_loss"].max()), 3.0)) if h["log_loss"].notna().any() else 3.0
    )
    background = base.mark_rect(color="#e6e6e6")  # a cell whose every seed diverged
    rect = base.mark_rect().encode(
        color=alt.Color(
            "log_loss:Q",
            title=f"log10 final {split} MSE",
            scale=alt.Scale(scheme="viridis", reverse=True, domain=[low, top], clamp=True),
        ),
        tooltip=[
            alt.Tooltip("network:N"),
            alt.Tooltip("batch_size:Q"),
            alt.Tooltip("lr:Q", format=".3g"),
            alt.Tooltip("final_loss:Q", format=".4g", title="final loss (geometric mean)"),
            alt.Tooltip("diverged:Q", title="seeds diverged"),
        ],
    )
    best = (
        base.transform_filter(alt.datum.mark == "●")
        .mark_text(color="white")
        .encode(text=alt.Text("mark:N"))
    )
    lost = (
        base.transform_filter(alt.datum.mark == "✕")
        .mark_text(color="black")
        .encode(text=alt.Text("mark:N"))
    )
    return (
        alt.layer(background, rect, best, lost, data=h)
        .properties(width=width, height=height)
        .facet(column=alt.Column("network:N", sort=panel_order(h), title=None))
    )


def ridge_table(ridge, per_seed, lines, curves) -> pd.DataFrame:
    """Returns everything the ridge chart draws in one table (field ``curve`` says which)."""
    parts = [
        ridge.assign(curve=BEST, lr=ridge["best_lr"]),
        per_seed.assign(curve=SEED, lr=per_seed["best_lr"]),
        lines.assign(curve=lines["rule"]),
        curves.assign(curve=FIT),
    ]
    cols = ["network", "bn", "curve", "batch_size", "lr", "low", "high", "seed"]
    out = pd.concat([p.reindex(columns=cols) for p in parts], ignore_index=True)
    # an interval of 2 seeds can span 20 decades: its bar is cut at 3× the grid's ends
    lo, hi = per_seed["best_lr"].min() / 3, per_seed["best_lr"].max() * 3
    out["low"], out["high"] = out["low"].clip(lower=lo), out["high"].clip(upper=hi)
    return out


def ridge_chart(table: pd.DataFrame, width: int = 300, height: int = 240):
    """Returns the best lr against the batch size, one panel per network: the mean over seeds
    (black, its 90 % interval as a bar), each seed (grey dots), lr ∝ B and lr ∝ √B through the
    smallest batch's best lr, and McCandlish's curve fitted to the black points."""
    colour_ = alt.Color(
        "curve:N",
        title=None,
        scale=alt.Scale(domain=list(CURVES), range=list(CURVES.values())),
        legend=alt.Legend(orient="top", columns=3, symbolType="stroke"),
    )
    x = alt.X("batch_size:Q", title="batch size B", scale=alt.Scale(type="log"))
    y = alt.Y("lr:Q", title="best learning rate", scale=alt.Scale(type="log"))
    base = alt.Chart().encode(x=x, y=y, color=colour_)
    lines = (
        base.transform_filter(alt.FieldOneOfPredicate("curve", ["lr ∝ B", "lr ∝ √B", FIT]))
        .mark_line(strokeWidth=2)
        .encode(
            strokeDash=alt.StrokeDash(
                "curve:N",
                scale=alt.Scale(domain=list(CURVE_DASH), range=list(CURVE_DASH.values())),
                legend=None,
            ),
            detail=alt.Detail("curve:N"),
        )
    )
    seeds = (
        base.transform_filter(alt.datum.curve == SEED)
        .mark_point(size=30, opacity=0.7)
        .encode(
            tooltip=[
                alt.Tooltip("seed:N"),
                alt.Tooltip("batch_size:Q"),
                alt.Tooltip("lr:Q", format=".3g"),
            ]
        )
    )
    bars = (
        alt.Chart()
        .transform_filter((alt.datum.curve == BEST) & (alt.datum.low > 0))
        .mark_rule(strokeWidth=2, color="black")
        .encode(x=x, y=alt.Y("low:Q", scale=alt.Scale(type="log")), y2=alt.Y2("high:Q"))
    )
    points = (
        base.transform_filter(alt.datum.curve == BEST)
        .mark_point(filled=True, size=70, shape="diamond")
        .encode(
            tooltip=[
                alt.Tooltip("batch_size:Q"),
                alt.Tooltip("lr:Q", format=".3g", title="best lr"),
                alt.Tooltip("low:Q", format=".3g"),
                alt.Tooltip("high:Q", format=".3g"),
            ]
        )
    )
    return (
        alt.layer(lines, bars, seeds, points, data=table)
        .properties(width=width, height=height)
        .facet(column=alt.Column("network:N", sort=panel_order(table), title=None))
    )


def noise_chart(noise: pd.DataFrame, fits: pd.DataFrame, width: int = 560, height: int = 260):
    """Returns B_noise along training (epoch 0 = init), one line per network and seed (colour =
    network, dash = BN), log y; a tick per network at the right: B_noise of the fit to its ridge."""
    n = noise.dropna(subset=["noise_scale"]).assign(
        net=lambda d: d["network"].str.split(" · ").str[0], BN=lambda d: d["bn"].map(BN_LABEL)
    )
    n = n[n["noise_scale"] > 0]
    lines = (
        alt.Chart(n)
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=alt.X("epoch:Q", title="epoch (0 = initial weights)", axis=alt.Axis(**EPOCH_AXIS)),
            y=alt.Y("noise_scale:Q", title="noise scale B_noise", scale=alt.Scale(type="log")),
            color=colour(n),
            strokeDash=dash(n),
            detail=alt.Detail("seed:N"),
            tooltip=[
                alt.Tooltip("network:N"),
                alt.Tooltip("seed:N"),
                alt.Tooltip("lr:Q", format=".3g"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("noise_scale:Q", format=".3g"),
                alt.Tooltip("estimator:N"),
            ],
        )
    )
    f = fits.assign(
        net=lambda d: d["network"].str.split(" · ").str[0],
        BN=lambda d: d["bn"].map(BN_LABEL),
        label="fit",
    )
    f = f[f["network"].isin(n["network"])]
    ticks = (
        alt.Chart(f)
        .mark_tick(thickness=3, size=30, orient="horizontal")
        .encode(
            x=alt.XValue(width),
            y=alt.Y("b_noise:Q", scale=alt.Scale(type="log")),
            color=colour(n, legend=False),
            tooltip=[
                alt.Tooltip("network:N"),
                alt.Tooltip("b_noise:Q", format=".3g", title="B_noise of fit"),
            ],
        )
    )
    return alt.layer(lines, ticks).properties(width=width, height=height)
