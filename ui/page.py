"""How every page opens: its title, its folded introduction, then the link's checks."""

from __future__ import annotations

import streamlit as st

from ui import classroom, urlcheck


def open_page(name: str, title: str, intro: str = "") -> None:
    """Draws the title and the introduction (folded away in presentation mode), then reads the
    link's parameters (``urlcheck``) and its classroom flags (``classroom``): call it first, before
    any bound widget. ``name`` is the page's key in the URL checks and the quizzes."""
    st.title(title)
    if intro:
        with classroom.folded():
            st.markdown(intro)
    urlcheck.start(name)
    classroom.start(name)


def on_demand(label: str, key: str):
    """An expander whose content is drawn only once it is opened (opening it reruns the page,
    whose results are cached): returns it open, or None. A collapsed ``st.expander`` still sends
    its content, and the browser renders all of it (a highlighted script, a table's grid, more
    charts) before it draws any of the page's charts: on the playground, its script alone held
    back the first chart. ``key``: unique on the page."""
    box = st.expander(label, key=key, on_change="rerun")
    return box if box.open else None
