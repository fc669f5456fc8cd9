"""One page of the app in Streamlit's AppTest, for the app tests."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest, app_test

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # 2 shared cores: a cold run trains and imports torch


def scan_components_once() -> None:
    """Makes every AppTest share one scan of the installed packages for Streamlit components.

    A server scans once when it starts (``Runtime.__init__``); AppTest scans again for every
    instance, ~0.8 s here (it reads the metadata of every installed distribution). Sharing it
    keeps that start-up cost out of page timings (bench/app_timing.py) and out of the suite.
    """
    if getattr(app_test, "_bnlr_shared_scan", False):
        return
    manager = app_test.BidiComponentManager()
    manager.discover_and_register_components(start_file_watching=False)
    manager.discover_and_register_components = lambda **_: None
    app_test.BidiComponentManager = lambda: manager
    app_test._bnlr_shared_scan = True


def page(name: str, **params) -> AppTest:
    """Runs ``app_pages/<name>`` with these URL parameters."""
    at = AppTest.from_file(str(ROOT / "app_pages" / name), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def charts(at: AppTest) -> list[dict]:
    """The Vega-Lite specs the page drew."""
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
