"""What the browser tests do on each page: where it lives, how many charts it draws, which training
and display control to change, and which URL parameters to open it with. Labels and keys come from
the pages themselves (app_pages/*.py, ui/controls.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def type_text(label: str, value: str):
    def act(page: Page):
        box = page.get_by_role("textbox", name=label, exact=True)
        box.fill(value)
        box.press("Enter")

    return act


def type_number(label: str, value):
    def act(page: Page):
        box = page.get_by_role("spinbutton", name=label, exact=True)
        box.fill(str(value))
        box.press("Enter")

    return act


def choose(option: str):
    """Clicks one option of a segmented control (role radio)."""
    return lambda page: page.get_by_role("radio", name=option, exact=True).click()


def flip(label: str):
    """Flips a toggle by its label."""
    return lambda page: page.get_by_text(label, exact=True).click()


def shows(
    numbers: dict | None = None,
    chosen: tuple[str, ...] = (),
    texts: dict | None = None,
    switched_on: tuple[str, ...] = (),
):
    """Asserts these values in the page's number and text inputs, segmented options and toggles."""

    def check(page: Page):
        for label in switched_on:
            expect(page.get_by_role("switch", name=label, exact=True)).to_be_checked()
        for label, value in (numbers or {}).items():
            expect(page.get_by_role("spinbutton", name=label, exact=True)).to_have_value(str(value))
        for option in chosen:
            expect(page.get_by_role("radio", name=option, exact=True)).to_have_attribute(
                "aria-checked", "true"
            )
        for label, value in (texts or {}).items():
            expect(page.get_by_role("textbox", name=label, exact=True)).to_have_value(value)

    return check


PAGES = [
    PageSpec("home", "", "How the learning rate shapes training", 3),
    PageSpec(
        "lr_sensitivity",
        "lr-sensitivity",
        "LR sensitivity",
        3,
        training=type_text("Learning rates", "0.1, 0.01"),
        display=choose("test"),
        query="epochs=20&split=test",
        query_keys=("epochs", "split"),
        shows_query=shows({"Epochs": 20}, ("test",)),
    ),
    PageSpec(
        "lr_curve",
        "lr-curve",
        "LR learning curve",
        2,
        training=type_number(
            "Range test: batches at most", 50
        ),  # retrains the range test only: fast
        display=flip("Log loss axis"),
        query="num_it=60&split=test",
        query_keys=("num_it", "split"),
        shows_query=shows({"Range test: batches at most": 60}, ("test",)),
    ),
    PageSpec(
        "schedules",
        "schedules",
        "Scheduler playground",
        2,
        training=type_number("Initial lr (the optimizer's lr)", 0.1),
        display=flip("Log lr axis"),
        query="lr0=0.1&lr_log=true",
        query_keys=("lr0", "lr_log"),
        shows_query=shows({"Initial lr (the optimizer's lr)": 0.1}, switched_on=("Log lr axis",)),
    ),
    PageSpec(
        "why",
        "why",
        "Why it happens",
        5,
        training=type_text("Learning rates", "0.1, 0.01"),
        query="epochs=10&wd=0.01",
        query_keys=("epochs", "wd"),
        shows_query=shows({"Epochs": 10, "Weight decay": "0.01"}),
    ),
    PageSpec(
        "batch_size",
        "batch-size",
        "Batch size",
        3,
        # (fewer epochs: accepted wherever the default is; a smaller batch may not be, on the
        # torch path, whose default starts at a larger batch)
        training=type_number("Epochs", 10),
        display=choose("test"),
        query="b_min=8&same=same+steps&epochs=10",  # (a labelled control: the URL holds the label)
        query_keys=("b_min", "same", "epochs"),
        shows_query=shows({"Smallest batch size": 8, "Epochs": 10}, ("same steps",)),
    ),
]
