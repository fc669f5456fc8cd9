"""The fused kernel of the batched engine: one compiled call trains a group of runs for one epoch.

A group is R runs of one network shape and optimizer kind (``batched._Group``). Its parameters,
gradients, optimizer state and BatchNorm running statistics are kept as blocks of ``LANES`` runs:
every number of a block is a row of ``LANES`` contiguous values, one lane per run. For each
network shape (input width, hidden widths, activation, BN placement, optimizer, dtype) this module
writes a kernel in LLVM IR, with llvmlite (numba's code generator), in which every value is a
vector of ``LANES`` runs and every unit of every layer is unrolled: a sample's forward and
backward pass is straight-line SIMD code in registers, one instruction advancing 8 or 16 runs.
The evaluation passes take two samples at once, as the two halves of a vector of 2 · ``LANES``
lanes: one sample's forward pass is a long chain of dependent operations, and two independent
chains keep the CPU's units busy (in training, the same measured 2 % faster for 15 % more
compile time, so training takes one sample at a time). A lane never reads another lane: a
diverged run cannot disturb its neighbours, and a run's numbers do not depend on which runs
train beside it.

One call does an epoch, block by block: per mini-batch the forward pass, MSELoss's gradient, the
backward pass (split into passes over the batch only where BatchNorm needs the batch's
statistics), the weight gradients (per Linear, Σ over the batch of d loss / d output · input, in
sample order, summed in registers), the optimizer update with this step's lr and momentum /
beta1 per run; then the train and test MSE in eval mode. Python calls it once per epoch, so
cancel(), progress and ReduceLROnPlateau stay in ``batched._Group.train``.

The formulas are torch's, in the experiment's dtype: BatchNorm1d's batch statistics accumulated
in float64 as ATen's CPU kernel does, the biased variance to normalise and the unbiased one for
the running variance, ``x * alpha + beta`` with alpha = invstd · gamma, ATen's batch-norm backward;
MSELoss's mean; torch.optim's SGD (weight decay, momentum buffer = grad on first use, dampening,
nesterov), Adam and AdamW (lerp, bias corrections from the step's beta1, in float64 as torch
does in Python). In float64, tanh and sigmoid use an expm1 written out in arithmetic (range
reduction by ln 2, a Taylor polynomial, the power of two built from its bits), accurate to 4 ulp;
in float32, sigmoid does too and tanh is a rational minimax fit, accurate to 6 ulp (7 without
FMA) with half the instructions (``tests/test_fused.py``; torch's own float32 tanh is within 1
ulp). a · b + c may be one fused multiply-add; a dot product adds from its bias in input order,
a batch sum in sample order, the evaluation MSE as two running sums (even and odd samples) then
added (torch's BLAS may add in another order: last-bit differences); NaN and inf propagate as in
IEEE arithmetic.

A kernel compiles in about a second the first time its shape trains on a machine: its object
code is kept on disk (``cache_dir``) and loaded in milliseconds by later processes. The fast path
covers networks up to ``MAX_UNITS`` hidden units and ``MAX_PARAMETERS`` parameters (beyond that
the unrolled code grows long and the torch path's matrix products are efficient); without
llvmlite, with ``BNLR_KERNEL=torch``, or for larger networks, the batched engine keeps its torch
path. ``COMPILER`` says when kernels compile: on first use, or (the app) in a background thread.

The package: ``shape.py`` (what a kernel is specialised to), ``ir.py`` (the IR builder),
``args.py`` (the kernel's arguments), ``network.py`` and ``epoch.py`` (the kernel's code),
``jit.py`` and ``llc.py`` (compiling, the on-disk cache), ``compiler.py`` (when to compile),
``group.py`` (a group's state in the kernel's layout).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .compiler import Compiler
from .group import FusedGroup
from .jit import cache_dir, in_cache
from .shape import (
    AVAILABLE,
    LANES,
    MAX_PARAMETERS,
    MAX_UNITS,
    Shape,
    n_parameters,
    scratch_rows,
    shape_of,
    supported,
    wanted,
)

if AVAILABLE:  # (writing a kernel needs llvmlite)
    from .epoch import llvm_ir
    from .ir import elementwise

# The process's kernels and when they compile: on first use, unless the app calls
# ``COMPILER.configure(background=True, idle=...)`` at start-up. The functions below use it.
COMPILER = Compiler()


def kernel(shape: Shape) -> Callable:
    """The compiled epoch kernel of ``shape`` (``Compiler.kernel``)."""
    return COMPILER.kernel(shape)


def ready(shape: Shape) -> bool:
    """True when the kernel of ``shape`` can train now (``Compiler.ready``)."""
    return COMPILER.ready(shape)


def prepare(shapes: Iterable[Shape], limit: int | None = None) -> None:
    """Queues shapes for the background compiler (``Compiler.prepare``)."""
    COMPILER.prepare(shapes, limit)


def wait_for_compiles(timeout: float = 120.0) -> bool:
    """Blocks until the background compiler has nothing left (``Compiler.wait``)."""
    return COMPILER.wait(timeout)


def path(model, in_features: int, optimizer_name: str, dtype: str) -> str:
    """ "fused", "compile" or "torch": the path a group of this network takes now
    (``Compiler.path``)."""
    return COMPILER.path(model, in_features, optimizer_name, dtype)


__all__ = [
    "AVAILABLE",
    "COMPILER",
    "LANES",
    "MAX_PARAMETERS",
    "MAX_UNITS",
    "Compiler",
    "FusedGroup",
    "Shape",
    "cache_dir",
    "elementwise",
    "in_cache",
    "kernel",
    "llvm_ir",
    "n_parameters",
    "path",
    "prepare",
    "ready",
    "scratch_rows",
    "shape_of",
    "supported",
    "wait_for_compiles",
    "wanted",
]
