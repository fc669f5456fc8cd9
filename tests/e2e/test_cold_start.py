"""A deep link opened first on a freshly started server (Community Cloud waking a sleeping app, a
teacher's laptop before class): the page it names, with its settings, and no "Page not found"
dialog. Each link gets its own new server, and nothing visits Home first."""

import time

import harness
import pytest

LINKS = [  # (link, the page's title, what shows first: a chart, or a quiz's question)
    ("/lr-curve?present=true&quiz=best_lr", "LR learning curve", "Predict first"),
    ("/schedules?quiz=best_schedule", "Scheduler playground", "Predict first"),
    ("/lr-sensitivity?seeds=3", "LR sensitivity", None),
]


@pytest.mark.parametrize("link, title, question", LINKS)
def test_a_deep_link_works_on_the_first_visit_to_a_fresh_server(browser, link, title, question):
    with harness.serve() as (url, _proc, _log):
        ctx = browser.new_context(viewport={"width": 1280, "height": 720})
        page = ctx.new_page()
        opened = time.monotonic()
        page.goto(url + link)
        if question:  # a quiz hides the page's charts until the answer is revealed
            page.get_by_text(question).wait_for(timeout=180_000)
            harness.wait_idle(page, 180_000)
        else:
            harness.wait_drawn(page, 1)
        first = time.monotonic() - opened
        body = page.inner_text("body")
        ctx.close()
    assert "Page not found" not in body
    assert title in body, body[:300]
    print(f"{link}: first content after {first:.1f} s on a fresh server")
