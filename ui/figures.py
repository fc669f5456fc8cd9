"""What a page draws from a result, computed once per (result, display) and shared by every
session: the analysis tables and the charts' Vega-Lite specs.

A display control (train / test, the band, the log axis) reruns the page, and a class opening
one link reruns it per visitor; with the result cached, what is left to do is the analysis and
the chart specs (``alt.Chart.to_dict`` and the data's Arrow encoding, most of a rerun). Here
they are kept, keyed by the result object and the display, in a cache bounded in entries and
bytes; a page draws a kept spec with ``draw`` (what ``st.altair_chart`` would send, without
building it again).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

import altair as alt
import streamlit as st
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec

from ui import theme
from ui.cache import MISSING, ResultCache

T = TypeVar("T")
CACHE = ResultCache(entries=96, max_bytes=48 * 2**20)


def shared(name: str, result: object, display: Hashable, compute: Callable[[], T]) -> T:
    """Returns ``compute()`` for this page's ``name``, ``result`` and ``display``: computed by
    the first session that asks, then the same object for every session (treat it as frozen).

    ``result`` is the runner's cached result (the same object for every session asking for the
    same settings); it is held weakly, so a result dropped from the runner's cache frees this
    entry's key too.
    """
    key = (name, id(result), display)
    hit = CACHE.get(key)
    if hit is not MISSING and hit[0]() is result:
        return hit[1]
    value = compute()
    CACHE.put(key, (weakref.ref(result), value))
    return value


def spec(chart: alt.TopLevelMixin) -> dict:
    """Returns the Vega-Lite spec ``st.altair_chart`` would send for ``chart``, its data as
    named Arrow datasets (Streamlit's own conversion, done once instead of on every rerun)."""
    return _convert_altair_to_vega_lite_spec(chart)


def draw(spec: dict, where=st, stretch: bool = False, **kwargs):
    """Draws a kept spec (``spec``) as ``st.altair_chart`` would draw its chart; ``stretch``:
    as wide as its container (a spec made from ``classroom.stretched``)."""
    own = copy.deepcopy({k: v for k, v in spec.items() if k != "datasets"})
    own["datasets"] = dict(spec.get("datasets", {}))  # (Streamlit moves them out of the spec)
    if stretch:
        kwargs["width"] = "stretch"
    return where.vega_lite_chart(spec=own, **kwargs)


def chart(name: str, result: object, display: Hashable, build: Callable, where=st) -> None:
    """Draws the Altair chart ``build()`` returns, built once per (name, result, display, the
    session's presentation mode) and shared by every session."""
    key = (display, theme.presenting())
    draw(shared(name, result, key, lambda: spec(build())), where)


def clear() -> None:
    """Empties the cache (tests and benches)."""
    CACHE.clear()
