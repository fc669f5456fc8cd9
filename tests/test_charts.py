"""Chart builders and the tidy tables they draw, checked by hand-made data and chart.to_dict()."""

import math

import numpy as np
import pandas as pd
import pytest

from bnlr import analysis
from ui import charts
from ui.style import BN_DASH, PALETTE


def history(losses: dict, epochs: int = 3) -> pd.DataFrame:
    """A tiny history: {(arch, bn, lr, seed): [loss per epoch]} on the train split."""
    rows = []
    for run, ((arch, bn, lr, seed), curve) in enumerate(losses.items()):
        for e, loss in enumerate(curve, 1):
            rows.append(
                {
                    "run": run,
                    "arch": arch,
                    "bn": bn,
                    "lr": lr,
                    "seed": seed,
                    "epoch": e,
                    "split": "train",
                    "loss": loss,
                }
            )
    return pd.DataFrame(rows)


H = history(
    {
        ("3×4 tanh · no BN", "none", 0.1, 1): [10.0, 1.0, 0.1],
        ("3×4 tanh · no BN", "none", 0.1, 2): [1000.0, 100.0, 10.0],
        ("3×4 tanh · BN pre", "pre", 0.1, 1): [10.0, float("nan"), float("nan")],
        ("3×4 tanh · BN pre", "pre", 0.1, 2): [10.0, 5.0, float("nan")],
        ("3×4 tanh · no BN", "none", 0.01, 1): [8.0, 4.0, 2.0],
        ("3×4 tanh · no BN", "none", 0.01, 2): [8.0, 4.0, 2.0],
    }
)


def test_seed_band_is_geometric_in_log_space():
    b = analysis.history_band(H, band="spread").set_index(["arch", "lr", "epoch"])
    row = b.loc[("3×4 tanh · no BN", 0.1, 1)]
    # log10: 1 and 3 → mean 2, sample sd √2
    assert row["loss"] == pytest.approx(100.0)
    assert row["lo"] == pytest.approx(10 ** (2 - math.sqrt(2)))
    assert row["hi"] == pytest.approx(10 ** (2 + math.sqrt(2)))
    mm = (
        analysis.history_band(H, band="minmax")
        .set_index(["arch", "lr", "epoch"])
        .loc[("3×4 tanh · no BN", 0.1, 3)]
    )
    assert (mm["lo"], mm["hi"]) == pytest.approx((0.1, 10.0))
    one = b.loc[("3×4 tanh · no BN", 0.01, 2)]  # identical seeds: no spread
    assert (one["lo"], one["loss"], one["hi"]) == pytest.approx((4.0, 4.0, 4.0))


def test_diverged_seeds_are_left_out_and_marked():
    b = analysis.history_band(H).set_index(["arch", "lr", "epoch"])
    bn = b.loc["3×4 tanh · BN pre"].loc[0.1]
    assert bn["n_finite"].tolist() == [2, 1, 0]
    assert bn.loc[2, "loss"] == pytest.approx(5.0)  # only the seed still alive
    assert math.isnan(bn.loc[3, "loss"])
    assert bn["diverges_after"].tolist() == [True, True, False]
    assert not b.loc["3×4 tanh · no BN", "diverges_after"].any()
    with pytest.raises(ValueError, match="band"):
        analysis.seed_band(H, "loss", ["arch"], band="iqr")


def test_loss_curves_facets_per_lr_with_colour_dash_band_and_log_y():
    spec = charts.loss_curves(analysis.history_band(H), log_y=True).to_dict()
    assert spec["facet"]["field"] == "panel"
    assert spec["facet"]["sort"] == ["lr = 0.1", "lr = 0.01"]  # largest lr first, as the article
    band, line, cross = spec["spec"]["layer"]
    assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "hi"
    enc = line["encoding"]
    assert enc["y"]["scale"]["type"] == "log"
    assert enc["x"]["axis"] == {"tickMinStep": 1, "format": "d"}  # whole epochs on the axis
    assert enc["color"]["field"] == "net" and enc["color"]["scale"]["range"] == PALETTE[:1]
    assert enc["strokeDash"]["field"] == "BN"
    assert enc["strokeDash"]["scale"]["range"] == [BN_DASH["none"], BN_DASH["pre"]]
    params = spec["params"]  # a facet lifts its layers' selections to the top
    assert {p["name"] for p in params} == {"pick_net", "pick_bn"}
    assert all(p["bind"] == "legend" for p in params)
    assert enc["opacity"]["condition"][0]["test"] == {
        "and": [{"param": "pick_net"}, {"param": "pick_bn"}]
    }
    assert cross["mark"]["shape"] == "cross" and cross["transform"] == [
        {"filter": "datum.diverges_after"}
    ]
    assert (
        "type"
        not in charts.loss_curves(analysis.history_band(H), log_y=False).to_dict()["spec"]["layer"][
            1
        ]["encoding"]["y"]["scale"]
    )


def metrics_table() -> pd.DataFrame:
    rows = []
    for arch, bn in (("3×4 tanh · no BN", "none"), ("3×4 tanh · BN pre", "pre")):
        for lr, loss in ((1e-3, 50.0), (1e-2, 10.0), (1e-1, 20.0), (1.0, float("nan"))):
            for seed in (1, 2):
                rows.append(
                    {
                        "arch": arch,
                        "bn": bn,
                        "lr": lr,
                        "seed": seed,
                        "final_loss": loss * (2.0 if bn == "pre" else 1.0),
                        "instability": 0.0,
                        "diverged_epoch": 3.0 if math.isnan(loss) else float("nan"),
                    }
                )
    return pd.DataFrame(rows)


def test_best_lr_and_diverged_region():
    bands = analysis.metrics_band(metrics_table())
    best = analysis.best_lr(bands).set_index("arch")
    assert best.loc["3×4 tanh · no BN", "best_lr"] == 1e-2
    assert best.loc["3×4 tanh · BN pre", "final_loss"] == pytest.approx(20.0)
    region = analysis.diverged_region(bands)
    # from half-way (in log) between 0.1 and 1, to half a step past 1
    assert region["lo"].iloc[0] == pytest.approx(math.sqrt(0.1))
    assert region["hi"].iloc[0] == pytest.approx(math.sqrt(10))
    assert analysis.diverged_region(bands[bands["lr"] < 1]).empty


def test_lr_curve_log_x_band_best_marker_and_shade():
    bands = analysis.metrics_band(metrics_table())
    layers = charts.lr_curve(bands).to_dict()["layer"]
    shade, _text, band, line, best = layers
    assert shade["mark"]["type"] == "rect" and shade["encoding"]["x2"]["field"] == "hi"
    assert line["encoding"]["x"]["scale"]["type"] == "log"
    assert line["encoding"]["y"]["scale"]["type"] == "log"
    assert band["encoding"]["y2"]["field"] == "hi"
    assert best["mark"]["shape"] == "diamond" and best["encoding"]["x"]["field"] == "best_lr"
    assert (
        len(charts.lr_curve(bands[bands["lr"] < 1]).to_dict()["layer"]) == 3
    )  # nothing diverged: no shade


def test_range_test_chart_marks_each_rule():
    curves = pd.DataFrame(
        {
            "arch": "3×4 tanh · no BN",
            "bn": "none",
            "iteration": [1, 2, 3],
            "lr": [1e-3, 1e-2, 1e-1],
            "smooth_loss": [5.0, 4.0, 9.0],
        }
    )
    sugg = pd.DataFrame(
        {
            "arch": "3×4 tanh · no BN",
            "bn": "none",
            "rule": ["steep", "valley", "minimum"],
            "lr": [1e-3, 1e-2, 1e-3],
            "smooth_loss": [5.0, 4.0, 5.0],
        }
    )
    best = pd.DataFrame({"arch": ["3×4 tanh · no BN"], "bn": ["none"], "best_lr": [0.02]})
    line, marks, rule = charts.range_test_chart(curves, sugg, best).to_dict()["layer"]
    assert line["encoding"]["x"]["scale"]["type"] == "log"
    assert line["encoding"]["y"]["scale"] == {"type": "log", "domain": [4.0 / 1.2, 20.0]}
    assert marks["encoding"]["shape"]["scale"]["domain"] == ["steep", "valley", "minimum"]
    assert rule["mark"]["type"] == "rule" and rule["encoding"]["x"]["field"] == "best_lr"


def test_sensitivity_bars_and_run_grid():
    sens = pd.DataFrame(
        {
            "arch": ["3×4 tanh · no BN", "3×4 tanh · BN pre"],
            "bn": ["none", "pre"],
            "sensitivity": [0.2, 0.5],
            "sensitivity_std": [0.1, 0.2],
            "diverged_lrs": [0, 1],
            "n_lrs": [4, 4],
        }
    )
    bars, _text = charts.sensitivity_bars(sens).to_dict()["layer"]
    assert (
        bars["encoding"]["x"]["field"] == "sensitivity"
        and bars["encoding"]["strokeDash"]["field"] == "BN"
    )
    # the longest bar ends before 80 % of the axis: its value label fits right of it
    top = bars["encoding"]["x"]["scale"]["domain"][1]
    assert 0.5 / top <= 0.8 and bars["encoding"]["x"]["axis"]["labelFlush"]
    m = metrics_table()
    rect, _label = charts.run_grid(m).to_dict()["layer"]
    assert rect["encoding"]["color"]["field"] == "instability"
    cells = pd.DataFrame(charts.run_grid(m).to_dict()["datasets"].popitem()[1])
    assert set(cells.loc[cells["lr"] == 1.0, "text"]) == {"✕ ep 3"}
    assert cells.loc[(cells["lr"] == 0.01) & (cells["bn"] == "pre"), "text"].item() == "20"
    # white text on the cells darker than the middle of the colour scale, black on the others
    spread = m.assign(instability=np.linspace(0.0, 2.0, len(m)))
    _rect, label = charts.run_grid(spread).to_dict()["layer"]
    assert label["encoding"]["color"]["condition"]["test"] == "datum.dark"
    cells = pd.DataFrame(charts.run_grid(spread).to_dict()["datasets"].popitem()[1])
    mid = (cells["instability"].min() + cells["instability"].max()) / 2
    assert (cells["dark"] == (cells["instability"] > mid)).all()
    assert cells["dark"].any() and not cells["dark"].all()


def _groups(layer: dict, facet: str | None) -> list[str]:
    """The fields that split a mark's data into separate shapes: colour, detail, facet."""
    enc = layer["encoding"]
    fields = [enc[k]["field"] for k in ("color", "detail") if k in enc and "field" in enc[k]]
    return fields + ([facet] if facet else [])


def _one_area_per_series(spec: dict, data: pd.DataFrame, x: str, facet: str | None = None):
    """Asserts the chart's band is one area per series: no group holds an x twice."""
    layers = spec["spec"]["layer"] if "spec" in spec else spec["layer"]
    (area,) = [ly for ly in layers if ly["mark"] == "area" or ly["mark"].get("type") == "area"]
    keys = _groups(area, facet)
    assert not data.duplicated([*keys, x]).any(), f"one band spans several series: {keys}"


def two_seed_history() -> pd.DataFrame:
    """Two seeds of a network with and without BN at two lrs (the helper above, one schedule)."""
    label = {"none": "3×4 tanh · no BN", "pre": "3×4 tanh · BN pre"}
    return history(
        {
            (label[bn], bn, lr, seed): [
                (10 if bn == "none" else 3) * seed / e * lr for e in (1, 2, 3)
            ]
            for bn in ("none", "pre")
            for seed in (1, 2)
            for lr in (0.1, 0.01)
        }
    ).assign(schedule="constant")


def test_seed_bands_are_one_area_per_series_on_every_chart():
    # BN and no BN of one network share a colour: a band grouped by colour alone would zig-zag
    # between their curves (the bug this guards against)
    h = two_seed_history()
    bands = analysis.history_band(h)
    spec = charts.loss_curves(bands).to_dict()
    _one_area_per_series(spec, bands, "epoch", facet="lr")
    m = metrics_table()
    mb = analysis.metrics_band(m)
    _one_area_per_series(charts.lr_curve(mb).to_dict(), mb, "lr")
    from ui import schedule_charts

    sb = analysis.schedule_loss(h.assign(schedule=["constant", "step"] * (len(h) // 2)))
    spec = schedule_charts.loss_chart(sb, ["constant", "step"]).to_dict()
    _one_area_per_series(spec, schedule_charts.loss_frame(sb), "epoch", facet="model")


def test_best_marker_sits_at_each_networks_lowest_seed_mean():
    bands = analysis.metrics_band(metrics_table())
    best = charts.lr_curve(bands).to_dict()
    data = {name: pd.DataFrame(rows) for name, rows in best["datasets"].items()}
    (marker,) = [ly for ly in best["layer"] if ly["mark"].get("shape") == "diamond"]
    rows = data[marker["data"]["name"]].set_index("arch")
    assert rows.loc["3×4 tanh · no BN", "best_lr"] == 1e-2  # losses 50, 10, 20: lowest at 1e-2
    assert rows.loc["3×4 tanh · BN pre", "final_loss"] == pytest.approx(20.0)


def test_the_effect_strip_spans_its_data_and_keeps_its_spec_for_other_data():
    from ui import figures

    seeds = pd.Series([0.1, -0.05, 0.3], index=[929, 930, 931])
    strip = charts.effect_strip(seeds, low=-0.2, high=0.5)
    x = strip.to_dict()["layer"][1]["encoding"]["x"]
    assert "domain" not in x["scale"] and x["scale"]["zero"]  # from the layers' data and 0
    layers = strip.to_dict()["layer"]
    interval = layers[2]["encoding"]
    assert interval["x"]["field"] == "effect" and interval["x2"]["field"] == "high"
    other = charts.effect_strip(seeds * 3, low=-0.9, high=1.2)
    a, b = figures.spec(strip), figures.spec(other)
    assert {k: v for k, v in a.items() if k != "datasets"} == {
        k: v for k, v in b.items() if k != "datasets"
    }


def _every_chart() -> list:
    """One chart of every builder of ui/*charts.py, on the tables above or tiny hand-made ones."""
    from ui import batch_charts, edge_charts, schedule_charts, why_charts

    h = two_seed_history()
    bands, mb = analysis.history_band(h), analysis.metrics_band(metrics_table())
    predicted = mb[["arch"]].drop_duplicates().assign(predicted_max_lr=0.3)
    curves = pd.DataFrame(
        {"arch": "3×4 tanh · no BN", "bn": "none", "iteration": [1, 2], "lr": [1e-3, 1e-2]}
    ).assign(smooth_loss=[5.0, 4.0], seed=1, rule="valley")
    sens = pd.DataFrame(
        {"arch": ["3×4 tanh · no BN"], "bn": ["none"], "sensitivity": [0.2]}
    ).assign(sensitivity_std=0.1, diverged_lrs=0, n_lrs=4)
    sb = analysis.schedule_loss(h.assign(schedule=["constant", "step"] * (len(h) // 2)))
    lrs = h.assign(x=h["epoch"], step=h["epoch"], curve=h["arch"])
    runs = h.assign(network=h["arch"], factor=h["lr"] * 10, step=h["epoch"])
    runs = runs.assign(sharpness=1.0, last_sharpness=1.0, outcome="lazy", start_loss=1.0)
    runs = runs.assign(peak_loss=2.0, final_loss=0.5, rose=0.1, batch_size=8, best_lr=0.1)
    runs = runs.assign(low=0.05, high=0.2, rule="lr ∝ B", diverged=0, noise_scale=30.0)
    runs = runs.assign(estimator="simple", b_noise=40.0, warmup_epochs=runs["epoch"])
    runs = runs.assign(largest_lr=0.3, wall_at_init=0.1, largest_factor=3.0)
    runs = runs.assign(first_diverged_lr=0.5, edge=3.0, effective_lr=0.1, twin_distance=0.01)
    runs = runs.assign(invariance=0.01, lyapunov=-0.1)
    return [
        charts.loss_curves(bands),
        charts.loss_curves(bands, log_y=False),
        charts.lr_curve(mb, predicted=predicted, guess=0.01),  # every layer: shade, guess, …
        charts.sensitivity_bars(sens),
        charts.run_grid(metrics_table()),
        charts.range_test_chart(curves, curves, curves.assign(best_lr=0.01)),
        charts.effect_strip(pd.Series([0.1, -0.05, 0.3]), low=-0.2, high=0.5),
        charts.effect_strip(pd.Series([0.1, 0.3]), low=-0.2, high=0.5, compact=True),  # Home's
        schedule_charts.lr_chart(lrs.assign(schedule="constant"), ["constant"]),
        schedule_charts.loss_chart(sb, ["constant", "step"]),
        batch_charts.heatmap(runs),
        batch_charts.ridge_chart(batch_charts.ridge_table(runs, runs, runs, runs)),
        batch_charts.noise_chart(runs, runs),
        edge_charts.loss_chart(runs),
        edge_charts.sharpness_chart(runs),
        edge_charts.outcome_chart(runs),
        edge_charts.warmup_chart(runs),
        edge_charts.band_chart(runs),
        why_charts.sharpness_chart(runs),
        why_charts.effective_lr_chart(runs),
        why_charts.twin_chart(runs, 0.1),
        why_charts.invariance_chart(runs),
        why_charts.lyapunov_chart(runs),
    ]


def test_chart_builders_never_call_from_dict(monkeypatch):
    # An encoding given as a shorthand string ("lr:Q"), a list holding one (tooltip=["arch:N"])
    # or a dict (alt.value, alt.condition, alt.when(...).otherwise(...)) is turned into its channel
    # by Altair with Channel.from_dict, and every from_dict builds a schema lookup of ~570
    # json.dumps (altair.utils.schemapi._FromDict): 0.2 s of a page's first display change.
    # The builders pass channel objects instead (alt.X("lr:Q"), alt.Tooltip("arch:N"),
    # alt.OpacityValue(...)), which Altair keeps as they are.
    from altair.utils import schemapi

    calls = []
    real = schemapi._FromDict.__init__

    def counting(self, *args, **kwargs):
        calls.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(schemapi._FromDict, "__init__", counting)
    specs = [chart.to_dict() for chart in _every_chart()]
    assert len(specs) == 23
    assert len(calls) == 0, "a chart builder passed Altair a shorthand string or a dict"
