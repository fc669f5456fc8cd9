"""The "Why it happens" page in AppTest: each panel draws what bnlr.why measures, the sentences
quote those numbers, and the controls reach the training."""

import json
import re
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import bnlr
from bnlr import why
from ui import runner

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "why.py")


@pytest.fixture
def page():
    st.cache_data.clear()
    runner.clear_cache()

    def run(**params) -> AppTest:
        at = AppTest.from_file(PAGE, default_timeout=300)
        for key, value in params.items():
            at.query_params[key] = value
        return at.run()

    yield run
    st.cache_data.clear()
    runner.clear_cache()


def fields(at: AppTest) -> list[str]:
    """The y field of each chart (layer or facet) on the page."""
    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        layers = spec.get("spec", spec).get("layer", [spec.get("spec", spec)])
        out.append(
            next(
                ly["encoding"]["y"].get("field", "")
                for ly in layers
                if "y" in ly.get("encoding", {})
                and "field" in ly["encoding"]["y"]
                and ly["mark"] != "rule"
                and ly["mark"].get("type") != "rule"
            )
        )
    return out


def test_each_panel_draws_its_measurement_and_quotes_the_numbers(page):
    at = page(epochs="6", lrs="0.1,0.01", depths=["3"])
    assert not at.exception, [e.message for e in at.exception]
    assert [h.value for h in at.header] == [
        "1 · Curvature and the stability wall",
        "2 · BatchNorm's effective learning rate",
        "3 · Chaos: twins part",
    ]
    assert fields(at) == ["sharpness", "effective_lr", "invariance", "twin_distance", "lyapunov"]
    assert len(at.latex) == 3
    # the sentences quote the report of the very same runs, worked out here
    report = why.run_physics(bnlr.Grid(depths=(3,), lrs=(0.1, 0.01), epochs=6))
    late = report.epochs[report.epochs["epoch"] >= 3]
    ratio = (late["sharpness"] / late["edge"]).groupby(late["lr"]).median()
    text = " ".join(m.value for m in at.markdown)
    for lr, r in ratio.items():
        assert f"lr {lr:g}: **{r:.2f}**" in text
    counts = report.runs.groupby("lr")["parted"].sum()
    for lr, c in counts.items():
        assert re.search(rf"lr {lr:g}: {int(c)} of 2", text)


def test_without_bn_pre_the_effective_lr_panel_says_what_to_add(page):
    at = page(epochs="3", lrs="0.05", depths=["3"], bn=["no BN"])
    assert not at.exception
    assert "effective_lr" not in fields(at)
    assert any("BN placement *pre*" in i.value for i in at.info)


def test_weight_decay_reaches_the_optimizer(page, monkeypatch):
    seen = []
    real = why.run_physics
    monkeypatch.setattr(why, "run_physics", lambda exp, **kw: seen.append(exp) or real(exp, **kw))
    at = page(epochs="2", lrs="0.05", depths=["3"], wd="0.01")
    assert not at.exception
    (exp,) = seen
    assert {r.optimizer.resolved_weight_decay for r in exp.runs} == {0.01}
