"""The classroom in Chromium: presentation mode fits a projector's first screen on every page, at
1280×720 and 1920×1080 (the first chart's box inside the viewport, no control label or chart
legend cut, no chart wider than its column, the sidebar collapsed and one click from open); a
quiz draws no chart until the reveal and then marks the guess; hide flags hide their controls."""

from __future__ import annotations

import harness
import pytest
from pages_spec import PAGES

SIZES = [(1280, 720), (1920, 1080)]

# Everything the layout checks read, in one evaluation: the viewport, the first chart's box, the
# controls whose text is cut (scrollWidth > clientWidth), charts wider than their column, chart
# texts Vega cut with "…" or drawn past the chart's edge, and the sidebar's state.
LAYOUT_JS = """(cardsFirst) => {
  const box = e => { const r = e.getBoundingClientRect();
                     return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
  const cut = e => e.scrollWidth > e.clientWidth + 1;
  const main = document.querySelector('[data-testid="stMain"]');
  const charts = [...main.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const labels = [...main.querySelectorAll(
      '[data-testid="stWidgetLabel"] p, [data-testid="stWidgetLabel"] div, '
      + '[data-testid="stButtonGroup"] button p, [data-testid="stButton"] button p, '
      + '[data-testid="stExpander"] summary p')]
    .filter(e => e.offsetParent !== null && cut(e)).map(e => e.textContent);
  const overflow = charts.map(c => {
      const svg = c.querySelector('svg, canvas');
      const column = c.closest('[data-testid="stColumn"]')
                     || c.closest('[data-testid="stMainBlockContainer"]');
      return {svg: svg && box(svg), column: box(column)};
    }).filter(o => o.svg && o.svg.right > o.column.right + 1).map(o => o.svg);
  const ellipsis = charts.flatMap(c => [...c.querySelectorAll('svg text')])
    .map(t => t.textContent).filter(t => t.endsWith('…'));
  // texts drawn past their chart's edge (a chart shrunk into a narrow column cuts its legend);
  // a text's box is its em box, a few px larger than its glyphs: 5 px of slack
  const slack = 5;
  const outside = charts.flatMap(c => {
      const s = c.querySelector('svg');
      if (!s) return [];
      const edge = box(s);
      return [...s.querySelectorAll('text')].filter(t => t.textContent.trim()).filter(t => {
          const r = box(t);
          return r.right > edge.right + slack || r.left < edge.left - slack
                 || r.bottom > edge.bottom + slack;
        }).map(t => t.textContent);
    });
  const first = charts.length && !cardsFirst ? box(charts[0])
    : box(main.querySelector('[data-testid="stVerticalBlockBorderWrapper"], h1'));
  const open = document.querySelector('[data-testid="stExpandSidebarButton"]');
  return {width: window.innerWidth, height: window.innerHeight, first, labels, overflow,
          ellipsis, outside, collapsed: !!open && open.getAttribute('aria-expanded') === 'false'
                               && open.offsetParent !== null};
}"""


def _open(browser, app, path: str, size: tuple[int, int], charts: int):
    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    page.goto(f"{app.url}/{path}")
    harness.wait_drawn(page, charts)
    page.wait_for_timeout(300)  # charts sized to their container settle
    return ctx, page


@pytest.mark.parametrize("spec", PAGES, ids=lambda s: s.name)
def test_presentation_mode_fits_the_first_screen(browser, app, spec):
    """Both projector sizes on one page load (the browser window resized in between)."""
    ctx, page = _open(browser, app, f"{spec.path}?present=true", SIZES[0], spec.charts)
    try:
        assert not harness.exceptions(page)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(500)  # charts sized to their container redraw
            got = page.evaluate(LAYOUT_JS, spec.name == "home")  # Home: its claims' cards
            first, where = got["first"], (spec.name, width, height, got["first"])
            # the main chart whole on the first screen (home: its claims' cards start there)
            assert first["left"] >= 0 and first["right"] <= width, where
            assert 0 <= first["top"] < height, where
            if spec.charts:
                assert first["bottom"] <= height, where
            assert got["labels"] == [], f"labels cut at {width}: {got['labels']}"
            assert got["ellipsis"] == [], f"chart texts cut at {width}: {got['ellipsis']}"
            assert got["outside"] == [], f"chart texts past the edge at {width}: {got['outside']}"
            assert got["overflow"] == [], f"charts wider than their column: {got['overflow']}"
            assert got["collapsed"], "the sidebar should start collapsed, one click from open"
        page.get_by_test_id("stExpandSidebarButton").click()  # one click opens it
        toggle = page.get_by_role("switch", name="Presentation mode")
        toggle.wait_for(state="visible")
        assert toggle.is_checked()
    finally:
        ctx.close()


def test_a_quiz_draws_its_chart_only_after_the_reveal(browser, app):
    ctx, page = _open(browser, app, "lr-curve?present=true&quiz=best_lr", (1280, 720), 0)
    try:
        assert page.get_by_text("Which learning rate gives the lowest final loss?").is_visible()
        assert harness.charts(page) == []  # nothing gives the answer away
        page.get_by_role("button", name="Reveal the answer").click()
        harness.wait_drawn(page, 2)
        texts = page.evaluate(
            """() => [...document.querySelector('[data-testid="stVegaLiteChart"]')
                 .querySelectorAll('svg text')].map(t => t.textContent)"""
        )
        assert "your guess" in texts  # the guess is marked on the U
        assert page.get_by_text("Your guess: lr").is_visible()
    finally:
        ctx.close()


def test_hide_flags_hide_controls_but_keep_their_values(browser, app):
    ctx, page = _open(browser, app, "lr-curve?hide=num_it,split&num_it=60", (1400, 1000), 2)
    try:
        page.get_by_role("spinbutton", name="Epochs").wait_for(state="visible")
        assert not page.get_by_role("spinbutton", name="Range test: batches at most").is_visible()
        assert not page.get_by_role("radio", name="test", exact=True).is_visible()
        assert page.locator(".st-key-num_it input").input_value() == "60"  # still in use
        assert "num_it=60" in page.url and "hide=" in page.url
    finally:
        ctx.close()
