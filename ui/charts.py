"""Chart builders for LR pages: pure functions DataFrame -> alt.Chart (tables: ``bnlr.analysis``).

Every chart shares one visual grammar: colour = the network (depth × width, activation), dash =
BatchNorm placement (``ui.style``), a band = the spread over seeds, log scales where the data
spans decades. Clicking a legend entry highlights those lines. Diverged runs end where they
diverged (their NaN losses are not drawn) and are marked with a cross.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from bnlr.analysis import best_lr, diverged_region, label
from ui.style import EPOCH_AXIS, MEAN, MUTED, colour, colour_scale, dash

RULE_SHAPE = {"steep": "triangle-down", "valley": "circle", "minimum": "square"}


def _y(field: str, title: str, log: bool, domain: list | None = None) -> alt.Y:
    kw = {"domain": domain} if domain else {}
    return alt.Y(
        f"{field}:Q",
        title=title,
        scale=alt.Scale(type="log", **kw) if log else alt.Scale(zero=False, **kw),
    )


def y_cap(bands: pd.DataFrame, value: str) -> list | None:
    """Returns a y domain [lowest / 3, 10 × the seed-mean at the smallest lr (a run that barely
    moved)], so the huge losses just before divergence don't flatten the U; None if unknown."""
    ok = bands[np.isfinite(bands[value])]
    if ok.empty:
        return None
    top = 10 * ok.loc[ok["lr"] == ok["lr"].min(), value].max()
    return [float(ok[value].min() / 3), float(max(top, ok[value].min() * 10))]


def _highlight():
    """Returns the legend-click selections (network, BN) and the opacity rule they drive."""
    net = alt.selection_point(fields=["net"], bind="legend", name="pick_net")
    bn = alt.selection_point(fields=["BN"], bind="legend", name="pick_bn")
    # a channel object, not the bare condition dict, which Altair would turn into one with
    # ``from_dict``: slow (tests/test_charts.py, test_chart_builders_never_call_from_dict)
    rule = alt.when(net & bn).then(alt.value(1.0)).otherwise(alt.value(0.12))
    return [net, bn], alt.OpacityValue(**rule)


# ---------------------------------------------------------------- charts


def loss_curves(
    bands: pd.DataFrame, log_y: bool = True, columns: int = 2, width: int = 440, height: int = 220
) -> alt.FacetChart:
    """Returns the article's small multiples: loss per epoch, one panel per lr (largest first).

    Args:
        bands: from ``history_band``.
        log_y: log scale for the loss.
        columns: panels per row (2 gives the article's 2×2 for four lrs).
    """
    params, opacity = _highlight()
    base = alt.Chart().encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(**EPOCH_AXIS)), color=colour(bands)
    )
    tooltip = [
        alt.Tooltip("arch:N"),
        alt.Tooltip("lr:Q", format="g"),
        alt.Tooltip("epoch:Q"),
        alt.Tooltip("loss:Q", format=".4g"),
        alt.Tooltip("lo:Q", format=".4g"),
        alt.Tooltip("hi:Q", format=".4g"),
        alt.Tooltip("n_finite:Q"),
        alt.Tooltip("n_seeds:Q"),
    ]
    # one area per series: colour tells networks apart, detail their BN placements
    band = base.mark_area(opacity=0.15).encode(
        y=alt.Y("lo:Q"),
        y2=alt.Y2("hi:Q"),
        detail=alt.Detail("BN:N"),
        opacity=alt.OpacityValue(0.15),
    )
    line = (
        base.mark_line()
        .encode(
            y=_y("loss", "MSE loss", log_y),
            strokeDash=dash(bands),
            opacity=opacity,
            tooltip=tooltip,
        )
        .add_params(*params)
    )
    cross = (
        base.mark_point(shape="cross", size=140, filled=True)
        .encode(y=alt.Y("loss:Q"), tooltip=tooltip)
        .transform_filter("datum.diverges_after")
    )
    panels = [f"lr = {lr:g}" for lr in sorted(bands["lr"].unique(), reverse=True)]
    return (
        alt.layer(band, line, cross)
        .properties(width=width, height=height)
        .facet(
            facet=alt.Facet("panel:N", sort=panels, title=None),
            columns=columns,
            data=bands.assign(panel=[f"lr = {lr:g}" for lr in bands["lr"]]),
        )
    )


def lr_curve(
    bands: pd.DataFrame,
    value: str = "final_loss",
    y_title: str = "final MSE loss",
    log_y: bool = True,
    width: int = 580,
    height: int = 340,
    predicted: pd.DataFrame | None = None,
    guess: float | None = None,
) -> alt.LayerChart:
    """Returns the U-curve: a run metric against lr (log x), a band over seeds, the best lr per
    architecture marked with a large diamond, the region where runs diverged shaded grey.

    Args:
        bands: from ``metrics_band``.
        value: the metric column drawn.
        guess: a student's lr (``ui.classroom``), drawn as a dashed rule labelled "your guess".
    """
    params, opacity = _highlight()
    lrs = bands["lr"]
    x = alt.X(
        "lr:Q", title="learning rate", scale=alt.Scale(type="log", domain=[lrs.min(), lrs.max()])
    )
    base = alt.Chart(bands).encode(x=x, color=colour(bands))
    tooltip = [
        alt.Tooltip("arch:N"),
        alt.Tooltip("lr:Q", format="g"),
        alt.Tooltip(f"{value}:Q", format=".4g"),
        alt.Tooltip("lo:Q", format=".4g"),
        alt.Tooltip("hi:Q", format=".4g"),
        alt.Tooltip("n_finite:Q"),
        alt.Tooltip("diverged:Q"),
    ]
    band = base.mark_area(opacity=0.15, clip=True).encode(
        y=alt.Y("lo:Q"), y2=alt.Y2("hi:Q"), detail=alt.Detail("BN:N")
    )
    line = (
        base.mark_line(point=True, clip=True)
        .encode(
            y=_y(value, y_title, log_y, y_cap(bands, value)),
            strokeDash=dash(bands),
            opacity=opacity,
            tooltip=tooltip,
        )
        .add_params(*params)
    )
    best = (
        alt.Chart(best_lr(bands, value))
        .mark_point(shape="diamond", size=320, filled=True, stroke=MUTED, clip=True, strokeWidth=1)
        .encode(
            x=alt.X("best_lr:Q"),
            y=alt.Y(f"{value}:Q"),
            color=colour(bands, legend=False),
            tooltip=[
                alt.Tooltip("arch:N"),
                alt.Tooltip("best_lr:Q", format="g", title="best lr"),
                alt.Tooltip(f"{value}:Q", format=".4g"),
            ],
        )
    )
    layers = [band, line, best]
    if predicted is not None and len(predicted):  # 2/λ_max(0) per network, dotted
        pred = label(predicted.merge(bands[["arch", "bn"]].drop_duplicates(), on="arch"))
        layers.append(
            alt.Chart(pred)
            .mark_rule(strokeDash=[2, 3], strokeWidth=2, clip=True)
            .encode(
                x=alt.X("predicted_max_lr:Q"),
                color=colour(bands, legend=False),
                tooltip=[
                    alt.Tooltip("arch:N"),
                    alt.Tooltip("predicted_max_lr:Q", format=".3g", title="2/λ_max(0)"),
                ],
            )
        )
    region = diverged_region(bands)
    if len(region):
        shade = (
            alt.Chart(region)
            .mark_rect(color="#888", opacity=0.18, clip=True)
            .encode(x=alt.X("lo:Q"), x2=alt.X2("hi:Q"), tooltip=[alt.Tooltip("label:N")])
        )
        # at the plot's top right corner, inside it (the shade runs past the last lr; a label at its
        # left edge ran out of the plot)
        text = (
            alt.Chart(region.assign(at=float(lrs.max())))
            .mark_text(align="right", baseline="top", dx=-4, dy=4, color=MUTED)
            .encode(x=alt.X("at:Q"), y=alt.YValue(0), text=alt.Text("label:N"))
        )
        layers = [shade, text, *layers]
    if guess is not None:
        mark = pd.DataFrame({"guess": [float(guess)], "label": ["your guess"]})
        layers.append(
            alt.Chart(mark)
            .mark_rule(strokeDash=[8, 4], strokeWidth=3, color=MUTED)
            .encode(
                x=alt.X("guess:Q"),
                tooltip=[alt.Tooltip("guess:Q", format=".2g", title="your guess")],
            )
        )
        layers.append(
            alt.Chart(mark)
            .mark_text(align="left", baseline="bottom", dx=5, dy=-4, color=MUTED)
            .encode(x=alt.X("guess:Q"), y=alt.YValue(height), text=alt.Text("label:N"))
        )
    return alt.layer(*layers).properties(width=width, height=height)


def _round_up(x: float) -> float:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k) at least x; 1 for an x
    that is not a positive number.

    >>> _round_up(0.52 * 1.3), _round_up(3.1), _round_up(float("nan"))
    (0.8, 4.0, 1.0)
    """
    if not (np.isfinite(x) and x > 0):
        return 1.0
    scale = 10.0 ** np.floor(np.log10(x))
    return float(
        next(m * scale for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * scale >= x * (1 - 1e-12))
    )


def sensitivity_bars(sens: pd.DataFrame, width: int = 420) -> alt.LayerChart:
    """Returns a bar per architecture: its LR sensitivity in decades, BN models hatched lighter."""
    sens = label(sens)
    order = sens.sort_values(["net", "bn"])["arch"].tolist()
    y = alt.Y("arch:N", sort=order, title=None)
    bars = (
        alt.Chart(sens)
        .mark_bar(strokeWidth=2)
        .encode(
            x=alt.X(
                "sensitivity:Q",
                title="LR sensitivity (decades of final loss)",
                # room right of the longest bar for its value label, whatever the chart's width
                scale=alt.Scale(domain=[0, _round_up(1.3 * sens["sensitivity"].max())]),
                axis=alt.Axis(labelFlush=True),
            ),
            # no legends: the axis labels name each bar's network and BN (a legend here was cut off)
            y=y,
            color=colour(sens, legend=False),
            stroke=alt.Stroke("net:N", legend=None, scale=colour_scale(sens)),
            strokeDash=dash(sens, legend=False),
            fillOpacity=alt.FillOpacityValue(
                0.35, condition={"test": "datum.bn == 'none'", "value": 0.9}
            ),
            tooltip=[
                alt.Tooltip("arch:N"),
                alt.Tooltip("sensitivity:Q", format=".3f"),
                alt.Tooltip("sensitivity_std:Q", format=".3f"),
                alt.Tooltip("diverged_lrs:Q"),
                alt.Tooltip("n_lrs:Q"),
            ],
        )
    )
    text = (
        alt.Chart(sens)
        .mark_text(align="left", dx=4, color=MUTED)
        .encode(x=alt.X("sensitivity:Q"), y=y, text=alt.Text("sensitivity:Q", format=".2f"))
    )
    return alt.layer(bars, text).properties(width=width, height=alt.Step(34))


def run_grid(metrics: pd.DataFrame) -> alt.LayerChart:
    """Returns a heat map per model × lr: colour = instability (seed mean), text = final loss or
    where it diverged."""
    m = label(metrics)
    cell = m.groupby(["arch", "net", "bn", "lr"], as_index=False).agg(
        instability=("instability", "mean"),
        final_loss=(
            "final_loss",
            lambda s: float(10 ** np.log10(s).mean()) if s.notna().all() else np.nan,
        ),
        diverged=("diverged_epoch", lambda s: int(s.notna().sum())),
        first_div=("diverged_epoch", "min"),
    )
    cell["text"] = [
        f"✕ ep {int(e)}" if d else f"{f:.3g}"
        for f, d, e in zip(cell["final_loss"], cell["diverged"], cell["first_div"])
    ]
    order = cell.sort_values(["net", "bn"])["arch"].unique().tolist()
    base = alt.Chart(cell).encode(
        x=alt.X("lr:O", sort="descending", title="learning rate"),
        y=alt.Y("arch:N", sort=order, title=None),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "instability:Q", title="instability (decades)", scale=alt.Scale(scheme="oranges")
        ),
        tooltip=[
            alt.Tooltip("arch:N"),
            alt.Tooltip("lr:Q", format="g"),
            alt.Tooltip("final_loss:Q", format=".4g"),
            alt.Tooltip("instability:Q", format=".3f"),
            alt.Tooltip("diverged:Q"),
        ],
    )
    # black on the light cells, white on the dark ones (the oranges scheme runs light to dark);
    # which is which is data, so a display change that changes only the numbers keeps the spec
    cell["dark"] = cell["instability"] > (cell["instability"].min() + cell["instability"].max()) / 2
    text = base.mark_text(fontWeight="bold").encode(
        text=alt.Text("text:N"),
        color=alt.ColorValue("black", condition={"test": "datum.dark", "value": "white"}),
    )
    return alt.layer(rect, text).properties(height=alt.Step(34), width=alt.Step(90))


def range_test_chart(
    curves: pd.DataFrame,
    suggested: pd.DataFrame,
    best: pd.DataFrame | None = None,
    width: int = 580,
    height: int = 340,
) -> alt.LayerChart:
    """Returns the LR range test: smoothed loss against the rising lr (log x, log y), each
    suggestion rule's lr as a marker on its curve, and the full sweep's best lr as a thin rule."""
    curves, suggested = label(curves), label(suggested)
    params, opacity = _highlight()
    x = alt.X("lr:Q", title="learning rate (rising every batch)", scale=alt.Scale(type="log"))
    low = float(curves["smooth_loss"].min())
    y = alt.Y(
        "smooth_loss:Q",
        title="smoothed batch loss",
        scale=alt.Scale(type="log", domain=[low / 1.2, low * 5]),
    )
    line = (
        alt.Chart(curves)
        .mark_line(clip=True)
        .encode(
            x=x,
            y=y,
            color=colour(curves),
            strokeDash=dash(curves),
            detail=alt.Detail("seed:N"),  # one line per network and seed
            opacity=opacity,
            tooltip=[
                alt.Tooltip("arch:N"),
                alt.Tooltip("lr:Q", format=".3g"),
                alt.Tooltip("iteration:Q"),
                alt.Tooltip("smooth_loss:Q", format=".4g"),
            ],
        )
        .add_params(*params)
    )
    marks = (
        alt.Chart(suggested.dropna(subset=["lr"]))
        .mark_point(size=200, filled=True, stroke=MUTED, strokeWidth=1)
        .encode(
            x=alt.X("lr:Q"),
            y=alt.Y("smooth_loss:Q"),
            color=colour(curves, legend=False),
            shape=alt.Shape(
                "rule:N",
                title="suggestion",
                scale=alt.Scale(domain=list(RULE_SHAPE), range=list(RULE_SHAPE.values())),
                legend=alt.Legend(orient="bottom", symbolFillColor=MUTED, symbolStrokeColor=MUTED),
            ),
            tooltip=[
                alt.Tooltip("arch:N"),
                alt.Tooltip("rule:N"),
                alt.Tooltip("lr:Q", format=".3g"),
            ],
        )
    )
    layers = [line, marks]
    if best is not None and len(best):
        layers.append(
            alt.Chart(label(best))
            .mark_rule(strokeDash=[1, 3], opacity=0.8)
            .encode(
                x=alt.X("best_lr:Q"),
                color=colour(curves, legend=False),
                tooltip=[
                    alt.Tooltip("arch:N"),
                    alt.Tooltip("best_lr:Q", format="g", title="sweep's best lr"),
                ],
            )
        )
    return alt.layer(*layers).properties(width=width, height=height)


def effect_strip(
    effects, low: float, high: float, unit: str = "decades", width: int = 520, compact=False
):
    """Returns one dot per seed on the effect axis, the mean with its 90 % interval on a row below,
    and a dashed rule at 0 (no effect): a verdict's evidence at a glance.

    Args:
        effects: per-seed effect (a Series indexed by seed; NaN seeds are left out).
        low, high: the 90 % interval of the mean effect (Student t).
        compact: shorter labels, for a narrow column (Home's claim cards).
    """
    seeds_row, mean_row = (
        ("seeds", "mean, 90 %") if compact else ("each seed", "mean, 90 % interval")
    )
    title = f"effect ({unit})" if compact else f"effect ({unit}); > 0: the claim holds"
    df = effects.dropna().rename("effect").rename_axis("seed").reset_index().assign(row=seeds_row)
    # the axis spans the seeds, the interval and 0 (every layer's data), plus a margin: no
    # number in the spec, so another split's strip is the same chart with other data
    x = alt.X(
        "effect:Q",
        title=title,
        scale=alt.Scale(nice=False, zero=True, padding=round(0.07 * width)),
        axis=alt.Axis(tickCount=4 if compact else 6, format="+.2f"),
    )
    y = alt.Y("row:N", title=None, sort=[seeds_row, mean_row])
    dots = (
        alt.Chart(df)
        .mark_circle(size=80, opacity=0.7)
        .encode(x=x, y=y, tooltip=[alt.Tooltip("seed:O"), alt.Tooltip("effect:Q", format="+.3f")])
    )
    zero = (
        alt.Chart(pd.DataFrame({"effect": [0.0]}))
        .mark_rule(color=MUTED, strokeDash=[4, 3])
        .encode(x=alt.X("effect:Q"))
    )
    layers = [zero, dots]
    if np.isfinite(low) and np.isfinite(high):
        mean = float(df["effect"].mean())
        interval = pd.DataFrame(
            {"effect": [low], "high": [high], "mean": [mean], "row": [mean_row]}
        )
        tip = [
            alt.Tooltip("mean:Q", format="+.3f"),
            alt.Tooltip("effect:Q", title="90 % low", format="+.3f"),
            alt.Tooltip("high:Q", title="90 % high", format="+.3f"),
        ]
        layers.append(
            alt.Chart(interval)
            .mark_rule(strokeWidth=7, opacity=0.55, color=MUTED)
            .encode(x=alt.X("effect:Q"), x2=alt.X2("high:Q"), y=y, tooltip=tip)
        )
        layers.append(  # (the rule's colour set: the theme's default was black in dark mode)
            alt.Chart(interval)
            .mark_tick(thickness=3, color=MEAN)
            .encode(x=alt.X("mean:Q"), y=y, tooltip=tip)
        )
    return alt.layer(*layers).properties(width=width, height=alt.Step(30))
