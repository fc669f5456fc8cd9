"""AppTest of the classroom: each quiz draws no chart before the reveal, marks the guess after it
and reveals the right answer (worked out here from the runs themselves); hide flags; bad quiz and
hide values get one notice while the page works; the link for the class."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
from apptest import charts, page
from streamlit.testing.v1 import AppTest

import bnlr

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300
SMALL = {"epochs": "3", "depths": ["3"], "seeds": "2"}  # a few seconds of training per page


def revealed(at: AppTest) -> str:
    """The reveal's text (a success when the guess counts as right, else a warning or info)."""
    (text,) = [e.value for e in [*at.success, *at.warning, *at.info] if "Your " in e.value[:12]]
    return text


def reveal(at: AppTest, name: str) -> AppTest:
    at.button(key=f"_reveal:{name}").click()
    return at.run()


def finals(experiment) -> "pd.DataFrame":  # noqa: F821
    """Last-epoch train loss per run, trained again here (bnlr.train is deterministic)."""
    h = bnlr.train(experiment).history
    return h[(h.split == "train") & (h.epoch == h.epoch.max())]


def test_best_lr_quiz_hides_the_u_until_the_reveal_then_marks_the_guess(trainings):
    at = page("lr_curve.py", quiz="best_lr", lr_n="5", **SMALL)
    assert not at.exception and charts(at) == []  # no chart gives the answer away
    assert any("lowest final loss" in m.value for m in at.markdown)
    slider = at.select_slider(key="_quiz_guess:lr_curve:best_lr")
    lrs = sorted({r.lr for r in trainings[0].runs})
    assert list(map(float, slider.options)) == pytest.approx(lrs)
    guess = lrs[0]
    slider.set_value(guess).run()
    at = reveal(at, "best_lr")
    assert not at.exception and len(charts(at)) >= 2
    layers = charts(at)[0]["layer"]
    marks = [ly["mark"]["type"] for ly in layers if ly["encoding"]["x"].get("field") == "guess"]
    assert marks == ["rule", "text"]  # the guess: a dashed rule, labelled
    u = at.get("vega_lite_chart")[0].proto
    assert any(guess == pytest.approx(v) for v in _dataset_values(u, "guess"))
    # by hand: per network, the lr of the lowest geometric-mean (over seeds) final loss
    f = finals(trainings[0]).assign(log=lambda d: np.log10(d.loss))
    best = f.groupby(["arch", "lr"])["log"].mean().groupby("arch").idxmin().map(lambda k: k[1])
    text = revealed(at)
    for arch, lr in best.items():
        off = abs(math.log10(guess) - math.log10(lr))
        assert f"lr **{lr:.2g}**" in text
        assert arch in text or best.nunique() == 1  # networks named when they disagree
        assert f"{off:.2f} decades" in text or (off == 0 and "right on" in text)


def _dataset_values(proto, field: str) -> list:
    import pyarrow as pa

    out = []
    for ds in proto.datasets:
        df = pa.ipc.open_stream(ds.data.data).read_pandas()
        if field in df:
            out += list(df[field])
    return out


def test_diverge_quiz_names_the_smallest_lr_that_diverged(trainings):
    at = page("lr_curve.py", quiz="diverge", lr_lo="0.01", lr_hi="10", lr_n="4", **SMALL)
    assert charts(at) == []
    f = finals(trainings[0])
    first = f.loc[~np.isfinite(f.loss), "lr"].min()  # by hand: the first lr with a blown-up loss
    assert np.isfinite(first), "these settings should diverge at lr 10"
    guess = 0.01
    at.select_slider(key="_quiz_guess:lr_curve:diverge").set_value(guess).run()
    at = reveal(at, "diverge")
    text = revealed(at)
    assert f"diverges at lr **{first:.2g}**" in text
    assert f"{abs(math.log10(first) - math.log10(guess)):.2f} decades" in text
    assert not at.success  # the guess was wrong: not shown as right


def test_bn_more_quiz_reveals_the_pages_own_verdict_over_seeds(trainings):
    at = page("lr_sensitivity.py", quiz="bn_more", lrs="0.1,0.01", **SMALL | {"depths": ["3"]})
    assert charts(at) == []
    assert at.button(key="_reveal:bn_more").disabled  # nothing picked yet
    at.radio(key="_quiz_guess:lr_sensitivity:bn_more").set_value("yes").run()
    at = reveal(at, "bn_more")
    assert not at.exception and len(charts(at)) >= 1
    (replicated,) = [m.value for m in at.markdown if m.value.startswith("**Replicated over")]
    low, high = (float(v) for v in re.search(r"\[(\S+), (\S+)\]", replicated).groups())
    expected = "yes" if low > 0 else "no" if high < 0 else "no consistent difference"
    text = revealed(at)
    assert f"is **{expected}**" in text
    assert bool(at.success) == (expected == "yes")


def test_best_schedule_quiz_names_the_lowest_final_loss(trainings):
    at = AppTest.from_file(
        str(ROOT / "app_pages" / "scheduler_playground.py"), default_timeout=TIMEOUT
    )
    at.query_params["quiz"] = "best_schedule"
    for key, value in {"epochs": 3, "depths": [3], "seeds": 3}.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception and charts(at) == []
    f = finals(trainings[0]).assign(log=lambda d: np.log10(d.loss))
    winner = f.groupby("schedule")["log"].mean().idxmin()  # by hand
    guess = "constant" if winner != "constant" else f["schedule"].iloc[-1]
    at.radio(key="_quiz_guess:schedules:best_schedule").set_value(guess).run()
    at = reveal(at, "best_schedule")
    text = revealed(at)
    assert f"The lowest final loss is `{winner}`" in text
    assert len(charts(at)) >= 2
    # honest about the seeds: either consistently lower than all, or it says which are not
    assert "consistently over seeds" in text or "Not consistent over seeds" in text


def test_hide_flags_hide_those_controls_and_keep_their_values(trainings):
    at = page("lr_curve.py", hide="epochs,seeds,bogus", lr_n="4", **SMALL)
    assert not at.exception and len(charts(at)) >= 2
    css = " ".join(h.proto.body for h in at.get("html"))
    assert ".st-key-epochs" in css and ".st-key-seeds" in css and "display: none" in css
    assert at.number_input(key="epochs").value == 3  # hidden, still the link's value
    notices = [w.value for w in at.warning if "`hide`" in w.value]
    assert len(notices) == 1 and "bogus is not accepted" in notices[0]
    assert "epochs" in notices[0].split("accepted:")[1]  # it lists what would be accepted


def test_a_quiz_of_another_page_gets_one_notice_and_the_page_works(trainings):
    at = page("lr_curve.py", quiz="bn_more", lr_n="4", **SMALL)
    assert not at.exception and len(charts(at)) >= 2  # no question: the charts as usual
    notices = [w.value for w in at.warning if "`quiz`" in w.value]
    assert len(notices) == 1
    assert "bn_more is not accepted" in notices[0] and "best_lr, diverge" in notices[0]


def test_the_link_for_my_class_holds_the_settings_and_the_class_choices(trainings):
    at = page("lr_curve.py", lr_n="4", **SMALL)
    at.selectbox(key="_class_quiz").set_value("best_lr")
    at.multiselect(key="_class_hide").set_value(["seeds", "num_it"]).run()
    (link,) = [c.value for c in at.code if "present=true" in c.value]
    assert "epochs=3" in link and "lr_n=4" in link  # the page's settings
    assert "quiz=best_lr" in link and "hide=seeds,num_it" in link
