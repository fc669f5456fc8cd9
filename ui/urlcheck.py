"""A refused URL value is said, not swallowed.

Widgets bound to the URL (``bind="query-params"``) silently fall back to their default when the
link holds a value they do not accept (``?epochs=1000000000`` shows 40 epochs). So each page
reads ``st.query_params`` on its first run in a session, before any widget is drawn (``start``);
each control, once drawn, compares what the link asked with what the widget took (``number``,
``choice``, ``choices``, ``flag``); ``finish`` adds the parameters no control on the page knows,
and shows one notice per refused parameter: its name, what was asked, what is accepted and the
value used instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import streamlit as st

_STATE = "_urlcheck"


def start(page: str) -> None:
    """Reads the link's parameters on this page's first run in the session; places the notice
    box (call it at the top of the page, before any bound widget)."""
    seen = f"_urlcheck_seen:{page}"
    raw = {}
    if seen not in st.session_state:
        st.session_state[seen] = True
        raw = {k: st.query_params.get_all(k) for k in st.query_params}
    st.session_state[_STATE] = {
        "raw": raw,
        "notices": {},
        "said": set(),
        "known": set(),
        "box": st.container(),
    }


def known(*keys: str) -> None:
    """Marks parameters as read by the page though no control has their key (e.g. ``quiz``)."""
    state = st.session_state.get(_STATE)
    if state is not None:
        state["known"].update(keys)


def _raw(key: str) -> list[str] | None:
    state = st.session_state.get(_STATE)
    return state["raw"].get(key) if state else None


def _note(key: str, text: str) -> None:
    state = st.session_state.get(_STATE)
    if state is not None and key not in state["said"]:
        state["said"].add(key)
        state["notices"][key] = text


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_fmt, value)) or "(none)"
    return str(value)


def number(key: str, used, low, high, integer: bool) -> None:
    """Checks the link's value of a number control (accepted: low … high)."""
    raw = _raw(key)
    if not raw:
        return
    text = raw[-1]
    accepted = f"{'a whole number' if integer else 'a number'} from {_fmt(low)} to {_fmt(high)}"
    try:
        value = float(text)
    except ValueError:
        problem = "is not a number"
    else:
        if not math.isfinite(value):
            problem = "is not a finite number"
        elif integer and value != int(value):
            problem = "is not a whole number"
        elif not (low <= value <= high):
            problem = "is out of range"
        else:
            return
    _note(key, f"`{key}={text}` {problem}: accepted is {accepted}; using {_fmt(used)} instead.")


def choice(key: str, used, labels: Iterable[str]) -> None:
    """Checks the link's value of a one-of control (selectbox, segmented control)."""
    raw, labels = _raw(key), [str(v) for v in labels]
    if raw and raw[-1] not in labels:
        _note(
            key,
            f"`{key}={raw[-1]}` is not one of the choices ({', '.join(labels)}); "
            f"using {_fmt(used)} instead.",
        )


def choices(key: str, used, labels: Iterable[str]) -> None:
    """Checks the link's values of a many-of control (multiselect, pills)."""
    raw, labels = _raw(key), [str(v) for v in labels]
    if not raw:
        return
    bad = [v for v in raw if v not in labels]
    if bad or len(set(raw)) != len(raw):
        what = ", ".join(bad) if bad else "a value given twice"
        _note(
            key,
            f"`{key}`: {what} is not accepted (choices: {', '.join(labels)}); "
            f"using {_fmt(used)} instead.",
        )


def flag(key: str, used: bool) -> None:
    """Checks the link's value of a toggle (true / false)."""
    raw = _raw(key)
    if raw and raw[-1].lower() not in ("true", "false"):
        _note(key, f"`{key}={raw[-1]}` is not true or false; using {str(used).lower()} instead.")


def names(key: str, accepted: Iterable[str], instead: str) -> None:
    """Checks the link's comma-separated names (``hide=epochs,seeds``) against ``accepted``;
    ``instead`` says what the page does with the refused ones."""
    raw, accepted = _raw(key), [str(v) for v in accepted]
    if not raw:
        return
    bad = [n for v in raw for n in (p.strip() for p in v.split(",")) if n and n not in accepted]
    if bad:
        _note(
            key,
            f"`{key}`: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not accepted on this "
            f"page (accepted: {', '.join(accepted) or 'none'}); {instead}.",
        )


def finish(known: Iterable[str] = ()) -> None:
    """Notes every parameter no control knows (controls drawn so far, and ``known``), then shows
    the notices in the box placed by ``start``."""
    state = st.session_state.get(_STATE)
    if state is None:
        return
    seen = set(known) | state["known"] | {k for k in st.session_state if isinstance(k, str)}
    for key in state["raw"]:
        if key not in seen:
            _note(key, f"`{key}` is not a setting of this page; it was ignored.")
    if state["notices"]:
        with state["box"]:
            st.warning(
                "**This link holds settings the page cannot use.** "
                + " ".join(f"Parameter {text}" for text in state["notices"].values()),
                icon="🔗",
            )
        state["notices"] = {}
