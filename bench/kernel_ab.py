"""The fused kernel at other git revisions against the working tree's, side by side in one process.

    python bench/kernel_ab.py HEAD~1 [REV ...]    # e.g. before and after a kernel change

Each revision's ``bnlr/fused/`` is loaded as its own package (revisions where the kernel is a
package with today's ``FusedGroup`` interface; for earlier ones, run that revision's bench); the
batched engine trains the learning-curve grid of ``bench/engines.py`` (288 runs, float32, one
thread) with each in turn, shape by shape, interleaved, ``--repeat`` times (the first
discarded). Printed per version: the kernel's CPU time (the fastest epoch call × epochs, so that
another job's burst does not count) and the whole training's (best repetition), in ms per run,
and per shape.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from engines import grid  # noqa: E402

import bnlr  # noqa: E402
from bnlr import batched, fused  # noqa: E402

SHAPES = [(3, "none"), (4, "none"), (3, "pre"), (4, "pre")]


def version(rev: str, where: str):
    """``bnlr/fused/`` at git revision ``rev``, as a package beside bnlr's (``bnlr.fused_<n>``)."""
    name = f"fused_{len(os.listdir(where))}"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "bnlr/fused"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(os.path.join(where, name), filter="data")
    package = Path(where, name, "bnlr", "fused")
    spec = importlib.util.spec_from_file_location(
        f"bnlr.{name}", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revs", nargs="+")
    parser.add_argument("--repeat", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["BNLR_KERNEL"] = "fused"
    calls: list[float] = []
    with tempfile.TemporaryDirectory() as where:
        versions = {"working tree": fused, **{rev: version(rev, where) for rev in args.revs}}
        for module in versions.values():
            real = module.FusedGroup.epoch

            def timed(self, *a, _real=real, **k):
                start = time.process_time()
                out = _real(self, *a, **k)
                calls.append(time.process_time() - start)
                return out

            module.FusedGroup.epoch = timed
        parts = {
            s: grid((929, 930, 931), 40, "float32", depths=(s[0],), bns=(s[1],)) for s in SHAPES
        }
        kernel = {(v, s): float("inf") for v in versions for s in SHAPES}
        total = dict(kernel)
        for rep in range(args.repeat):
            for s in SHAPES:
                for name, module in versions.items():
                    batched.fused = module
                    calls.clear()
                    start = time.process_time()
                    bnlr.train(parts[s], engine="batched")
                    spent = time.process_time() - start
                    if rep:  # the first repetition compiles
                        kernel[name, s] = min(kernel[name, s], min(calls) * parts[s].epochs)
                        total[name, s] = min(total[name, s], spent)
        batched.fused = fused
    runs = 72 * len(SHAPES)
    print(f"load average {os.getloadavg()[0]:.2f}; ms per run (kernel / whole training)")
    for name in versions:
        k = 1000 * sum(kernel[name, s] for s in SHAPES) / runs
        t = 1000 * sum(total[name, s] for s in SHAPES) / runs
        shapes = " ".join(f"{1000 * kernel[name, s] / 72:.2f}" for s in SHAPES)
        print(f"{name:>14}: kernel {k:.3f}  total {t:.3f}  kernel per shape {shapes}")


if __name__ == "__main__":
    main()
