"""Every process-wide setting of the app's server, made once by ``start()`` as the server starts
(streamlit_app.py's lifespan hook).

Importing a module of the app changes nothing; this does, once per process:

- **Warmed up at start** (``warm_up``, a background thread at lower priority): the cost model
  calibrated on this host (``bnlr.cost.calibrate``: a probe of at most a second of CPU, so the
  cap means the same seconds on any CPU), the pages' imports (frozen out of the garbage
  collector's walks, as the server's own are at ``start``), numba's first call once no
  training runs (it compiles on a new deployment), the default kernels, then Home's claims as
  background jobs that never go ahead of a visitor's training.
- **torch threads: 1.** The networks are tiny: intra-op threads buy nothing, and on a busy
  2-core server their spin-waiting made training about 50× slower. Parallelism comes from the
  queue's slots (one per usable CPU) and the Hessians' threads instead.
- **Kernels compile in the background** (``bnlr.fused.COMPILER``): a network shape new to the
  server trains on the batched engine's torch path while its kernel compiles, and only when no
  training has run for ``QUIET_S`` and no page is being built (``quiet``), so no request waits
  for a compile. The default pages' shapes are queued for it at start (a kernel in the disk
  cache loads at once).
- **The displays one click away are computed while idle** (``ui.figures.PREFETCH``), so that a
  first click on train / test, the band or the log axis answers at once.
- **Memory goes back to the system**: glibc's mmap threshold is fixed at 128 KB (big temporaries
  then do not leave holes in the heap that ``malloc_trim`` cannot give back), its arenas are
  ``ARENAS`` for all the threads (sessions, slots, compiles) rather than 8 per core, the heap is
  trimmed after every training, and a janitor collects cyclic garbage between pages.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import threading
import time

import torch

import bnlr
import bnlr.article
from bnlr import cost, fused
from ui import claims_jobs, figures, runner
from ui.admission import ADMISSION

QUIET_S = 2.0  # kernels compile only after this long without a training (a page's jobs are done)
TRIM_S = 3.0  # the janitor collects once pages were drawn and then none for this long
TRIM_MAX_S = 30.0  # ... or this long after the first page drawn, if pages keep coming
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters
ARENAS = 2  # malloc arenas for all threads (glibc's default, 8 per core, each holding free memory)

_started = threading.Lock()
_done: list[bool] = []


def start() -> None:
    """Makes the server's process-wide settings, then warms it up in a background thread
    (idempotent: the first call does the work; streamlit_app.py calls it as the server starts)."""
    with _started:
        if _done:
            return
        _done.append(True)
    torch.set_num_threads(1)
    fused.COMPILER.configure(background=True, idle=quiet)
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(M_ARENA_MAX, ARENAS)
        runner.QUEUE.after = lambda: libc.malloc_trim(0)
        threading.Thread(target=_janitor, args=(libc,), name="bnlr-janitor", daemon=True).start()
    # Streamlit collects all garbage after every script run (runner.postScriptGC): the objects
    # of the imports so far (torch, pandas, Altair, Streamlit, bnlr) are taken out of its walks
    # now, not only at the warm-up's end. A class opening a fresh server's link had 30 of those
    # collections walk them all, 4.5 s of the interpreter lock, before the warm-up froze them.
    gc.freeze()
    runner.QUEUE.pages = ADMISSION.busy  # Home's claims pause while a visitor's page is built
    figures.PREFETCH.busy = runner.QUEUE.busy  # the displays one click away, while idle
    figures.PREFETCH.enabled = True
    threading.Thread(target=warm_up, name="bnlr-warm-up", daemon=True).start()


def warm_up() -> None:
    """What a visitor would otherwise wait for, done once at start at a lower OS priority: the
    cost calibration (≤ 1 s of CPU), the pages' remaining imports and the Hessians' first call
    (numba's cache), the default pages' kernels
    (compiled when no training runs, or loaded from the disk cache), then Home's claims as a
    background job that pauses whenever a visitor's training runs."""
    with contextlib.suppress(AttributeError, OSError):  # Linux: this thread only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    cost.calibrate()
    import altair  # noqa: F401  (the pages' charts)

    from bnlr import why

    # The exact Hessians' numba code (the LR curve's λ_max(0), the Why page): importing it is
    # not enough, its first call loads every function from numba's cache, 1.5–1.9 s here,
    # which the first visitor of those pages waited for. A tiny problem makes that call, once
    # no visitor's training runs or waits: on a new deployment numba's cache is empty and the
    # call compiles, 7–10 s of CPU mostly holding the GIL, which made a heavy link arriving
    # at start take 7.3–9.5 s instead of 4 (bench/load_cap.py --cold with NUMBA_CACHE_DIR empty).
    wait_until_idle()
    tiny = bnlr.DataConfig(n=20)
    why.run_physics(
        bnlr.Grid(depths=(1,), bns=("pre",), lrs=(0.1,), epochs=1, batch_size=10, data=tiny)
    )

    gc.freeze()  # the warm-up's imports too: they live as long as the process
    shapes = default_shapes()
    fused.prepare(shapes, limit=len(shapes))
    fused.wait_for_compiles(timeout=120)
    claims_jobs.warm_claims()


def quiet() -> bool:
    """True when no training has run or waited for ``QUIET_S`` and no visitor's page is being
    built: when a compile or a warm-up step may take the CPU (and, writing a kernel's IR in
    Python, the interpreter lock) without slowing a visitor down."""
    return runner.QUEUE.idle(QUIET_S) and not ADMISSION.busy()


def wait_until_idle(poll_s: float = 0.1) -> None:
    """Returns once ``quiet()``."""
    while not quiet():
        time.sleep(poll_s)


def default_shapes() -> list:
    """The default pages' kernel shapes: the article's four networks, in float32 (the pages),
    in float64 (the Why page), and in float32 with SGD momentum (the playground's OneCycleLR
    cycles it). A shape not compiled yet trains on the torch path, several times slower: on a
    fresh deployment (an empty kernel cache) the playground's first chart took 1.5 s instead of
    0.4 s while its momentum kernels were missing."""
    return [
        fused.shape_of(
            bnlr.ModelConfig((bnlr.article.WIDTH,) * depth, bnlr.article.ACTIVATION, bn),
            bnlr.DataConfig().n_features,
            bnlr.OptimizerConfig(),
            dtype,
            momentum=momentum,
        )
        for dtype, momentum in (("float32", False), ("float64", False), ("float32", True))
        for depth in bnlr.article.DEPTHS
        for bn in bnlr.article.BNS
    ]


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


def _janitor(libc) -> None:
    """Collects cyclic garbage and gives freed heap memory back when pages were drawn and then
    none for TRIM_S (at most TRIM_MAX_S after the first): between pages, not while one draws.
    A script run leaves reference cycles (frames, Streamlit's rerun exceptions) that hold its
    tables and chart specs until Python's rare full collection."""
    while True:
        runner.DRAWN.wait()
        first = time.monotonic()
        while True:
            runner.DRAWN.clear()
            time.sleep(TRIM_S)
            if not runner.DRAWN.is_set() or time.monotonic() - first > TRIM_MAX_S:
                break
        runner.DRAWN.clear()
        gc.collect()
        libc.malloc_trim(0)
