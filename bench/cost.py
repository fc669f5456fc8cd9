"""The cost cap, calibrated and checked: estimate beside measured time on this machine.

    python bench/cost.py --fit      # measure calibration trainings, fit bnlr.cost.COST_S
    python bench/cost.py            # the corner walk: each page at the corners of its controls

``--fit`` trains ~60 experiments spread over the control space (one torch thread, CPU time of
this process, torch warmed first) and range tests, fits the constants of ``bnlr.cost`` by
non-negative least squares on the relative error, scales them so that no point is
under-estimated, and prints them to paste into ``bnlr/cost.py``.

The corner walk opens every page in Streamlit's AppTest (the whole script: widgets, the cap,
training through ui.runner, analysis, chart specs) with one control at its extreme (widest,
deepest, most epochs, most seeds, smallest batch, most samples, longest lr list, longest range
test, everything at once) and the rest at the page's defaults; where that is over the cap, the
epochs are lowered to the largest the cap accepts, so each row is the heaviest accepted request
in its corner. It prints the estimate beside the measured CPU and wall time, and the worst.
Exits non-zero if an accepted request took more than the cap.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import bnlr  # noqa: E402
from bnlr import cost, fused, lrfinder  # noqa: E402
from tests.apptest import scan_components_once  # noqa: E402

torch.set_num_threads(1)


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def calibration(count: int, rng: random.Random):
    """Yields (experiment, range test batches) spread over the controls, each ~0.05–3 s."""
    made = 0
    while made < count:
        n = rng.choice([100, 300, 1000, 3000, 10000, 20000])
        n_train = round(n * 0.7)
        batch = min(n_train, rng.choice([1, 2, 5, 16, 50, 50, 200, 1000, 20000]))
        if n_train % batch == 1:
            continue
        try:
            g = bnlr.Grid(
                depths=tuple(sorted(rng.sample(range(1, 9), rng.choice([1, 1, 2, 4])))),
                width=rng.choice([1, 4, 4, 16, 32, 64]),
                activations=tuple(rng.sample(["tanh", "relu", "sigmoid"], rng.choice([1, 1, 2]))),
                bns=tuple(rng.sample(["none", "pre", "post"], rng.choice([1, 2, 3]))),
                lrs=tuple(10 ** -(1 + k / 4) for k in range(rng.choice([1, 2, 4, 12]))),
                seeds=tuple(range(929, 929 + rng.choice([1, 2, 5, 10, 20]))),
                epochs=rng.choice([1, 3, 10, 40, 100, 300]),
                batch_size=batch,
                data=bnlr.DataConfig(n=n),
            )
        except ValueError:
            continue
        est = cost.estimate(g.experiment)
        if 0.03 < est < 3:
            made += 1
            rt = rng.choice([0, 0, 20, 100, 500])
            nets = len(g.experiment.runs) // len(g.lrs)
            small = g.batch_size < 2 and g.bns != ("none",)  # BatchNorm needs 2 samples
            yield g.experiment, rt if nets * rt <= 4000 and not small else 0


def fit(count: int, save: str) -> None:
    bnlr.train(bnlr.Grid(epochs=2))  # imports and warm-up off the clock
    rng = random.Random(12)
    rows, times = [], []
    names = list(cost.COST_S)
    for i, (exp, rt) in enumerate(calibration(count, rng)):
        print(f"{i:3d} ...", end=" ", flush=True)
        f = cost.features(exp)  # before training: whether its kernels are compiled yet
        est = cost.estimate(exp)
        t = cpu(lambda: bnlr.train(exp))
        rows.append([f[k] for k in names])
        times.append(t)
        line = f"{i:3d} runs {len(exp.runs):4d} E {exp.epochs:4d} S {exp.steps_per_epoch:5d}"
        line += f" n {exp.data.n:5d}: train {t:6.3f} s (est {est:6.3f})"
        if rt:  # the plain loop of the calibration probe (rt_* terms), net by net
            test = lrfinder.RangeTest(num_it=rt)
            nets = {(r.model, r.optimizer, r.seed): r for r in exp.runs}.values()
            t = cpu(lambda: [lrfinder.run_range_test(r, exp, test) for r in nets])
            loop = cost.loop_features(exp, rt)
            rows.append([loop.get(k, 0.0) for k in names])
            times.append(t)
            line += f"; range test {rt}: {t:6.3f} s"
        print(line, flush=True)
    Path(save).write_text(json.dumps({"names": names, "rows": rows, "times": times}))
    solve(names, rows, times)


def solve(names, rows, times) -> None:
    from scipy.optimize import nnls

    A, b = np.array(rows), np.array(times)
    w = 1 / np.maximum(b, 0.02)  # relative error, short runs not over-weighted
    scale = A.max(axis=0)
    scale[scale == 0] = 1
    x, _ = nnls((A / scale) * w[:, None], b * w)
    x = x / scale
    est = A @ x
    ratio = b / est
    print(
        f"fit: relative error median {np.median(np.abs(ratio - 1)):.2f}, "
        f"worst under-estimate ×{ratio.max():.2f}, worst over-estimate ×{1 / ratio.min():.2f}"
    )
    worst = np.argsort(ratio)[::-1][:5]
    print(
        "most under-estimated points (row: measured / estimate):",
        [f"{i}: {ratio[i]:.2f}" for i in worst],
    )
    safety = ratio.max()
    print("COST_S = {")
    for k, v in zip(names, x * safety):
        print(f'    "{k}": {v:.3g},')
    print("}")
    print(f"(scaled by {safety:.2f} so that no calibration point is under-estimated)")


PAGES = {
    "LR sensitivity": "app_pages/lr_sensitivity.py",
    "LR learning curve": "app_pages/lr_curve.py",
    "Scheduler playground": "app_pages/scheduler_playground.py",
    "Why it happens": "app_pages/why.py",
}
LR_LIST = ("LR sensitivity", "Why it happens")  # the pages with an lr list control
ALL_DEPTHS = [str(d) for d in range(1, 9)]
TWELVE_LRS = ",".join(f"{10 ** -(k / 4):.4g}" for k in range(12))
CORNERS = {  # one control at its extreme, the rest at the page's defaults
    "defaults": {},
    "widest": {"width": "64"},
    "deepest": {"depths": ["8"]},
    "every depth": {"depths": ALL_DEPTHS},
    "most epochs": {"epochs": "2000"},
    "most seeds": {"seeds": "10"},
    "smallest batch (BN: 2)": {"batch": "2"},
    "smallest batch, no BN": {"batch": "1", "bn": ["no BN"]},
    "most samples": {"n": "20000"},
    "longest lr list": {"lrs": TWELVE_LRS, "lr_n": "64"},
    "every model": {
        "depths": ALL_DEPTHS,
        "act": ["tanh", "relu", "sigmoid", "leaky_relu"],
        "bn": ["no BN", "BN pre", "BN post"],
    },
    "longest range test": {"num_it": "500"},
    "widest, deepest, most seeds": {"width": "64", "depths": ["8"], "seeds": "10"},
    "smallest batch, most samples": {"batch": "1", "n": "20000", "bn": ["no BN"]},
}
BN = {"no BN": "none", "BN pre": "pre", "BN post": "post"}


def grid_of(page: str, p: dict) -> tuple[bnlr.Grid, int]:
    """Returns the grid a page trains for URL parameters ``p``, and its range test batches."""
    kw = dict(
        depths=tuple(int(d) for d in p.get("depths", ["3", "4"])),
        width=int(p.get("width", 4)),
        activations=tuple(p.get("act", ["tanh"])),
        bns=tuple(BN[b] for b in p.get("bn", ["no BN", "BN pre"])),
        epochs=int(p.get("epochs", 40)),
        batch_size=int(p.get("batch", 50)),
        seeds=tuple(range(929, 929 + int(p.get("seeds", 2 if "curve" in page else 1)))),
        data=bnlr.DataConfig(n=int(p.get("n", 1000))),
    )
    if page in LR_LIST:
        lrs = tuple(float(v) for v in p.get("lrs", "0.1,0.03,0.01,0.005").split(","))
        return bnlr.Grid(lrs=lrs, **kw), 0
    if "curve" in page:
        return bnlr.Grid(lrs=bnlr.log_grid(1e-4, 1.0, int(p.get("lr_n", 16))), **kw), int(
            p.get("num_it", 100)
        )
    # the playground: the constant baseline and its three default schedules, at lr 0.05
    return bnlr.Grid(lrs=(0.05,), schedules=("constant", "cosine", "onecycle", "linear"), **kw), 0


def page_cost(page: str, grid: bnlr.Grid, rt: int) -> tuple[float, bool]:
    """Returns (estimated seconds of the page's trainings, accepted?) as ui.runner decides."""
    from ui import runner, why_jobs

    if "Why" in page:  # its own estimate: the runs and their twins, and a Hessian per epoch
        secs = why_jobs.physics_estimate(grid.experiment)
        return secs, secs <= runner.COST_CAP_S
    factor = cost.PAGE_FACTOR["schedules"] if "playground" in page else 1.0
    try:
        runner.check_cost(grid.experiment, rt, factor)
    except ValueError:
        return runner.estimate(grid.experiment, rt, factor), False
    secs = runner.estimate(grid.experiment, rt, factor)
    if "sensitivity" in page:
        more = runner.replication_cost(grid)
        if secs + more <= runner.COST_CAP_S:
            secs += more
    return secs, True


def heaviest_accepted(page: str, p: dict) -> dict | None:
    """Returns ``p`` with the epochs lowered to the most the cap accepts (None: none does)."""
    grid, rt = grid_of(page, p)
    if page_cost(page, grid, rt)[1]:
        return p
    low, high = 0, grid.epochs
    while high - low > 1:
        mid = (low + high) // 2
        if page_cost(page, *grid_of(page, {**p, "epochs": str(mid)}))[1]:
            low = mid
        else:
            high = mid
    return {**p, "epochs": str(low)} if low else None


def measure(path: str, params: dict) -> tuple[float, float, int, list[str]]:
    """Opens a page in AppTest with an empty cache: (CPU s, wall s, trainings, errors)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from ui import runner

    st.cache_data.clear()
    runner.clear_cache()
    calls = []
    real = bnlr.train

    def counting(experiment, *args, **kwargs):
        calls.append(1)
        return real(experiment, *args, **kwargs)

    bnlr.train = counting
    try:
        at = AppTest.from_file(str(ROOT / path), default_timeout=900)
        for k, v in params.items():
            at.query_params[k] = v
        c, w = time.process_time(), time.perf_counter()
        at.run()
        cpu_s, wall = time.process_time() - c, time.perf_counter() - w
    finally:
        bnlr.train = real
    problems = [e.message for e in at.exception] + [e.value[:90] for e in at.error]
    return cpu_s, wall, len(calls), problems


def walk(only: list[str]) -> int:
    from bnlr import claims
    from ui import runner

    bnlr.train(bnlr.Grid(epochs=2))  # imports and warm-up off the clock
    measure(PAGES["LR sensitivity"], {"epochs": "1", "lrs": "0.1"})
    fused.wait_for_compiles()  # the server's start-up compiles (the default shapes), off the clock
    scan_components_once()  # and its one scan of installed components (AppTest repeats it)
    print(
        f"cap {runner.COST_CAP_S:g} s; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores; CPU = this process (page script + training threads)"
    )
    print(
        f"{'page':21s} {'corner':29s} {'settings':58s} {'est s':>6s} {'CPU s':>6s} "
        f"{'wall s':>6s} trainings"
    )
    worst, over = (0.0, ""), []
    for page, path in PAGES.items():
        if only and page not in only:
            continue
        for corner, p in CORNERS.items():
            if corner == "longest range test" and "curve" not in page:
                continue
            p = {k: v for k, v in p.items() if not (k == "lrs" and page not in LR_LIST)}
            p = {k: v for k, v in p.items() if not (k == "lr_n" and "curve" not in page)}
            asked = p
            p = heaviest_accepted(page, p)
            if p is None:
                est, _ = page_cost(page, *grid_of(page, asked))
                cpu_s, wall, n, problems = measure(path, asked)
                print(
                    f"{page:21s} {corner:29s} {'refused at any epochs':58s} {est:6.1f} "
                    f"{cpu_s:6.2f} {wall:6.2f} {n} (refused: {bool(problems)})"
                )
                continue
            est, _ = page_cost(page, *grid_of(page, p))
            cpu_s, wall, n, problems = measure(path, p)
            shown = " ".join(
                f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in p.items()
            )
            print(
                f"{page:21s} {corner:29s} {shown[:58]:58s} {est:6.2f} {cpu_s:6.2f} "
                f"{wall:6.2f} {n}" + (f"  {problems}" if problems else ""),
                flush=True,
            )
            # the Why page's Hessians run on every core: its CPU is ~1.5x its wall time, and
            # the cap is on the wait; every other page trains and draws on one core
            spent = wall if "Why" in page else cpu_s
            worst = max(worst, (spent, f"{page}, {corner}: {shown}"))
            if spent > runner.COST_CAP_S:
                over.append(f"{page}, {corner}")
    if only and "Home" not in only:
        print(f"worst accepted request: {worst[0]:.2f} s ({worst[1]})")
        print("OK" if not over else f"OVER THE CAP: {over}")
        return 1 if over else 0
    runs = claims.claim_runs(claims.seeds_from(929, claims.REPLICATION_SEEDS))
    est = sum(runner.estimate(g.experiment) for g in (runs.sensitivity, runs.curve, runs.schedules))
    cpu_s, wall, n, problems = measure("navigation.py", {})
    print(
        f"{'Home':21s} {'fixed: 3 claims × 20 seeds':29s} {'(no controls)':58s} {est:6.2f} "
        f"{cpu_s:6.2f} {wall:6.2f} {n}" + (f"  {problems}" if problems else "")
    )
    print(f"worst accepted request: {worst[0]:.2f} s ({worst[1]})")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("OK" if not over else f"OVER THE CAP: {over}")
    return 1 if over else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--save", default="/tmp/bnlr-cost-points.json")
    parser.add_argument("--pages", nargs="*", default=[], help="walk only these pages")
    parser.add_argument("--refit", help="fit again from a file --fit saved")
    args = parser.parse_args()
    if args.refit:
        saved = json.loads(Path(args.refit).read_text())
        solve(saved["names"], saved["rows"], saved["times"])
    elif args.fit:
        fit(args.points, args.save)
    else:
        sys.exit(walk(args.pages))
