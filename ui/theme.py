"""Chart and page looks: a readable Altair theme, and a presentation mode for a projector.

One Altair theme, ``bnlr``, is registered and enabled once per process. Altair themes are
process-global while Streamlit serves every session from threads of one process, so the theme
does not switch globally: its function asks the *current* session whether it presents, at the
moment Streamlit turns a chart into Vega-Lite (``chart.to_dict()`` runs in the session's script
thread). Chart builders need no change: the theme only fills what a chart leaves unset.

Colours are left to Streamlit's chart theme, which follows light and dark (its default category
palette is Okabe & Ito's, set in .streamlit/config.toml); this theme
sets fonts, sizes and strokes (https://altair-viz.github.io/user_guide/customization.html).
"""

from __future__ import annotations

import contextlib
import threading

import altair as alt
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

PRESENT_KEY = "present"  # session-state key and URL parameter of the presentation toggle
FONT = '"Source Sans", "Source Sans Pro", "Segoe UI", Roboto, Helvetica, Arial, sans-serif'

# (normal, presentation): font sizes in px, stroke widths in px, point areas in px².
SIZES = {
    "label": (13, 20),  # axis tick labels, legend labels, facet headers
    "title": (14, 22),  # axis and legend titles
    "chart_title": (16, 26),
    "line": (2.0, 4.0),
    "rule": (1.0, 2.5),
    "point": (30, 110),
    "legend_symbol": (120, 420),
    "label_limit": (220, 360),  # px before a label is cut with "…" (Vega's default is 180)
}

# Projector CSS: scaling the root font size scales all of Streamlit's rem-based text and widgets;
# the main area's padding (rem too) shrinks so that the first screen holds the main chart, and the
# title is smaller (at 20 px a 2.75rem title and 6rem of padding took a third of 720 px).
PRESENT_CSS = """<style>
html { font-size: 20px; }
[data-testid="stMainBlockContainer"] {
  padding-left: 1.5rem; padding-right: 1.5rem; padding-top: 3.25rem; padding-bottom: 3rem;
}
h1 { font-size: 1.9rem !important; padding-top: 0.25rem !important; padding-bottom: 0.5rem; }
h2 { font-size: 1.5rem !important; }
h3 { font-size: 1.3rem !important; }
.stMarkdown p, .stMarkdown li, .stCaption p { line-height: 1.5; }
</style>"""
# Width of a row of chart panels (y axis included) in presentation mode: a 1280-px projector with
# the sidebar collapsed leaves ~1220 px to the main area; a little is kept for the scrollbar.
PRESENT_ROW_PX = 1120
# a facet panel's width outside presentation mode: two side by side, with their axes, fit the main
# column of a 1280-px screen with the sidebar open (900 px; at 440 the LR sensitivity panels ran
# 74 px past it and were cut off)
PANEL_PX = 380


def chart_config(present: bool = False) -> dict:
    """Returns the Altair theme dict (``{"config": ...}``) for normal or presentation mode."""
    s = {name: pair[int(present)] for name, pair in SIZES.items()}
    axis = {
        "labelFontSize": s["label"],
        "titleFontSize": s["title"],
        "labelFont": FONT,
        "titleFont": FONT,
        "titleFontWeight": "normal",
        "tickWidth": s["rule"],
        "domainWidth": s["rule"],
        "labelLimit": s["label_limit"],
    }
    header = {
        "labelFontSize": s["title"],
        "titleFontSize": s["title"],
        "labelFont": FONT,
        "titleFont": FONT,
    }
    return {
        "config": {
            "font": FONT,
            "axis": axis,
            "legend": {
                "labelFontSize": s["label"],
                "titleFontSize": s["title"],
                "labelFont": FONT,
                "titleFont": FONT,
                "symbolSize": s["legend_symbol"],
                "symbolStrokeWidth": s["line"],
                "labelLimit": s["label_limit"],
                "titleLimit": s["label_limit"],
            },
            "header": header,
            "title": {"fontSize": s["chart_title"], "font": FONT, "subtitleFontSize": s["label"]},
            "line": {"strokeWidth": s["line"]},
            "trail": {"size": s["line"]},
            "rule": {"strokeWidth": s["rule"]},
            "point": {"size": s["point"], "strokeWidth": s["rule"]},
            "circle": {"size": s["point"]},
            "text": {"fontSize": s["label"], "font": FONT},
        }
    }


_forced = threading.local()  # a thread drawing for a session it is not in (ui.figures)


@contextlib.contextmanager
def presenting_as(value: bool):
    """Makes ``presenting()`` return ``value`` in this thread for the block (charts built away
    from the session's script thread, for that session's mode)."""
    _forced.value = value
    try:
        yield
    finally:
        _forced.value = None


def presenting() -> bool:
    """Returns True when the current session has presentation mode on (False outside a session)."""
    forced = getattr(_forced, "value", None)
    if forced is not None:
        return forced
    if get_script_run_ctx(suppress_warning=True) is None:
        return False
    return bool(st.session_state.get(PRESENT_KEY, False))


def wants_present() -> bool:
    """Returns True when this run presents: the toggle's state, or on a session's first run
    (before the toggle exists) the link's ``?present=true``."""
    if PRESENT_KEY in st.session_state:
        return bool(st.session_state[PRESENT_KEY])
    return st.query_params.get(PRESENT_KEY, "").lower() == "true"


def panel_width(normal: int, columns: int) -> int:
    """Returns the width of one facet panel: ``normal``, or in presentation mode the width at
    which ``columns`` panels side by side fit a 1280-px projector. (Vega-Lite cannot fit a facet
    chart to its container, so the width is set here.)"""
    if not presenting():
        return normal
    return min(normal, (PRESENT_ROW_PX - 110 - 20 * (columns - 1)) // columns)


def facet(panels: int, columns: int, width: int) -> dict:
    """Returns a facet chart's ``columns`` and panel ``width``: as given, or in presentation mode
    up to four panels in one row, sized to fit a 1280-px projector (``panel_width``)."""
    if presenting():
        columns = max(1, min(panels, 4))
    return {"columns": columns, "width": panel_width(width, columns)}


@alt.theme.register("bnlr", enable=True)
def bnlr_theme() -> alt.theme.ThemeConfig:
    return chart_config(presenting())


def use(present: bool) -> None:
    """Applies the page part of presentation mode (larger text); charts follow through the theme."""
    alt.theme.enable("bnlr")  # in case something else enabled another theme in this process
    if present:
        st.html(PRESENT_CSS)
