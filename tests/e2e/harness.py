"""The app in a real browser: serve it the README's way, drive Debian's Chromium, read charts.

Shared by the browser tests (tests/e2e), the screenshots script and the load benchmarks.
Playwright drives the system Chromium (``executable_path``), so nothing is downloaded (no
``playwright install``). A chart is "drawn" when its Vega-Lite element holds an SVG (Streamlit
renders Vega as SVG) or a canvas with marks in it; a chart's *signature* is the geometry and text
of its marks, so two equal signatures mean the same picture and a changed signature means the
chart changed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get(
    "BNLR_CHROMIUM", "/usr/bin/chromium"
)  # Debian's; override for another system
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHART = '[data-testid="stVegaLiteChart"]'
EXCEPTION = '[data-testid="stException"]'


def browser_missing() -> str | None:
    """Returns why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) is not installed"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int, script: str = "streamlit_app.py") -> list[str]:
    """The README's `streamlit run streamlit_app.py` (or another script, with the app's
    .streamlit/config.toml), bound to 127.0.0.1 on the given port."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        script,
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
    ]


def confined(taskset: str = "", quota: str = "") -> tuple[str, ...]:
    """The command a bench's server runs under (``serve``'s ``prefix``): on the CPUs ``taskset``
    (e.g. ``"0"``, one core), in a CPU quota of ``quota`` cores (e.g. ``"0.5"``, as a
    container's: ``bench/in_quota.sh``, root only)."""
    quoted = ("bash", str(ROOT / "bench" / "in_quota.sh"), quota) if quota else ()
    return quoted + (("taskset", "-c", taskset) if taskset else ())


@contextlib.contextmanager
def serve(
    env: dict | None = None,
    timeout: float = 60,
    prefix: tuple[str, ...] = (),
    script: str = "streamlit_app.py",
):
    """Yields (base_url, process, log_path) of a fresh server; stops it on exit. ``prefix``: a
    command the server runs under, e.g. ``("taskset", "-c", "0")`` (one CPU); ``script``:
    another app than ours (a bench's baseline)."""
    port = free_port()
    # the log outlives this function's block: the caller reads it after the server stopped
    log = tempfile.NamedTemporaryFile("w+", prefix="bnlr-server-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [*prefix, *server_command(port, script)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode}:\n{Path(log.name).read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server not healthy after {timeout}s:\n{Path(log.name).read_text()}"
                )
            time.sleep(0.2)
        yield url, proc, Path(log.name)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def warm_up(browser, url: str) -> None:
    """Opens the default page once. Streamlit 1.67 learns the app's pages (st.navigation) on the
    first script run, so until then a direct link to another page shows a "Page not found" dialog
    over the right page (streamlit/streamlit#9992), which also blocks clicks."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(url)
    wait_idle(page)
    ctx.close()


def launch(playwright):
    """Returns Debian's Chromium, headless, launched by Playwright."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# The drawn marks of every chart on the page, in document order: per chart, whether it is drawn
# and a signature made of mark geometry and text (no generated ids, so the same picture gives the
# same text).
_CHARTS_JS = """(sel) => [...document.querySelectorAll(sel)].map(el => {
  const svg = el.querySelector('svg.marks'), canvas = el.querySelector('canvas');
  if (svg) {
    const marks = [...svg.querySelectorAll(
      'g[class*="mark-"] path, g[class*="mark-"] line, g[class*="mark-"] text')];
    const sig = marks.map(m => (m.getAttribute('d') || '') + '|' +
                               (m.getAttribute('transform') || '') + '|' +
                               (m.getAttribute('stroke-width') || '') + '|' +
                               (m.getAttribute('font-size') || '') + '|' +
                               m.textContent).join('\\n');
    const data = [...svg.querySelectorAll('g[class*="role-mark"] path')]
      .filter(p => (p.getAttribute('d') || '').length > 4);
    return {drawn: +svg.getAttribute('width') > 0 && data.length > 0, sig};
  }
  if (canvas) {
    const sig = canvas.width > 0 ? canvas.toDataURL() : '';
    return {drawn: canvas.width > 0 && canvas.height > 0 && sig.length > 2000, sig};
  }
  return {drawn: false, sig: ''};
})"""


# True once the script finished and at least `n` charts are on the page, every one of them drawn.
ALL_DRAWN_JS = """(n) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
      || app.getAttribute('data-test-script-state') !== 'notRunning'
      || document.querySelector('[data-stale="true"]')) return false;
  const charts = (%s)('%s');
  return charts.length >= n && charts.every(c => c.drawn);
}""" % (_CHARTS_JS, CHART.replace("'", "\\'"))  # noqa: UP031 (the JS is full of braces)


def charts(page) -> list[dict]:
    """Returns [{drawn, sig}] for every Vega-Lite chart on the page."""
    return page.evaluate(_CHARTS_JS, CHART)


_PAST_JS = """() => {
  const column = document.querySelector('[data-testid="stMainBlockContainer"]');
  const main = column.getBoundingClientRect();
  return [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg.marks')]
    .map((svg, i) => [i, Math.round(svg.getBoundingClientRect().right - main.right)])
    .filter(([, past]) => past > 0); }"""


def charts_past_the_column(page) -> list[list[int]]:
    """Returns [chart index, px] for every chart that runs past the right edge of the page's main
    column (where Streamlit cuts it off)."""
    return page.evaluate(_PAST_JS)


def wait_idle(page, timeout: float = 60_000) -> None:
    """Waits until the app is connected, its script is not running and nothing is stale."""
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-connection-state="CONNECTED"]', timeout=timeout
    )
    page.wait_for_function(
        """() => { const a = document.querySelector('[data-testid="stApp"]');
                   return a && a.getAttribute('data-test-script-state') === 'notRunning'
                          && !document.querySelector('[data-stale="true"]'); }""",
        timeout=timeout,
    )


def wait_drawn(page, at_least: int = 1, timeout: float = 180_000) -> list[dict]:
    """Waits until the script finished and ≥ `at_least` charts are drawn; returns charts(page)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        wait_idle(page, timeout)
        got = charts(page)
        if len(got) >= at_least and all(c["drawn"] for c in got):
            page.wait_for_timeout(150)  # let vega finish a redraw it started, then read again
            again = charts(page)
            if [c["sig"] for c in again] == [c["sig"] for c in got]:
                return again
        if time.monotonic() > deadline:
            raise AssertionError(
                f"charts not drawn after {timeout / 1000:.0f}s: "
                f"{[c['drawn'] for c in got]} (wanted at least {at_least})"
            )
        page.wait_for_timeout(200)


def wait_changed(page, before: list[dict], timeout: float = 180_000) -> list[dict]:
    """Waits until the charts' signatures differ from `before` and the app is idle; returns them."""
    old = [c["sig"] for c in before]
    deadline = time.monotonic() + timeout / 1000
    while True:
        now = wait_drawn(page, 1, timeout)
        if [c["sig"] for c in now] != old:
            return now
        if time.monotonic() > deadline:
            raise AssertionError("the charts did not change")
        page.wait_for_timeout(250)


_REDRAWN_JS = (
    "([sel, before]) => {\n  const now = (" + _CHARTS_JS + ")(sel).map(c => c.sig);\n"
    "  return now.length === before.length && now.some((s, i) => s !== before[i]);\n}"
)


# True once a chart that is not stale is drawn with a signature not in `before`
_NEW_CHART_JS = (
    "([sel, before]) => {\n  const els = [...document.querySelectorAll(sel)];\n"
    "  const now = (" + _CHARTS_JS + ")(sel);\n"
    "  return now.some((c, i) => c.drawn && !before.includes(c.sig)\n"
    "                            && !els[i].closest('[data-stale=\"true\"]'));\n}"
)


def wait_new_chart(page, before: list[str], timeout: float = 120_000) -> None:
    """Waits, looking every 20 ms, until a chart is drawn that is not one of ``before`` (the
    signatures of ``charts(page)``) and not stale: another page's first chart, after a link
    clicked on a page with charts of its own (Streamlit keeps them, stale, until the new page's
    script finishes)."""
    page.wait_for_function(_NEW_CHART_JS, arg=[CHART, before], timeout=timeout, polling=20)


def wait_redrawn(page, before: list[str], timeout: float = 60_000) -> None:
    """Waits, looking every 10 ms, until a chart's signature differs from ``before`` (the
    signatures of ``charts(page)``): the moment a change is drawn (the script may still run)."""
    page.wait_for_function(_REDRAWN_JS, arg=[CHART, before], timeout=timeout, polling=10)


def fit_to_content(page, width: int, min_height: int = 900, max_height: int = 6000) -> None:
    """Makes the viewport as tall as the page's content.

    Streamlit scrolls inside its main area, so a full-page screenshot of a short viewport would
    cut the page off.
    """
    height = page.evaluate("""() => Math.max(...[
        '[data-testid="stMain"]',
        '[data-testid="stMainBlockContainer"]',
        '[data-testid="stSidebarContent"]'
    ].map(s => document.querySelector(s)).filter(Boolean).map(e => e.scrollHeight))""")
    page.set_viewport_size(
        {"width": width, "height": max(min_height, min(max_height, height + 40))}
    )


def exceptions(page) -> list[str]:
    """Returns the text of every exception element on the page."""
    return page.locator(EXCEPTION).all_inner_texts()
