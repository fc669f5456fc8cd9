"""The "Why it happens" page in AppTest: each panel draws what bnlr.why measures, the sentences
quote those numbers, and the controls reach the training."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import bnlr
from bnlr import edge, why
from ui import runner, why_jobs

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
    at = page(epochs="6", lrs="0.1,0.01", depths=["3"], wall_seeds="2")
    assert not at.exception, [e.message for e in at.exception]
    assert [h.value for h in at.header] == [
        "1 · Curvature and the stability wall",
        "2 · BatchNorm's effective learning rate",
        "3 · Chaos: twins part",
        "4 · Past the wall: gradient descent beyond 2/λ₀",
        "5 · Warmup: the schedule built on this wall",
    ]
    physics = ("sharpness", "effective_lr", "invariance", "twin_distance", "lyapunov")
    # past the wall: outcomes (the step-by-step loss and λ once opened); warmup
    assert fields(at) == [*physics, "run", "largest_lr"]
    at.session_state["steps_open"] = True
    at.run()
    assert fields(at) == [*physics, "run", "loss", "ratio", "largest_lr"]
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


def texts(at: AppTest) -> str:
    parts = [*at.markdown, *at.caption, *at.info, *at.warning, *at.success, *at.header]
    return " ".join(e.value for e in parts)


def test_past_the_wall_says_how_far_each_network_trains_from_the_runs_themselves(page):
    at = page(epochs="2", lrs="0.05", depths=["3"], wall_seeds="2")
    assert not at.exception, [e.message for e in at.exception]
    past = edge.Past(
        tuple(bnlr.ModelConfig((4, 4, 4), "tanh", b) for b in ("none", "pre")),
        (929, 930),
        steps=why_jobs.PAST_STEPS,
        every=why_jobs.PAST_EVERY,
    )
    mine = edge.report(past)  # worked out again here
    text = texts(at)
    for net, d in mine.largest.groupby("network", sort=False):
        lo, hi = d["largest_factor"].min(), d["largest_factor"].max()
        assert (f"{net}: **{lo:g}–{hi:g}×**" if lo != hi else f"{net}: **{lo:g}×**") in text
    assert f"holds in **{mine.bn.seeds_holding} of {mine.bn.seeds}** seeds" in text
    for word in ("**lazy**", "**edge of stability**", "**catapult**", "**diverged**"):
        assert word in text  # the criteria are on the page


def test_with_adam_no_sentence_states_sgds_wall(page):
    at = page(epochs="3", lrs="0.05,0.01", depths=["3"], opt="Adam")
    assert not at.exception, [e.message for e in at.exception]
    text = texts(at) + " ".join(e.value for e in at.latex)
    for sgd in ("2(1 + μ)", "2(1+\\mu)", "Minibatch SGD is not", "lr < 2/λ", "below 2/lr"):
        assert sgd not in text
    assert "38/lr" in text and "λ_max(P⁻¹H)" in text
    assert fields(at)[0] == "preconditioned_sharpness"
    report = why.run_physics(
        bnlr.Grid(depths=(3,), lrs=(0.05, 0.01), epochs=3, optimizer=bnlr.OptimizerConfig("adam"))
    )
    late = report.epochs[report.epochs["epoch"] >= 1]
    ratio = (late["preconditioned_sharpness"] / late["edge"]).groupby(late["lr"]).median()
    for lr, r in ratio.items():
        assert f"lr {lr:g}: **{r:.2f}**" in text


def reveal(at: AppTest, key: str, guess: str, name: str) -> str:
    at.radio(key=key).set_value(guess).run()
    at.button(key=f"_reveal:{name}").click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (said,) = [e.value for e in [*at.success, *at.warning, *at.info] if "Your " in e.value[:12]]
    return said


def test_past_wall_quiz_reveals_what_most_runs_did_at_one_and_a_half(page):
    at = page(epochs="2", lrs="0.05", depths=["3"], wall_seeds="2", quiz="past_wall")
    assert fields(at) == []  # nothing drawn before the reveal
    said = reveal(at, "_quiz_guess:why:past_wall", "diverge", "past_wall")
    past = edge.Past(
        tuple(bnlr.ModelConfig((4, 4, 4), "tanh", b) for b in ("none", "pre")),
        (929, 930),
        steps=why_jobs.PAST_STEPS,
        every=why_jobs.PAST_EVERY,
    )
    answer = edge.past_wall_answer(edge.report(past).runs, "diverge")
    assert answer.said in said
    assert at.success if answer.right else at.warning


def test_warmup_quiz_reveals_the_pages_verdict(page):
    at = page(epochs="2", lrs="0.05", depths=["3"], wall_seeds="2", quiz="warmup")
    said = reveal(at, "_quiz_guess:why:warmup", "yes", "warmup")
    table = edge.warmup_table(bnlr.train(edge.warmup_grid(bnlr.Grid())))  # trained again
    answer = edge.warmup_answer(edge.warmup_verdict(table), "yes")
    assert answer.said in said and "Your answer: **yes**" in said


def test_with_adam_the_past_wall_quiz_says_how_to_get_its_answer(page):
    at = page(epochs="2", lrs="0.05", depths=["3"], opt="Adam", quiz="past_wall")
    at.radio(key="_quiz_guess:why:past_wall").set_value("diverge").run()
    at.button(key="_reveal:past_wall").click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (note,) = [e.value for e in at.info if "This question" in e.value]
    assert "choose the optimizer SGD" in note
    plain = page(epochs="2", lrs="0.05", depths=["3"], opt="Adam")
    assert not [e.value for e in plain.info if "This question" in e.value]


def test_a_first_look_is_drawn_while_the_rest_is_measured(page):
    exp = bnlr.Grid(depths=(3,), lrs=(0.05,), epochs=12).experiment
    drawn = []
    report = why_jobs.physics(exp, drawn.append)
    (coarse,) = drawn  # a preview, then the whole report
    shown = coarse.epochs.dropna(subset=["sharpness"])["epoch"].unique()
    assert tuple(shown) == why.preview_epochs(12) and len(shown) == 9
    whole = why.run_physics(exp)
    np.testing.assert_allclose(report.epochs["sharpness"], whole.epochs["sharpness"], rtol=1e-12)
    assert why_jobs.physics(exp, drawn.append) is report  # cached: no preview again
    assert len(drawn) == 1
    assert runner.peek(("physics_preview", exp)) is None  # the preview is not kept beside it
    # on the page, the first look gives way to the whole chart: one sharpness chart, every epoch
    at = page(epochs="12", lrs="0.05", depths=["3"])
    assert not at.exception, [e.message for e in at.exception]
    assert fields(at).count("sharpness") == 1
    assert not any("A first look" in c.value for c in at.caption)
