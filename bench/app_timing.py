"""Cold and cached render times of every page at its default settings (the article's setup).

Each page runs in Streamlit's AppTest (the whole script: widgets, training through ui.runner's
st.cache_data, metrics, chart specs). *Cold* = empty cache, so the page trains; *cached* = the
same settings again, served from the cache. torch and bnlr are imported (and warmed by one
tiny training) before the clock starts, and the scan of installed components a server does once
at start is shared by all runs (AppTest would repeat it, ~0.8 s, for each): this is the time a
user waits on a running server.

    python bench/app_timing.py [--repeat 3]

Prints one line per page with the median and min over the repeats, and the machine's load
average (2 cores are shared: a busy machine makes cold numbers slower).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

import bnlr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bnlr import fused  # noqa: E402
from tests.apptest import scan_components_once  # noqa: E402
from ui import runner  # noqa: E402

PAGES = {  # Home is the entry script's default page (its links need the navigation)
    "Home": "navigation.py",
    "LR sensitivity": "app_pages/lr_sensitivity.py",
    "LR learning curve": "app_pages/lr_curve.py",
    "Scheduler playground": "app_pages/scheduler_playground.py",
    "Why it happens": "app_pages/why.py",
}


def render(path: str) -> float:
    t = time.perf_counter()
    at = AppTest.from_file(str(ROOT / path), default_timeout=600).run()
    elapsed = time.perf_counter() - t
    if at.exception:
        raise RuntimeError(f"{path}: {at.exception[0].message}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bnlr.train(bnlr.Grid(epochs=1))  # imports and first-call warm-up, off the clock
    scan_components_once()  # a server scans installed components once, at start
    fused.wait_for_compiles()  # and compiles the default pages' kernels in its first seconds
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    for name, path in PAGES.items():
        cold, cached = [], []
        for _ in range(args.repeat):
            st.cache_data.clear()
            runner.clear_cache()
            cold.append(render(path))
            cached.append(render(path))
        print(
            f"{name:18s} cold {statistics.median(cold):5.2f} s (min {min(cold):.2f})   "
            f"cached {statistics.median(cached):5.2f} s (min {min(cached):.2f})   "
            f"[{args.repeat} repeats]"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
