"""A classroom's load on one local server: many browsers at once, one training, the right numbers.

    python bench/load.py [--sessions 20] [--settings 10]

1. Starts a fresh server (the README's command, 127.0.0.1, a free port) with bench/hooks on
   PYTHONPATH, which logs one line per ``bnlr.train`` call (no hook in the app itself).
2. ``--sessions`` browser contexts of one Chromium open the default LR sensitivity page at once.
   Every one must draw all its charts without an exception; prints the time from the first
   request to the first and to the last session with every chart drawn, and how many trainings
   the server ran (1 = the shared ``st.cache_data`` trained once for everybody).
3. ``--settings`` sessions open the page with different settings (URL parameters) at once, on a
   fresh server; then each setting is opened alone, one after another, on another fresh server.
   Every session must see exactly what it sees alone: the same chart (geometry and text of every
   mark) and the same numbers in the page's CSV download.
Exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import harness  # noqa: E402

HOOKS = {"PYTHONPATH": str(ROOT / "bench" / "hooks")}
PAGE = "lr-sensitivity"
CHARTS = 3  # charts the page draws (loss curves, sensitivity bars, run grid)
TIMEOUT = 600_000  # ms; 20 sessions on 2 cores


def settings(count: int) -> list[str]:
    """Returns `count` URL queries of the LR sensitivity page: different experiments of the same
    size (the article's grid with its smallest lr moved), so memory that grows with them is not
    just bigger results."""
    return [f"lrs=0.1,0.03,0.01,{0.002 + 0.0001 * i:.4f}" for i in range(count)]


async def numbers(page) -> str:
    """Returns the page's CSV download of the loss per epoch (every run, every epoch, full
    precision)."""
    button = page.get_by_role("button", name="Loss per epoch (CSV)").first
    for attempt in range(
        3
    ):  # the click reruns the page, which may replace the file while it downloads
        await button.wait_for(timeout=TIMEOUT)
        try:
            async with page.expect_download() as info:
                await button.click()
            download = await info.value
            return Path(await download.path()).read_text()
        except Exception:
            if attempt == 2:
                raise
            await page.wait_for_function(
                harness.ALL_DRAWN_JS, arg=CHARTS, timeout=TIMEOUT, polling=100
            )


async def open_session(browser, url: str, t0: float, csv: bool = True) -> dict:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    try:
        page = await ctx.new_page()
        await page.goto(url, wait_until="commit", timeout=TIMEOUT)
        await page.wait_for_function(harness.ALL_DRAWN_JS, arg=CHARTS, timeout=TIMEOUT, polling=100)
        drawn = time.monotonic() - t0
        errors = await page.locator(harness.EXCEPTION).all_inner_texts()
        sig = [c["sig"] for c in await page.evaluate(harness._CHARTS_JS, harness.CHART)]
        return {
            "drawn": drawn,
            "errors": errors,
            "sig": sig,
            "csv": await numbers(page) if csv else "",
        }
    finally:
        await ctx.close()


async def warm_up(browser, url: str) -> None:
    """The teacher opens the link first (see harness.warm_up: Streamlit's first-run
    page-not-found dialog)."""
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await page.goto(url)
    await page.wait_for_function(harness.ALL_DRAWN_JS, arg=0, timeout=TIMEOUT)
    await ctx.close()


async def at_once(browser, urls: list[str], csv: bool = True) -> list[dict]:
    t0 = time.monotonic()
    return await asyncio.gather(*(open_session(browser, u, t0, csv) for u in urls))


def cpu_seconds(pid: int) -> float:
    """Returns the user + system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trainings(log: Path) -> list[str]:
    return [
        line.split()[-1]
        for line in log.read_text().splitlines()
        if line.startswith("bnlr-bench train")
    ]


async def main(sessions: int, n_settings: int) -> int:
    from playwright.async_api import async_playwright

    ok = True
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=harness.CHROMIUM, args=harness.CHROMIUM_ARGS
        )

        with harness.serve(env=HOOKS) as (url, proc, log):
            await warm_up(browser, url)
            cpu0, load0 = cpu_seconds(proc.pid), os.getloadavg()[0]
            results = await at_once(browser, [f"{url}/{PAGE}"] * sessions, csv=False)
            cpu = cpu_seconds(proc.pid) - cpu0
            times = sorted(r["drawn"] for r in results)
            errors = [r["errors"] for r in results if r["errors"]]
            runs = trainings(log)
            same = len({tuple(r["sig"]) for r in results}) == 1
            print(
                f"{sessions} sessions at once, default {PAGE}: first chart drawn {times[0]:.1f} s, "
                f"last {times[-1]:.1f} s; sessions with an exception: {len(errors)}; "
                f"trainings run by the server: {len(runs)} ({len(set(runs))} distinct); "
                f"all sessions drew the same chart: {same}; server CPU time {cpu:.1f} s; "
                f"load average before/after {load0:.1f}/{os.getloadavg()[0]:.1f} "
                f"on {os.cpu_count()} cores"
            )
            ok &= not errors and len(runs) == len(set(runs)) and same

        queries = settings(n_settings)
        with harness.serve(env=HOOKS) as (url, _proc, log):
            await warm_up(browser, url)
            t0 = time.monotonic()
            together = await at_once(browser, [f"{url}/{PAGE}?{q}" for q in queries])
            wall = time.monotonic() - t0
            runs = trainings(log)
        with harness.serve(env=HOOKS) as (url, _proc, log):
            await warm_up(browser, url)
            alone = [(await at_once(browser, [f"{url}/{PAGE}?{q}"]))[0] for q in queries]
        mismatched = [
            q
            for q, a, b in zip(queries, together, alone)
            if (a["sig"], a["csv"]) != (b["sig"], b["csv"])
        ]
        for q, a, b in zip(queries, together, alone):
            if a["csv"] != b["csv"]:
                la, lb = a["csv"].splitlines(), b["csv"].splitlines()
                diff = [(x, y) for x, y in zip(la, lb) if x != y] or [(len(la), len(lb))]
                print(
                    f"  {q}: {len(diff)} CSV lines differ, "
                    f"e.g. together {diff[0][0]!r} alone {diff[0][1]!r}"
                )
            elif a["sig"] != b["sig"]:
                print(f"  {q}: same CSV, different chart geometry")
        errors = [r["errors"] for r in together + alone if r["errors"]]
        distinct = len({tuple(r["sig"]) for r in together})
        print(
            f"{n_settings} different settings at once: all drawn in {wall:.1f} s; "
            f"trainings {len(runs)}; "
            f"distinct charts {distinct}; CSV compared: {all(r['csv'] for r in together)}; "
            f"sessions that differ from the same setting alone: {mismatched or 'none'}; "
            f"exceptions: {len(errors)}"
        )
        ok &= not mismatched and not errors and distinct == n_settings
        await browser.close()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--settings", type=int, default=10)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.sessions, args.settings)))
