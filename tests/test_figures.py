"""ui.figures: the spec it keeps is the one st.altair_chart would send, and what it shares is
computed once per (result, display)."""

import json
import time

import altair as alt
import pandas as pd
import pyarrow as pa
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec

from ui import figures


def _text(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, default=repr)


def _tables(spec: dict) -> list[pd.DataFrame]:
    return [pa.ipc.open_stream(data).read_all().to_pandas() for data in spec["datasets"].values()]


def _without_data(spec: dict) -> str:
    """The spec's text with its datasets' names replaced by their order (Streamlit names them by
    a hash of the bytes sent, ``figures.spec`` by their order in the chart)."""
    text = _text({k: v for k, v in spec.items() if k != "datasets"})
    for k, name in enumerate(spec["datasets"]):
        text = text.replace(name, f"dataset{k}")
    return text


def test_a_kept_spec_is_what_streamlit_sends_for_the_chart_with_leaner_data():
    df = pd.DataFrame({"epoch": [1, 2, 3] * 2, "loss": [3.0, 2.0, 1.5, 4.0, 1.0, 0.5]})
    df["net"] = ["a"] * 3 + ["b"] * 3
    df["note"] = "a column no part of the chart names"
    pick = alt.selection_point(fields=["net"], bind="legend")
    chart = (
        alt.Chart(df)
        .mark_line()
        .encode(x="epoch:Q", y=alt.Y("loss:Q").scale(type="log"), color="net:N")
        .add_params(pick)
        .facet(column="net:N")
    )
    ours, theirs = figures.spec(chart), _convert_altair_to_vega_lite_spec(chart)
    assert _without_data(ours) == _without_data(theirs)
    assert ours["datasets"] and all(isinstance(v, bytes) for v in ours["datasets"].values())
    (sent,), (streamlits,) = _tables(ours), _tables(theirs)
    assert list(sent.columns) == ["epoch", "loss", "net"]  # "note" is not sent
    assert isinstance(sent["net"].dtype, pd.CategoricalDtype)  # each label once
    pd.testing.assert_frame_equal(
        sent.astype({"net": str, "epoch": "int64"}),
        streamlits[["epoch", "loss", "net"]].astype({"net": str}),
    )
    assert sum(map(len, ours["datasets"].values())) < sum(map(len, theirs["datasets"].values()))


def test_the_same_chart_of_other_data_is_the_same_spec_with_other_datasets():
    # what a display change (train → test) does: the browser then swaps the data in place
    def build(df: pd.DataFrame, edge: pd.DataFrame) -> alt.LayerChart:
        line = alt.Chart(df).mark_line().encode(x="epoch:Q", y="loss:Q", color="net:N")
        rule = alt.Chart(edge).mark_rule(strokeDash=[4, 4]).encode(y="edge:Q")
        return line + line.mark_point() + rule

    df = pd.DataFrame({"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "net": ["a"] * 3})
    train = figures.spec(build(df, pd.DataFrame({"edge": [2.0]})))
    test = figures.spec(build(df.assign(loss=df["loss"] * 2), pd.DataFrame({"edge": [2.5]})))
    strip = lambda spec: _text({k: v for k, v in spec.items() if k != "datasets"})  # noqa: E731
    assert strip(train) == strip(test)
    assert list(train["datasets"]) == list(test["datasets"])  # two: the line's table once
    assert len(train["datasets"]) == 2
    for a, b in zip(_tables(train), _tables(test)):
        assert not a.equals(b)
    assert _tables(test)[0]["loss"].tolist() == [6.0, 4.0, 3.0]


def test_lean_keeps_every_column_an_expression_or_tooltip_reads():
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25], "c": ["x", "y"], "d": [1, 1]})
    chart = (
        alt.Chart(df)
        .mark_point()
        .transform_calculate(z="datum.b * 2")
        .encode(x="a:Q", y="z:Q", tooltip=["c:N"])
    )
    (sent,) = _tables(figures.spec(chart))
    assert list(sent.columns) == ["a", "b", "c"]
    assert sent["a"].tolist() == [1, 2] and sent["b"].tolist() == [0.5, 0.25]


def test_shared_computes_once_per_result_and_display():
    class Result:  # stands for a cached bnlr.Result (any object that can be weakly referenced)
        pass

    figures.clear()
    first, second, calls = Result(), Result(), []

    def compute(tag):
        calls.append(tag)
        return tag

    assert figures.shared("page", first, ("train",), lambda: compute(1)) == 1
    assert figures.shared("page", first, ("train",), lambda: compute(2)) == 1  # shared
    assert figures.shared("page", first, ("test",), lambda: compute(3)) == 3  # another display
    assert figures.shared("page", second, ("train",), lambda: compute(4)) == 4  # another result
    assert calls == [1, 3, 4]
    figures.clear()


def test_the_displays_one_click_away_are_computed_in_the_background(monkeypatch):
    class Result:
        pass

    figures.clear()
    monkeypatch.setattr(figures.PREFETCH, "enabled", True)
    monkeypatch.setattr(figures.PREFETCH, "quiet_s", 0.0)
    result, seen = Result(), []

    def compute(show):
        seen.append(dict(show))
        return show["split"], show["log_y"]

    show = {"split": "train", "log_y": True, "band": "spread"}
    assert figures.for_display("page", result, show, compute) == ("train", True)
    for _ in range(500):  # bounded wait for the background thread
        if len(seen) == 4:
            break
        time.sleep(0.01)
    assert {(s["split"], s["log_y"], s["band"]) for s in seen[1:]} == {
        ("test", True, "spread"),
        ("train", False, "spread"),
        ("train", True, "minmax"),
    }
    test = {**show, "split": "test"}
    assert figures.for_display("page", result, test, compute) == ("test", True)
    assert seen.count(test) == 1  # the click found it computed: once, in the background
    figures.clear()


def test_sessions_asking_at_once_compute_once():
    import threading

    class Result:
        pass

    figures.clear()
    result, calls, go = Result(), [], threading.Event()

    def compute():
        calls.append(1)
        go.wait(5)
        return "figures"

    got = []
    sessions = [
        threading.Thread(target=lambda: got.append(figures.shared("p", result, (), compute)))
        for _ in range(8)
    ]
    for t in sessions:
        t.start()
    time.sleep(0.1)  # all eight are asking now
    go.set()
    for t in sessions:
        t.join(10)
    assert got == ["figures"] * 8 and calls == [1]
    figures.clear()


def test_per_computes_once_while_its_object_lives():
    figures.clear()
    df, calls = pd.DataFrame({"a": [1, 2]}), []

    def total(d):
        calls.append(1)
        return int(d["a"].sum())

    assert figures.per(df, total) == 3 and figures.per(df, total) == 3
    assert len(calls) == 1
    other = pd.DataFrame({"a": [5]})
    assert figures.per(other, total) == 5 and len(calls) == 2  # another object
    assert len(figures.CACHE) == 2
    del df, other
    assert len(figures.CACHE) == 0  # forgotten with their objects


def test_a_kept_table_is_the_one_streamlit_makes_of_the_shaped_frame():
    from streamlit.dataframe_util import convert_pandas_df_to_arrow_bytes

    class Where:  # stands for st: receives what st.dataframe would
        def dataframe(self, data, **kwargs):
            return data, kwargs

    df = pd.DataFrame({"arch": ["3×4 tanh", "3×4 tanh · BN pre"], "lr": [0.1, 0.3], "n": [1, 2]})

    def drop_n(d):
        return d.drop(columns=["n"]).rename(columns={"lr": "best lr"})

    table, kwargs = figures.dataframe(df, drop_n, Where(), hide_index=True)
    sent = pa.ipc.open_stream(convert_pandas_df_to_arrow_bytes(drop_n(df))).read_all()
    assert table.equals(sent) and kwargs == {"hide_index": True}
    assert figures.dataframe(df, drop_n, Where())[0] is table  # kept
    assert figures.dataframe(df, None, Where())[0].column_names == ["arch", "lr", "n"]


def test_a_results_figures_go_with_it():
    class Result:
        pass

    figures.clear()
    result = Result()
    figures.shared("page", result, ("train",), lambda: "spec")
    assert len(figures.CACHE) == 1
    del result  # dropped from the runner's cache, no page holds it
    assert len(figures.CACHE) == 0


def test_a_table_with_unhashable_cells_is_sent_whole():
    df = pd.DataFrame({"x": [1, 2], "y": [3.0, 4.0], "tags": [["a"], ["b", "c"]]})
    spec = figures.spec(alt.Chart(df).mark_point().encode(x="x:Q", y="y:Q"))
    (sent,) = _tables(spec)
    assert sent["x"].tolist() == [1, 2] and sent["y"].tolist() == [3.0, 4.0]
