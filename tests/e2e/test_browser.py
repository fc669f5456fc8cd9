"""Every page in a real browser: it loads, every chart is drawn, no exception appears, one training
control and one display control each change the chart (to what a link to that display draws), and
a URL with parameters opens the page in that state. Plus presentation mode, per session."""

from __future__ import annotations

import harness
import pytest
from pages_spec import PAGES, PageSpec

PRESENT_FONT = "20px"  # ui.theme: axis labels in presentation mode, and the root font size


def open_page(page, app, spec: PageSpec, query: str = "") -> list[dict]:
    page.goto(f"{app.url}/{spec.path}{'?' + query if query else ''}")
    got = harness.wait_drawn(page, spec.charts)
    assert_no_exception(page, app)
    return got


def assert_no_exception(page, app):
    found = harness.exceptions(page)
    assert not found, f"exception on the page: {found}\nserver log:\n{app.log_tail()}"


@pytest.mark.parametrize("spec", PAGES, ids=lambda s: s.name)
def test_page_loads_with_every_chart_drawn(page, app, spec):
    got = open_page(page, app, spec)
    assert len(got) >= spec.charts and all(c["drawn"] for c in got)
    assert page.get_by_role("heading", level=1).first.inner_text().startswith(spec.heading)
    # on a 1280-px laptop, sidebar open, every chart fits the page's column (a facet chart's
    # panels have a fixed width: at 440 px the LR sensitivity panels were cut off)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(500)  # Streamlit lays the page out again
    assert harness.charts_past_the_column(page) == []


@pytest.mark.parametrize(
    "spec, control",
    [(s, c) for c in ("training", "display") for s in PAGES if getattr(s, c)],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_control_changes_the_chart(page, app, spec, control):
    before = open_page(page, app, spec)
    getattr(spec, control)(page)
    harness.wait_changed(page, before)
    assert_no_exception(page, app)


@pytest.mark.parametrize(
    "spec",
    [s for s in PAGES if s.name in ("lr_sensitivity", "lr_curve", "schedules", "batch_size")],
    ids=lambda s: s.name,
)
def test_a_display_change_draws_what_a_link_to_that_display_draws(page, app, spec):
    # the charts whose spec a display change leaves as it was get their data swapped in place
    # (ui.figures.spec's stable dataset names): the picture must be the one drawn afresh
    before = open_page(page, app, spec)
    page.get_by_role("radio", name="test", exact=True).click()
    harness.wait_changed(page, before)
    changed = [marks(c) for c in harness.wait_drawn(page, spec.charts)]
    fresh = [marks(c) for c in open_page(page, app, spec, "split=test")]
    assert changed == fresh


def marks(chart: dict) -> list[str]:
    """A chart's marks (geometry and text), in no particular order: Vega updating a drawn
    chart keeps the axis ticks it can and appends the new ones, so their order in the SVG
    differs from a chart drawn afresh, and the picture does not."""
    return sorted(chart["sig"].split("\n"))


@pytest.mark.parametrize("spec", [s for s in PAGES if s.query], ids=lambda s: s.name)
def test_url_opens_the_page_in_that_state(page, app, spec):
    default = [c["sig"] for c in open_page(page, app, spec)]
    shared = open_page(page, app, spec, spec.query)
    spec.shows_query(page)  # the widgets show the URL's values
    assert [c["sig"] for c in shared] != default, "the URL's settings did not change the chart"
    for key in spec.query_keys:  # the URL keeps the state, so it can be shared again
        assert f"{key}=" in page.url


def axis_label_sizes(page) -> set[str]:
    return set(
        page.evaluate("""() => [...document.querySelectorAll(
        '[data-testid="stVegaLiteChart"] svg .role-axis-label text')]
        .map(t => t.getAttribute('font-size'))""")
    )


def root_font(page) -> str:
    return page.evaluate("getComputedStyle(document.documentElement).fontSize")


def test_presentation_mode_from_the_url_and_the_toggle(page, app):
    spec = PAGES[1] if len(PAGES) > 1 else PAGES[0]
    open_page(page, app, spec, "present=true")
    assert axis_label_sizes(page) == {PRESENT_FONT} and root_font(page) == PRESENT_FONT
    page.get_by_test_id("stExpandSidebarButton").click()  # presentation mode starts collapsed
    assert page.get_by_role("switch", name="Presentation mode").is_checked()
    before = harness.charts(page)
    page.get_by_text("Presentation mode").click()
    harness.wait_changed(page, before)
    # the charts redraw one after another: wait until none is left in the presentation font
    page.wait_for_function(
        """size => ![...document.querySelectorAll(
        '[data-testid="stVegaLiteChart"] svg .role-axis-label text')]
        .some(t => t.getAttribute('font-size') === size)""",
        arg=PRESENT_FONT,
        timeout=30_000,
    )
    assert PRESENT_FONT not in axis_label_sizes(page) and root_font(page) == "16px"
    assert "present=" not in page.url


def test_presentation_mode_is_per_session(browser, app):
    """Two people at once, one presenting: each sees only its mode (the Altair theme is global)."""
    spec = PAGES[1] if len(PAGES) > 1 else PAGES[0]
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        pages = [c.new_page() for c in contexts]
        for pg, query in zip(pages, ["present=true", ""]):  # both scripts run at the same time
            pg.goto(f"{app.url}/{spec.path}{'?' + query if query else ''}", wait_until="commit")
        for pg in pages:
            harness.wait_drawn(pg, spec.charts)
        assert axis_label_sizes(pages[0]) == {PRESENT_FONT}
        assert PRESENT_FONT not in axis_label_sizes(pages[1])
    finally:
        for c in contexts:
            c.close()
