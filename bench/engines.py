"""The engines side by side on the learning-curve grid, in one process, one thread, CPU time.

The grid: depth 3/4 × BN none/pre (tanh, width 4) × 24 log-spaced lrs in [1e-4, 1] × 3 seeds ×
40 epochs on the article's data (288 runs, float32, the app's dtype). Every contender trains the
same grid shape by shape, back to back, the best of ``--repeat`` (3) for each, so that a change
in the machine's load falls on all alike:

- ``batched``: the batched engine as the app runs it (the fused kernel, ``bnlr.fused``);
- ``batched (torch path)``: the same engine with ``BNLR_KERNEL=torch``;
- ``reference``: one ``nn.Module`` + ``torch.optim`` + scheduler per run.

Also printed: the one-time compile cost of the kernels (the 4 float32 shapes of the grid and
their float64 twins, in this process, into an empty kernel cache) and the time a new process
takes to load them from that cache, the process's peak RSS, and the largest relative float64
difference between the batched and the reference engine over the runs with lr ≤ 0.01 (the
non-chaotic part; at lr ≥ 0.03 a 1e-16 difference grows visibly).

    python bench/engines.py            # the full comparison (~3 minutes on 2 cores)
    python bench/engines.py --quick    # 1 seed, 10 epochs, 1 repetition: a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import bnlr
from bnlr import fused

CONTENDERS = (("batched", "batched", "auto"), ("batched (torch path)", "batched", "torch"),
              ("reference", "reference", "auto"))  # fmt: skip


def grid(seeds, epochs, dtype, lrs=None, depths=(3, 4), bns=("none", "pre")) -> bnlr.Grid:
    return bnlr.Grid(
        depths=depths,
        bns=bns,
        lrs=lrs or bnlr.log_grid(1e-4, 1, 24),
        seeds=seeds,
        epochs=epochs,
        dtype=dtype,
    )


def cpu_seconds(g: bnlr.Grid, engine: str, kernel: str) -> float:
    """CPU time this process spent training ``g`` (other work on the machine disturbs it far
    less than wall time)."""
    os.environ["BNLR_KERNEL"] = kernel
    try:
        start = time.process_time()
        bnlr.train(g, engine=engine)
        return time.process_time() - start
    finally:
        os.environ.pop("BNLR_KERNEL", None)


WARM_LOAD = """
import time
import bnlr
from bnlr import fused
t = time.perf_counter()
for sizes in ((5, 4, 4, 4, 1), (5, 4, 4, 4, 4, 1)):
    for bn in ("none", "pre"):
        for dtype in ("float32", "float64"):
            fused.kernel(fused.Shape(sizes, "tanh", bn, "sgd", dtype))
print(time.perf_counter() - t)
"""


def compile_seconds(seeds) -> tuple[float, float]:
    """Wall time to compile the grid's kernels (float32 and float64) in this process, into an
    empty kernel cache; then the time a new process takes to load them from that cache."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["BNLR_KERNEL_CACHE"] = cache
        try:
            start = time.perf_counter()
            for dtype in ("float32", "float64"):
                bnlr.train(grid(seeds[:1], 1, dtype, lrs=(0.01,)), engine="batched")
            cold = time.perf_counter() - start
            done = subprocess.run(
                [sys.executable, "-c", WARM_LOAD], capture_output=True, text=True, check=True
            )
        finally:
            os.environ.pop("BNLR_KERNEL_CACHE")
    return cold, float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds, epochs, repeat = ((929,), 10, 1) if args.quick else ((929, 930, 931), 40, args.repeat)
    g = grid(seeds, epochs, "float32")
    n = len(g.experiment.runs)
    load = os.getloadavg()
    compiled, loaded = compile_seconds(seeds) if fused.AVAILABLE else (float("nan"),) * 2
    best = dict.fromkeys((name for name, _, _ in CONTENDERS), 0.0)
    for depth in g.depths:
        for bn in g.bns:
            part = grid(seeds, epochs, "float32", depths=(depth,), bns=(bn,))
            for name, engine, kernel in CONTENDERS:
                best[name] += min(cpu_seconds(part, engine, kernel) for _ in range(repeat))
    ref = best["reference"]
    print(f"{datetime.date.today()}, load average {load[0]:.2f} / {load[1]:.2f} (1 / 5 min)")
    print(f"grid: {n} runs × {epochs} epochs, float32, 1 thread, best of {repeat} per shape")
    print(f"{'engine':<22} {'CPU ms/run':>11} {'× reference':>12}")
    for name in best:
        print(f"{name:<22} {1000 * best[name] / n:11.2f} {ref / best[name]:12.1f}")
    print(
        f"batched vs its torch path: {best['batched (torch path)'] / best['batched']:.1f}x; "
        f"kernels compiled in {compiled:.2f} s (4 float32 + 4 float64 shapes, this process), "
        f"loaded from the kernel cache in {loaded:.3f} s (a new process); "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    calm = tuple(lr for lr in g.lrs if lr <= 0.01)
    g64 = grid(seeds, epochs, "float64", calm)
    a = bnlr.train(g64, engine="reference").history
    b = bnlr.train(g64, engine="batched").history
    a["rel"] = np.abs(a["loss"] - b["loss"]) / np.abs(a["loss"])
    print(
        f"float64, {len(g64.experiment.runs)} runs with lr <= 0.01: largest relative difference "
        f"{a['rel'].max():.2e}; by lr (chaos sets in where it jumps):"
    )
    print(a.groupby("lr")["rel"].max().map("{:.1e}".format).to_string())


if __name__ == "__main__":
    main()
