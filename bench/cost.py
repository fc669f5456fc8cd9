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
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import bnlr  # noqa: E402
from bnlr import cost, lrfinder  # noqa: E402

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


def fit(count: int) -> None:
    from scipy.optimize import nnls

    bnlr.train(bnlr.Grid(epochs=2))  # imports and warm-up off the clock
    rng = random.Random(12)
    rows, times = [], []
    names = list(cost.COST_S)
    for i, (exp, rt) in enumerate(calibration(count, rng)):
        print(f"{i:3d} ...", end=" ", flush=True)
        t = cpu(lambda: bnlr.train(exp))
        f = cost.features(exp)
        rows.append([f[k] for k in names])
        times.append(t)
        line = f"{i:3d} runs {len(exp.runs):4d} E {exp.epochs:4d} S {exp.steps_per_epoch:5d}"
        line += f" n {exp.data.n:5d}: train {t:6.3f} s (est {cost.estimate(exp):6.3f})"
        if rt:
            t = cpu(lambda: lrfinder.range_test(exp, lrfinder.RangeTest(num_it=rt)))
            full, base = cost.features(exp, rt), cost.features(exp)
            rows.append([full[k] - base[k] for k in names])
            times.append(t)
            line += f"; range test {rt}: {t:6.3f} s"
        print(line, flush=True)
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
    safety = ratio.max()
    print("COST_S = {")
    for k, v in zip(names, x * safety):
        print(f'    "{k}": {v:.3g},')
    print("}")
    print(f"(scaled by {safety:.2f} so that no calibration point is under-estimated)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--points", type=int, default=60)
    args = parser.parse_args()
    if args.fit:
        fit(args.points)
    else:
        sys.exit(walk())  # noqa: F821 (defined below once the runner exists)
