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
