"""What a page draws from a result, computed once per (result, display) and shared by every
session: the analysis tables and the charts' Vega-Lite specs.

A display control (train / test, the band, the log axis) reruns the page, and a class opening
one link reruns it per visitor; with the result cached, what is left to do is the analysis and
the chart specs (``alt.Chart.to_dict`` and the data's Arrow encoding, most of a rerun). Here
they are kept, keyed by the result object and the display, in a cache bounded in entries and
bytes; a page draws a kept spec with ``draw`` (what ``st.altair_chart`` would send, without
building it again).

A page whose figures depend on the display controls asks through ``for_display``: once it has
its own, the displays one click away (the other split, band, or log axis) are computed in a
background thread while nothing trains, so that a first click also answers at once. The server
turns that on (``PREFETCH.enabled``); tests and benches compute only what they ask for.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from contextlib import nullcontext
from typing import TypeVar

import altair as alt
import pandas as pd
import streamlit as st
from pandas.api.types import is_integer_dtype, is_string_dtype
from streamlit.dataframe_util import (
    convert_anything_to_arrow_bytes,
    convert_pandas_df_to_arrow_table,
)
from streamlit.elements import vega_charts
from streamlit.util import calc_hash

from ui import theme
from ui.admission import ADMISSION
from ui.cache import MISSING, ResultCache

T = TypeVar("T")
CACHE = ResultCache(entries=96, max_bytes=48 * 2**20)


def shared(name: str, result: object, display: Hashable, compute: Callable[[], T]) -> T:
    """Returns ``compute()`` for this page's ``name``, ``result`` and ``display``: computed by
    the first session that asks, then the same object for every session (treat it as frozen).
    Sessions that ask while it is being computed wait for it (a class opening one link at once
    computes it once, not thirty times).

    ``result`` is the runner's cached result (the same object for every session asking for the
    same settings); it is held weakly, and a result dropped from the runner's cache takes its
    figures with it.
    """
    key = (name, id(result), display)
    while True:
        hit = CACHE.get(key)
        if hit is not MISSING and hit[0]() is result:
            return hit[1]
        with _flights_lock:
            flight = _flights.get(key)
            mine = flight is None
            if mine:
                flight = _flights[key] = threading.Event()
        if not mine:
            with ADMISSION.aside():
                flight.wait()
            continue  # computed by another session (or it failed there: compute it here)
        try:
            value = compute()
            # (the cache bound now: at interpreter exit a late callback finds module globals gone)
            forget = lambda _, key=key, cache=CACHE: cache.drop(key)  # noqa: E731
            CACHE.put(key, (weakref.ref(result, forget), value))
            return value
        finally:
            with _flights_lock:
                _flights.pop(key, None)
            flight.set()


_flights: dict = {}  # key → the Event its first asker sets when done
_flights_lock = threading.Lock()


def spec(chart: alt.TopLevelMixin) -> dict:
    """Returns the Vega-Lite spec ``st.altair_chart`` would send for ``chart``, its data as
    named Arrow datasets: Streamlit's own conversion (its data transformer, under its lock),
    done once instead of on every rerun, and without Altair's JSON-schema validation, which
    was most of the conversion's time (the chart builders' specs are validated in
    tests/test_charts.py instead).

    The data is sent lean (``lean``): only the columns the spec names, and text columns
    dictionary-encoded: what a school laptop's browser has to decode and draw (the bytes each
    page sends: docs/performance.md)."""
    frames: dict = {}
    alt.data_transformers.register("bnlr_frames", _keep_frame)
    with vega_charts._altair_globals_lock:
        theme_context = alt.theme.enable("none") if alt.theme.active == "default" else nullcontext()
        with theme_context, alt.data_transformers.enable("bnlr_frames", frames=frames, seen={}):
            out = chart.to_dict(validate=False)
    named = json.dumps(out, default=repr)  # every name the spec uses, data aside
    datasets = {
        name: convert_anything_to_arrow_bytes(lean(data, named))
        if isinstance(data, pd.DataFrame)
        else data  # already Streamlit's (``_keep_frame``'s fallbacks)
        for name, data in frames.items()
    }
    out["datasets"] = {**out.get("datasets", {}), **datasets}
    return out


def _keep_frame(data, frames: dict, seen: dict) -> dict:
    """Altair data transformer: keeps each table for ``spec`` to encode once the whole spec is
    known, under a name given by its place among the chart's tables (``bnlr_0``, ``bnlr_1``,
    …; the same content once). Stable names let a display change that alters only the data
    leave the spec as it was: the browser then swaps the data into the chart it has drawn
    (Streamlit's ``updateView``) instead of building the chart again."""
    if not isinstance(data, pd.DataFrame):  # GeoJSON and the like: Streamlit's own way
        return vega_charts._to_arrow_dataset(data, frames)
    try:
        content = pd.util.hash_pandas_object(data).to_numpy().tobytes()
    except TypeError:  # unhashable cells (lists): sent whole, Streamlit's own way
        return vega_charts._to_arrow_dataset(data, frames)
    name = seen.setdefault(calc_hash(content + str(list(data)).encode()), f"bnlr_{len(seen)}")
    frames[name] = data
    return {"name": name}


def lean(df: pd.DataFrame, named: str) -> pd.DataFrame:
    """``df`` with only the columns whose names occur in ``named`` (the spec's text: encodings,
    tooltips, transforms, expressions), text columns as categories (Arrow dictionaries: each
    label sent once, not once per row), integers in the fewest bytes that hold them. The values
    the chart reads are unchanged."""
    out = df[[c for c in df.columns if _names(named, str(c))]]
    kinds = {}
    for c in out.columns:
        if is_string_dtype(out[c]) or out[c].dtype == object:
            kinds[c] = "category"
        elif is_integer_dtype(out[c]) and len(out):
            kinds[c] = pd.to_numeric(out[c], downcast="integer").dtype
    return out.astype(kinds) if kinds else out


def _names(spec_text: str, column: str) -> bool:
    """Whether the spec's JSON text names ``column``: as a string of its own (a field, a
    groupby, a fold), or as ``datum.column`` / ``datum['column']`` in an expression."""
    quoted = json.dumps(column)
    return (
        quoted in spec_text
        or re.search(rf"datum\.{re.escape(column)}\b", spec_text) is not None
        or f"datum[{quoted}]" in spec_text
        or f"datum[{json.dumps(quoted)[1:-1]}]" in spec_text
        or f"datum['{column}']" in spec_text
    )


def dataframe(df: pd.DataFrame, shape: Callable | None = None, where=st, **kwargs):
    """``st.dataframe(shape(df))`` (or of ``df``), with the Arrow table Streamlit would make of
    it kept for as long as ``df`` lives (``per``): a result's tables are converted once, not on
    every rerun by every visitor (Streamlit sends an Arrow table as it is). ``shape`` (renaming,
    dropping columns) must read ``df`` only."""
    table = per(df, shape or _same, lambda d: convert_pandas_df_to_arrow_table((shape or _same)(d)))
    return where.dataframe(table, **kwargs)


def _same(df):
    return df


def per(obj: object, fn: Callable, compute: Callable | None = None):
    """Returns ``(compute or fn)(obj)``: ``shared`` with ``obj`` as the result, for what a page
    derives from a cached result's tables on every rerun. The key is ``fn``'s code (a lambda in a
    page's script has the same code on every rerun: Streamlit compiles a script once), so what
    is computed must depend on ``obj`` alone."""
    return shared(("per", fn.__code__), obj, (), lambda: (compute or fn)(obj))


def draw(spec: dict, where=st, stretch: bool = False, **kwargs):
    """Draws a kept spec (``spec``) as ``st.altair_chart`` would draw its chart; ``stretch``:
    as wide as its container (a spec made from ``classroom.stretched``)."""
    own = copy.deepcopy({k: v for k, v in spec.items() if k != "datasets"})
    own["datasets"] = dict(spec.get("datasets", {}))  # (Streamlit moves them out of the spec)
    if stretch:
        kwargs["width"] = "stretch"
    return where.vega_lite_chart(spec=own, **kwargs)


def chart(
    name: str, result: object, display: Hashable, build: Callable, where=st, stretch: bool = False
) -> None:
    """Draws the Altair chart ``build()`` returns, built once per (name, result, display, the
    session's presentation mode) and shared by every session (``stretch``: see ``draw``)."""
    key = (display, theme.presenting())
    draw(shared(name, result, key, lambda: spec(build())), where, stretch)


# the display controls a click flips, and their other values (ui.controls.display)
FLIPS = {"split": ("train", "test"), "log_y": (True, False), "band": ("spread", "minmax")}


def for_display(name: str, result: object, show: dict, compute: Callable[[dict], T]) -> T:
    """Returns ``compute(show)`` (shared, as ``shared``), and queues the displays one click
    away for ``PREFETCH``. ``compute`` must read the display from its argument only."""
    presenting = theme.presenting()

    def key(s: dict) -> tuple:
        return (*sorted(s.items()), presenting)

    value = shared(name, result, key(show), lambda: compute(show))
    if PREFETCH.enabled:
        for field, values in FLIPS.items():
            if field in show and show[field] in values:
                other = {**show, field: next(v for v in values if v != show[field])}
                PREFETCH.submit(name, result, key(other), lambda o=other: compute(o), presenting)
    return value


class Prefetch:
    """One background thread that computes queued figures while no training runs or waits (so
    it never competes with a visitor's page for long: each task is one page's analysis)."""

    def __init__(self, busy: Callable[[], bool] = lambda: False, quiet_s: float = 0.3):
        self.enabled, self.busy, self.quiet_s = False, busy, quiet_s
        self._tasks: queue.Queue = queue.Queue(maxsize=64)
        self._thread: threading.Thread | None = None

    def submit(self, name, result, key, compute: Callable, presenting: bool) -> None:
        hit = CACHE.get((name, id(result), key))
        if hit is not MISSING and hit[0]() is result:
            return
        with contextlib.suppress(queue.Full):  # too much at once: those are computed on click
            self._tasks.put_nowait((name, result, key, compute, presenting))
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="bnlr-prefetch", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # Linux: this thread only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            name, result, key, compute, presenting = self._tasks.get()
            time.sleep(self.quiet_s)  # let the page that asked finish drawing first
            while self.busy():
                time.sleep(self.quiet_s)
            with contextlib.suppress(Exception), theme.presenting_as(presenting):
                shared(name, result, key, compute)  # (a failure is met again on click)


PREFETCH = Prefetch()


def clear() -> None:
    """Empties the cache (tests and benches)."""
    CACHE.clear()
