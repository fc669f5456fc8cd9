"""The server's resident memory: once each page drew its defaults, and after many distinct settings.

    python bench/memory.py [--settings 50]

Starts a fresh server (the README's command, 127.0.0.1, a free port), opens every page with its
defaults in Debian's Chromium, one after another, and reads the server's RSS from /proc; then opens
the LR sensitivity page with `--settings` distinct settings (URL parameters; each is a new training
and a new cache entry) and reads it again. The training cache is bounded (ui/runner.py,
CACHE_ENTRIES), so the second figure must level off rather than grow with every setting. Exits
non-zero if the first figure is over the budget (Community Cloud's smallest tier is 1 GB; we keep
700 MB).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402
from load import CHARTS, HOOKS, PAGE, settings, trainings  # noqa: E402
from pages_spec import PAGES  # noqa: E402

BUDGET_MB = 700


def rss_mb(pid: int) -> tuple[float, float]:
    """Returns (current, peak) resident memory of a process in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def visit(browser, url: str, charts: int) -> None:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(url)
    harness.wait_drawn(page, charts, timeout=300_000)
    assert not harness.exceptions(page), f"exception at {url}"
    ctx.close()


def main(n_settings: int, settle: int) -> int:
    from playwright.sync_api import sync_playwright

    with harness.serve(env=HOOKS) as (url, proc, log), sync_playwright() as pw:
        browser = harness.launch(pw)
        harness.warm_up(browser, url)
        idle, _ = rss_mb(proc.pid)
        print(f"server started, no session yet: {idle:.0f} MB")
        for spec in PAGES:
            visit(browser, f"{url}/{spec.path}", spec.charts)
        defaults, peak = rss_mb(proc.pid)
        print(
            f"after every page drew its defaults ({len(PAGES)} pages): "
            f"RSS {defaults:.0f} MB (peak {peak:.0f} MB)"
        )
        before = len(trainings(log))
        for i, query in enumerate(settings(n_settings), 1):
            visit(browser, f"{url}/{PAGE}?{query}", CHARTS)
            if i % 10 == 0:
                now, peak = rss_mb(proc.pid)
                print(f"  after {i} distinct settings: RSS {now:.0f} MB (peak {peak:.0f} MB)")
        now, peak = rss_mb(proc.pid)
        print(
            f"after {n_settings} distinct settings ({len(trainings(log)) - before} trainings): "
            f"RSS {now:.0f} MB (peak {peak:.0f} MB)"
        )
        browser.close()
        if (
            settle
        ):  # closed tabs keep their session (and its last result) until Streamlit's disconnect TTL
            time.sleep(settle)
            now, peak = rss_mb(proc.pid)
            print(f"{settle} s later (disconnected sessions expired): RSS {now:.0f} MB")
    ok = defaults < BUDGET_MB
    print("OK" if ok else f"FAILED: {defaults:.0f} MB after the defaults, budget {BUDGET_MB} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=int, default=50)
    parser.add_argument(
        "--settle",
        type=int,
        default=150,
        help="seconds to wait at the end (server.disconnectedSessionTTL is 120 s); 0 to skip",
    )
    args = parser.parse_args()
    sys.exit(main(args.settings, args.settle))
