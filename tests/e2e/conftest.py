"""Browser fixtures: one app server per test session (the README's command on 127.0.0.1), one
Chromium, a fresh browser context per test. Without Chromium the tests skip, except in CI (CI=true),
where a missing browser is a failure."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import harness

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def browser():
    missing = harness.browser_missing()
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but the browser tests cannot run: {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = harness.launch(pw)
        yield b
        b.close()


class App:
    def __init__(self, url, log):
        self.url, self.log = url, log

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:])


@pytest.fixture(scope="session")
def app(browser):
    """The one server shared by every browser test (and its training cache): .url, .log."""
    with harness.serve() as (url, _proc, log):
        harness.warm_up(browser, url)
        yield App(url, log)


@pytest.fixture
def page(browser, app, request):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(60_000)
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
