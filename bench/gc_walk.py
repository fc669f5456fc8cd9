"""What Streamlit's full garbage collection after every script run (runner.postScriptGC) costs as
the caches fill: in one process set up as the server (``ui.server``'s warm-up, the imports frozen
out of the collector, torch on one thread), the time of one ``gc.collect(2)`` (the best of 3, CPU)
and the objects it walks, after every page's defaults, then after more settings.

    python bench/gc_walk.py
"""

from __future__ import annotations

import collections
import gc
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import app_timing  # noqa: E402

from ui import server  # noqa: E402


def walk() -> str:
    times = []
    for _ in range(3):
        start = time.process_time()
        gc.collect(2)
        times.append(time.process_time() - start)
    return f"{min(times) * 1e3:.1f} ms, {len(gc.get_objects())} objects"


def visit(path: str, **params) -> None:
    at = AppTest.from_file(str(ROOT / path), default_timeout=600)
    for key, value in params.items():
        at.query_params[key] = value
    app_timing.checked(at.run())
    app_timing.settle()


def main() -> None:
    app_timing.scan_components_once()
    app_timing.compile_scripts_once()
    torch.set_num_threads(1)
    gc.freeze()
    with mock.patch.object(server.claims_jobs, "warm_claims"):  # Home's claims: by its visit
        server.warm_up()
    print("after the warm-up:", walk())
    for path, _ in app_timing.PAGES.values():
        visit(path)
    print("after every page's defaults:", walk())
    lists = ("0.01, 0.1, 0.5", "0.005, 0.05, 0.5, 1", "0.001, 0.01, 0.1", "0.02, 0.2")
    for seeds in (1, 2, 3):
        for lrs in lists:
            visit("app_pages/lr_sensitivity.py", seeds=str(seeds), lrs=lrs)
    print("after 12 LR sensitivity settings more:", walk())
    for n in (8, 12, 20):
        visit("app_pages/lr_curve.py", lr_n=str(n))
    print("after 3 LR curve settings more:", walk())
    kinds = collections.Counter(type(o).__name__ for o in gc.get_objects())
    print("most common:", ", ".join(f"{k} {v}" for k, v in kinds.most_common(6)))


if __name__ == "__main__":
    main()
