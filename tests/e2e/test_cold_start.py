"""A deep link opened first on a freshly started server (Community Cloud waking a sleeping app, a
teacher's laptop before class): the page it names, with its settings, and no "Page not found"
dialog. Each link gets its own new server, and nothing visits Home first."""

import time

import harness
import pytest

LINKS = [
    ("/lr-curve?present=true&quiz=best_lr", "LR learning curve"),
    ("/schedules?quiz=best_schedule", "Scheduler playground"),
    ("/lr-sensitivity?seeds=3", "LR sensitivity"),
]


@pytest.mark.parametrize("link, title", LINKS)
def test_a_deep_link_works_on_the_first_visit_to_a_fresh_server(browser, link, title):
    with harness.serve() as (url, _proc, _log):
        ctx = browser.new_context(viewport={"width": 1280, "height": 720})
        page = ctx.new_page()
        opened = time.monotonic()
        page.goto(url + link)
        harness.wait_drawn(page, 1)
        first_chart = time.monotonic() - opened
        body = page.inner_text("body")
        ctx.close()
    assert "Page not found" not in body
    assert title in body, body[:300]
    print(f"{link}: first chart after {first_chart:.1f} s on a fresh server")
