"""Regenerates docs/screenshots/<page>-<light|dark>.png (and extra shots) from the running app,
and <page>-present.png: presentation mode's first screen on a 1280×720 projector.

    python scripts/screenshots.py            # every page, light and dark
    python scripts/screenshots.py lr-curve   # only pages whose name or path contains "lr-curve"

Starts the app with the README's command on a free 127.0.0.1 port, opens each page in Debian's
Chromium with the system colour scheme set to light, then dark (Streamlit follows it), waits until
every chart is drawn, and saves a full-page screenshot. Exits non-zero if a page shows an exception.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import harness  # noqa: E402
from pages_spec import PAGES  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}
MAX_HEIGHT = 2400  # px; a longer page is cut there (the README shows the top of each page)
EXTRA = [  # the pages with several seeds (bands and verdicts over seeds)
    ("lr_sensitivity-seeds", "lr-sensitivity", "seeds=5", "light"),
    ("lr_curve-seeds", "lr-curve", "seeds=3", "light"),
    ("schedules-seeds", "schedules", "seeds=3&opt=Adam&lr0=0.01", "light"),
]
PROJECTOR = {"width": 1280, "height": 720}  # presentation mode: the first screen of a projector
CLASSROOM = [  # (name, path, query, charts drawn): the first screen only, as the class sees it
    *[(f"{s.name}-present", s.path, "present=true", s.charts) for s in PAGES],
    ("lr_curve-quiz", "lr-curve", "present=true&quiz=best_lr", 0),
]


def main(only: str = "") -> int:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    shots = [
        (f"{s.name}-{scheme}", s.path, "", scheme, s.charts)
        for s in PAGES
        for scheme in ("light", "dark")
    ]
    shots += [(name, path, query, scheme, 1) for name, path, query, scheme in EXTRA]
    shots = [s for s in shots if only in s[0] or only in s[1]]
    classroom = [s for s in CLASSROOM if only in s[0] or only in s[1]]
    failed = 0
    with harness.serve() as (url, _proc, log), sync_playwright() as pw:
        browser = harness.launch(pw)
        harness.warm_up(browser, url)
        for name, path, query, scheme, charts in shots:
            ctx = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
            page = ctx.new_page()
            page.goto(f"{url}/{path}{'?' + query if query else ''}")
            harness.wait_drawn(page, charts)
            harness.fit_to_content(page, VIEWPORT["width"], max_height=MAX_HEIGHT)
            harness.wait_drawn(
                page, charts
            )  # charts fit their container: let them redraw at the new size
            page.wait_for_timeout(500)  # toasts and transitions settle
            errors = harness.exceptions(page)
            page.screenshot(path=OUT / f"{name}.png", full_page=True)
            print(f"{name}.png" + (f"  EXCEPTION: {errors}" if errors else ""))
            failed += bool(errors)
            ctx.close()
        for name, path, query, charts in classroom:
            ctx = browser.new_context(viewport=PROJECTOR, color_scheme="light")
            page = ctx.new_page()
            page.goto(f"{url}/{path}?{query}")
            harness.wait_drawn(page, charts)
            page.wait_for_timeout(800)  # charts sized to their container settle
            errors = harness.exceptions(page)
            page.screenshot(path=OUT / f"{name}.png")
            print(f"{name}.png" + (f"  EXCEPTION: {errors}" if errors else ""))
            failed += bool(errors)
            ctx.close()
        browser.close()
        if failed:
            print(log.read_text()[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
