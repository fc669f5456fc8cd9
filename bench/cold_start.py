"""A freshly started server's first visitor: each page's deep link, opened first, in Chromium.

For every page (and a few deep links with settings), a new server is started the README's way,
left alone for ``--after`` seconds (a woken demo, a teacher's laptop before class), and then the
page's link is opened in a new browser context with nothing visited before. Prints the wall time
to the page's first content (its first chart; for a quiz link its question, the charts waiting
for the reveal) and to the whole page (its script finished), and whether Streamlit's "Page not
found" dialog showed.

    python bench/cold_start.py [--after 10] [--repeat 1] [--taskset 0] [--quota 0.5] [--websocket]
    python bench/cold_start.py --taskset 0 --browser-cpus 1   # server and browser a core each

``--websocket``: the server's part alone, with no browser: a client speaking Streamlit's
protocol (bench/load_cap.py's) times the first chart's message and the script's end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402

FIRST_CHART_JS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
  .some(el => { const svg = el.querySelector('svg.marks');
                return svg && +svg.getAttribute('width') > 0
                       && svg.querySelectorAll('g[class*="role-mark"] path').length > 0; })"""
LINKS = [  # (link, what shows first)
    ("/", "claims"),
    ("/lr-sensitivity", "chart"),
    ("/lr-curve", "chart"),
    ("/schedules", "chart"),
    ("/why", "chart"),
    ("/batch-size", "chart"),
    ("/lr-sensitivity?seeds=3", "chart"),
    ("/lr-curve?present=true&quiz=best_lr", "quiz"),
    ("/schedules?quiz=best_schedule", "quiz"),
]


def visit(browser, url: str, first: str) -> tuple[float, float, bool]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    page = ctx.new_page()
    start = time.monotonic()
    page.goto(url)
    if first == "chart":
        page.wait_for_function(FIRST_CHART_JS, timeout=180_000, polling=50)
    elif first == "quiz":
        page.get_by_text("Predict first").wait_for(timeout=180_000)
    else:
        page.get_by_text("The article's three claims").wait_for(timeout=180_000)
    first_s = time.monotonic() - start
    harness.wait_idle(page, 300_000)
    whole = time.monotonic() - start
    dialog = "Page not found" in page.inner_text("body")
    ctx.close()
    return first_s, whole, dialog


def visit_websocket(url: str, link: str) -> tuple[float, float, bool]:
    import asyncio

    from load_cap import session

    page, _, query = link.lstrip("/").partition("?")
    out = asyncio.run(session(url, page, query, 300))
    finished = out["finished"] or float("nan")
    first = out["first_chart"] or finished  # Home: its claim cards, drawn by the script's end
    return first, finished, bool(out["exceptions"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=float, default=10.0, help="seconds after the start")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--taskset", default="", help="run the server on these CPUs, e.g. 0")
    parser.add_argument("--quota", default="", help="the server's CPU quota in cores, e.g. 0.5")
    parser.add_argument("--websocket", action="store_true", help="the server's part, no browser")
    parser.add_argument("--link", action="append", help="only this link (repeatable), e.g. /why")
    parser.add_argument(
        "--browser-cpus",
        default="",
        help="run Chromium (and this script) on these CPUs only, e.g. 1: with --taskset 0 the "
        "browser gets a core of its own, as a visitor's does on their own machine",
    )
    args = parser.parse_args()
    if args.browser_cpus:  # (inherited by Chromium; the server's own --taskset overrides it)
        os.sched_setaffinity(0, {int(c) for c in args.browser_cpus.split(",")})
    from playwright.sync_api import sync_playwright

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    prefix = harness.confined(args.taskset, args.quota)
    client = "a websocket client (the server's part)" if args.websocket else "Chromium"
    print(f"commit {commit}; link opened {args.after:g} s after the server was healthy; {client}")
    print("| link | first content | whole page | 'Page not found' or exception |")
    print("|---|---|---|---|")
    with contextlib.ExitStack() as stack:
        browser = None
        if not args.websocket:
            browser = harness.launch(stack.enter_context(sync_playwright()))
            stack.callback(browser.close)
        for link, first in LINKS:
            if args.link and link not in args.link:
                continue
            runs = []
            for _ in range(args.repeat):
                with harness.serve(prefix=prefix) as (url, _proc, _log):
                    time.sleep(args.after)
                    if browser is None:
                        runs.append(visit_websocket(url, link))
                    else:
                        runs.append(visit(browser, url + link, first))
            f, w = (statistics.median(r[i] for r in runs) for i in (0, 1))
            shown = sum(r[2] for r in runs)
            print(f"| `{link}` | {f:.1f} s | {w:.1f} s | {shown} of {len(runs)} |")


if __name__ == "__main__":
    main()
