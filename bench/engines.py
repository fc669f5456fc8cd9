"""Batched vs reference engine on the learning-curve grid, side by side in one process, one thread.

The grid: depth 3/4 × BN none/pre (tanh, width 4) × 24 log-spaced lrs in [1e-4, 1] × 3 seeds ×
40 epochs on the article's data (288 runs). Prints ms per run for each engine (float32, the app's
dtype), their ratio, and the largest relative float64 difference between the engines over the
runs with lr ≤ 0.01 (the non-chaotic part; at lr ≥ 0.03 a 1e-16 difference grows visibly).

    python bench/engines.py            # the full comparison (~3 minutes on 2 cores)
    python bench/engines.py --quick    # 1 seed, 20 epochs: a smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import bnlr


def grid(seeds, epochs, dtype, lrs=None) -> bnlr.Grid:
    return bnlr.Grid(
        depths=(3, 4),
        bns=("none", "pre"),
        lrs=lrs or bnlr.log_grid(1e-4, 1, 24),
        seeds=seeds,
        epochs=epochs,
        dtype=dtype,
    )


def timed(g: bnlr.Grid, engine: str) -> tuple[float, float]:
    """Returns (wall s, CPU s) of training ``g``; CPU time is what this process itself spent,
    so other work on a shared machine disturbs it far less than wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    bnlr.train(g, engine=engine)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds, epochs = ((929,), 20) if args.quick else ((929, 930, 931), 40)
    g = grid(seeds, epochs, "float32")
    n = len(g.experiment.runs)
    timed(grid((929,), 2, "float32"), "batched")  # warm-up
    # Shape by shape, the two engines back to back, so that a change in the machine's load
    # falls on both alike.
    ref, fast = np.zeros(2), np.zeros(2)
    for depth in g.depths:
        for bn in g.bns:
            part = bnlr.Grid(depths=(depth,), bns=(bn,), lrs=g.lrs, seeds=seeds, epochs=epochs)
            fast += min((timed(part, "batched") for _ in range(2)), key=lambda t: t[1])
            ref += timed(part, "reference")
    print(f"grid: {n} runs × {epochs} epochs, float32, 1 thread")
    print(f"{'engine':<10} {'wall s':>8} {'CPU s':>8} {'CPU ms/run':>11}")
    print(f"{'reference':<10} {ref[0]:8.2f} {ref[1]:8.2f} {1000 * ref[1] / n:11.2f}")
    print(f"{'batched':<10} {fast[0]:8.2f} {fast[1]:8.2f} {1000 * fast[1] / n:11.2f}")
    print(f"speed-up: {ref[1] / fast[1]:.1f}x in CPU time ({ref[0] / fast[0]:.1f}x in wall time)")
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
