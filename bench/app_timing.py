"""How long each page makes a visitor wait, at its defaults, beside a trivial page.

Per page, in one process (Streamlit's AppTest: the whole script, widgets, training through
ui.runner, analysis, chart specs), CPU seconds of this process (the script's thread included):

- **cold**: empty caches (results and figures), so the page trains; and the wall time from its
  start to the first chart it sent (what a visitor waits for before the page's first chart, the
  browser's part aside);
- **cached rerun**: the same settings again (the median of 5 reruns);
- **display change**: one display control changed (train → test loss), the first time (its
  analysis and charts are new) and again (shared by then);
- **trivial**: a cached rerun of a page with one title and one small Altair chart, measured the
  same way, in turns with the page's (page, trivial, page, …: the same host for both), and each
  page's cached rerun as a multiple of it (the median of the ratios over ``--repeat``).

Then, in Debian's Chromium against a warm server (started the README's way, its warm-up done):
the wall time from opening each page's link to its first chart drawn, and to the whole page; from
clicking the page's link in the sidebar of Home (the app's code already loaded) to its first
chart; and, on the pages with one, the display change as a visitor makes it: a second after the
page is whole (the server's prefetch works meanwhile, as it does while a visitor reads), "test"
clicked, the wall time until a chart shows it. Beside them the trivial page served the same way
(the floor of Streamlit and the browser here), with a train / test control of its own.

    python bench/app_timing.py [--repeat 3] [--no-browser]

torch and bnlr are imported, the kernels compiled and one tiny training run before any clock
starts, as on a server past its first seconds; the scan of installed components a server does
once at start is shared by all AppTests, and so are the compiled scripts (a server compiles each
page once; AppTest compiled it again on every run); as ``ui.server.start`` does, the imports are
frozen out of the garbage collector (Streamlit collects after every run) and torch runs one
thread. The background trainings a page starts (its replication, Home's claims) end before its
cached reruns and before the next page's cold run, so that this process's CPU time counts one
page at a time.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import streamlit as st
import torch
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import bnlr  # noqa: E402
from bnlr import fused  # noqa: E402
from tests.apptest import compile_scripts_once, scan_components_once  # noqa: E402
from ui import figures, runner  # noqa: E402

PAGES = {  # name: (script, url path); Home is navigation.py's default page
    "Home": ("navigation.py", ""),
    "LR sensitivity": ("app_pages/lr_sensitivity.py", "lr-sensitivity"),
    "LR learning curve": ("app_pages/lr_curve.py", "lr-curve"),
    "Scheduler playground": ("app_pages/scheduler_playground.py", "schedules"),
    "Why it happens": ("app_pages/why.py", "why"),
    "Batch size": ("app_pages/batch_size.py", "batch-size"),
}
TRIVIAL = """import altair as alt
import pandas as pd
import streamlit as st
st.title("Trivial")
st.altair_chart(alt.Chart(pd.DataFrame({"x": [1, 2, 3], "y": [1, 4, 9]})).mark_line()
                .encode(x="x", y="y"))
"""


# The browser's floor for a display change: the trivial page with a train / test control.
TRIVIAL_TOGGLE = """import altair as alt
import pandas as pd
import streamlit as st
st.title("Trivial")
split = st.segmented_control("Loss on", ["train", "test"], default="train", key="split")
k = 1 if split == "train" else 2
st.altair_chart(alt.Chart(pd.DataFrame({"x": [1, 2, 3], "y": [1, 4 * k, 9]})).mark_line()
                .encode(x="x", y="y"))
"""


def cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def checked(at: AppTest) -> AppTest:
    if at.exception:
        raise RuntimeError(at.exception[0].message)
    return at


def settle() -> None:
    """Returns once no training runs or waits, background ones included (a page's replication,
    Home's claims): this process's CPU time then counts only what is measured."""
    while not runner.QUEUE.idle(0.5):
        time.sleep(0.05)


FIRST_CHART: list[float] = []  # when the running script sent its first chart (wall clock)


def _noting_charts(enqueue):
    def noted(queue, msg):
        kind = msg.delta.new_element.WhichOneof("type") if msg.HasField("delta") else None
        if not FIRST_CHART and "vega" in (kind or ""):
            FIRST_CHART.append(time.monotonic())
        return enqueue(queue, msg)

    return noted


ForwardMsgQueue.enqueue = _noting_charts(ForwardMsgQueue.enqueue)


def page_times(path: str, trivial: AppTest) -> dict:
    """CPU seconds of one page: cold (and the wall time to its first chart), cached rerun (and
    the trivial page's beside it), display change (new, then shared)."""
    settle()  # the previous page's background trainings are not this page's
    st.cache_data.clear()
    runner.clear_cache()
    figures.clear()
    at = AppTest.from_file(str(ROOT / path), default_timeout=600)
    FIRST_CHART.clear()
    start = time.monotonic()
    out = {"cold": cpu(lambda: checked(at.run()))}
    out["first"] = FIRST_CHART[0] - start if FIRST_CHART else None
    settle()  # a cached rerun: every result the page asked for is there
    out["cached"], out["trivial"] = reruns(at, trivial)
    split = [w for w in at.button_group if w.key == "split"]
    if split:
        out["display"] = cpu(lambda: checked(split[0].set_value("test").run()))
        split[0].set_value("train").run()
        out["display_shared"] = cpu(lambda: checked(split[0].set_value("test").run()))
    return out


RERUNS = 5  # a cached rerun is the median of this many (a page's and the trivial one's)


def reruns(at: AppTest, trivial: AppTest) -> tuple[float, float]:
    """CPU seconds of a cached rerun of ``at`` and of ``trivial``: each the median of RERUNS,
    taken in turns (page, trivial, page, …), so that both see the same host."""
    mine, floor = [], []
    for _ in range(RERUNS):
        mine.append(cpu(lambda: checked(at.run())))
        floor.append(cpu(lambda: checked(trivial.run())))
    return statistics.median(mine), statistics.median(floor)


def trivial_page() -> AppTest:
    """The trivial page, run once."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TRIVIAL)
    return checked(AppTest.from_file(f.name, default_timeout=60).run())


FIRST_CHART_JS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
  .some(el => { const svg = el.querySelector('svg.marks');
                return svg && +svg.getAttribute('width') > 0
                       && svg.querySelectorAll('g[class*="role-mark"] path').length > 0; })"""


def browser_times(repeat: int) -> dict:
    """Wall seconds from opening each page's link to its first chart, and to the whole page
    (its script finished), on a warm server; first the trivial page's, served the same way (the
    browser's and Streamlit's own floor on this machine)."""
    import harness
    from playwright.sync_api import sync_playwright

    def times(browser, url: str, home: bool = False, toggle: bool = False) -> tuple:
        first, whole, change = [], [], []
        for _ in range(repeat):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            start = time.monotonic()
            page.goto(url)
            if not home:
                page.wait_for_function(FIRST_CHART_JS, timeout=120_000, polling=50)
            else:  # Home: its first content is its claim cards (its charts come with verdicts)
                page.get_by_text("The article's three claims").wait_for(timeout=120_000)
            first.append(time.monotonic() - start)
            harness.wait_idle(page, 180_000)  # the script finished: the whole page
            whole.append(time.monotonic() - start)
            if toggle:
                change.append(display_change(page))
            ctx.close()
        return (
            statistics.median(first),
            statistics.median(whole),
            statistics.median(change) if change else None,
        )

    def from_home(browser, url: str, path: str) -> float:
        """Wall seconds from clicking the page's link in the sidebar, on Home in a new
        context (the app's code loaded), to its first chart: how a visitor moving around the
        app meets it."""
        waits = []
        for _ in range(repeat):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.goto(url)
            harness.wait_idle(page, 180_000)
            page.wait_for_timeout(500)
            link = page.locator(f'[data-testid="stSidebarNav"] a[href$="/{path}"]').first
            home = [c["sig"] for c in harness.charts(page)]  # Home's own charts
            start = time.monotonic()
            link.click()
            harness.wait_new_chart(page, home)
            waits.append(time.monotonic() - start)
            ctx.close()
        return statistics.median(waits)

    out = {}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TRIVIAL_TOGGLE)
    with sync_playwright() as pw:
        browser = harness.launch(pw)
        with harness.serve(script=f.name) as (url, _proc, _log):
            harness.warm_up(browser, url)
            out["trivial page"] = (*times(browser, url, toggle=True), None)
        with harness.serve() as (url, _proc, _log):
            for _, path in PAGES.values():  # every page once: results cached, as on a warm server
                harness.warm_up(browser, f"{url}/{path}")
            for name, (_, path) in PAGES.items():
                out[name] = times(browser, f"{url}/{path}", name == "Home", name in TOGGLES)
                out[name] += (from_home(browser, url, path) if path else None,)
        browser.close()
    return out


TOGGLES = ("LR sensitivity", "LR learning curve", "Scheduler playground", "Batch size")


def display_change(page) -> float:
    """Wall seconds from clicking "test" (the Loss on control) a second after the page is whole
    to a chart showing it."""
    import harness

    page.wait_for_timeout(1000)  # a visitor reads first; the server prefetches meanwhile
    before = [c["sig"] for c in harness.charts(page)]
    option = page.get_by_role("radio", name="test", exact=True)
    start = time.monotonic()
    option.click()
    harness.wait_redrawn(page, before, timeout=60_000)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    bnlr.train(bnlr.Grid(epochs=1))  # imports and first-call warm-up, off the clock
    scan_components_once()  # a server scans installed components once, at start
    compile_scripts_once()  # and compiles each page's script once, not on every rerun
    gc.freeze()  # and takes its imports out of the collections after every run (ui.server)
    torch.set_num_threads(1)  # as ui.server.start (two made the LR curve's range test 4× slower)
    fused.COMPILER.configure(background=True)  # as the server: no request waits for a compile
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"commit {commit}; load average before {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}")
    trivial = trivial_page()
    for path, _ in PAGES.values():  # the kernels every page's defaults need, compiled
        page_times(path, trivial)
    fused.wait_for_compiles()
    print(
        "| page | first chart, cold | cold | cached rerun | trivial page's, beside it | × trivial "
        "| display change (new) | display change (shared) |\n|---|---|---|---|---|---|---|---|"
    )
    for name, (path, _) in PAGES.items():
        runs = [page_times(path, trivial) for _ in range(args.repeat)]

        def median(key, runs=runs):
            values = [r[key] for r in runs if r.get(key) is not None]
            return statistics.median(values) if values else None

        def seconds(x):
            return "—" if x is None else f"{x:.2f} s"

        def ms(x):
            return "—" if x is None else f"{x * 1e3:.0f} ms"

        cached = median("cached")
        ratio = statistics.median(r["cached"] / r["trivial"] for r in runs)
        print(
            f"| {name} | {seconds(median('first'))} | {median('cold'):.2f} s | {ms(cached)} | "
            f"{ms(median('trivial'))} | {ratio:.1f}× | "
            f"{ms(median('display'))} | {ms(median('display_shared'))} |"
        )
    if not args.no_browser:
        print(
            "\n| page | first chart (Chromium) | × trivial | from Home's link | whole page | "
            "display change (Chromium) | × trivial |\n|---|---|---|---|---|---|---|"
        )
        measured = browser_times(args.repeat)
        floor, floor_change = measured["trivial page"][0], measured["trivial page"][2]
        for name, (first, whole, change, linked) in measured.items():
            shown = "— | —"
            if change is not None:
                shown = f"{change * 1e3:.0f} ms | {change / floor_change:.1f}×"
            via = "—" if linked is None else f"{linked:.2f} s"
            print(
                f"| {name} | {first:.2f} s | {first / floor:.1f}× | {via} | {whole:.2f} s | "
                f"{shown} |"
            )
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
