"""The LR curve page's band past the wall (2/λ₀ → how far full-batch gradient descent trains),
its sentence worked out again from bnlr.edge, and no SGD wall stated for Adam."""

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import bnlr
from bnlr import edge
from ui import runner, why_jobs

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "lr_curve.py")
SMALL = {"epochs": "3", "depths": ["3"], "seeds": "2", "lr_n": "5"}


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


def y_fields(at: AppTest) -> list[str]:
    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        for layer in spec.get("layer", [spec]):
            field = layer.get("encoding", {}).get("y", {}).get("field")
            if field:
                out.append(field)
                break
    return out


def test_lr_curve_draws_how_far_gradient_descent_trains_past_the_wall(page):
    at = page(**SMALL)
    assert not at.exception, [e.message for e in at.exception]
    assert "network" in y_fields(at)  # the band chart: one row per network
    models = tuple(bnlr.ModelConfig((4, 4, 4), "tanh", b) for b in ("none", "pre"))
    past = edge.Past(models, (929, 930), steps=why_jobs.PAST_STEPS, every=0)
    band = edge.band(edge.report(past).largest)  # worked out again here
    text = " ".join(m.value for m in at.markdown)
    assert f"**{band['largest_factor'].median():.2g} × 2/λ₀**" in text
    assert f"lr ≈ **{band['largest_lr'].median():.2g}**" in text
    assert "the gap is the lesson" not in text
    np.testing.assert_array_less(band["wall_at_init"], band["largest_lr"])


def test_lr_curve_with_adam_states_no_sgd_wall(page):
    at = page(**SMALL, opt="Adam")
    assert not at.exception, [e.message for e in at.exception]
    text = " ".join(m.value for m in [*at.markdown, *at.caption])
    assert "predicts instability above" not in text
    assert "SGD's wall" in text and "network" not in y_fields(at)
