"""What the browser tests do on each page: where it lives, how many charts it draws, which training
and display control to change, and which URL parameters to open it with. Labels and keys come from
the pages themselves (pages/*.py, ui/controls.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from playwright.sync_api import Page, expect


@dataclass(frozen=True)
class PageSpec:
    name: str
    path: str  # url_path in streamlit_app.py ("" for the default page)
    heading: str  # the page's title
    charts: int  # charts drawn with the defaults (at least)
    training: Callable[[Page], None] | None = None  # changes one training control
    display: Callable[[Page], None] | None = None  # changes one display control
    query: str = ""  # URL parameters that set a non-default state
    query_keys: tuple[str, ...] = ()
    shows_query: Callable[[Page], None] = lambda page: None  # asserts the widgets show that state


PAGES = [
    PageSpec("home", "", "home", 0),
    PageSpec("lr_sensitivity", "lr-sensitivity", "lr_sensitivity", 0),
    PageSpec("lr_curve", "lr-curve", "lr_curve", 0),
    PageSpec("schedules", "schedules", "scheduler_playground", 0),
]
