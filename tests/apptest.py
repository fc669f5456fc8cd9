"""One page of the app in Streamlit's AppTest, for the app tests."""

import json
from pathlib import Path

from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest, app_test, local_script_runner

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


def compile_scripts_once() -> None:
    """Makes every AppTest share one cache of compiled scripts, as a server's sessions do.

    A server compiles each script (the app's and each page's) once, in its ``Runtime``'s one
    ``ScriptCache``; AppTest makes a new cache for every run, so every rerun parsed the page,
    rewrote it for "magic" and compiled it again: two thirds of a long page's cached rerun
    (Why's: 30 ms, 9.5 ms with one cache), a cost no visitor pays. Sharing it keeps that out
    of page timings (bench/app_timing.py) and out of the suite.
    """
    if getattr(app_test, "_bnlr_shared_scripts", False):
        return
    scripts = ScriptCache()
    app_test.ScriptCache = local_script_runner.ScriptCache = lambda: scripts
    app_test._bnlr_shared_scripts = True


def page(name: str, **params) -> AppTest:
    """Runs ``app_pages/<name>`` with these URL parameters."""
    at = AppTest.from_file(str(ROOT / "app_pages" / name), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def charts(at: AppTest) -> list[dict]:
    """The Vega-Lite specs the page drew."""
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
