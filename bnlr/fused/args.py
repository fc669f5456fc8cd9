"""The epoch kernel's arguments, defined once: the IR signature, the ctypes prototype and the call
by keyword are all made from ``ARGS``.

Adding an argument: a row here, its use in ``epoch.py`` (``self.args.<name>``), its value in
``group.py``'s call.
"""

from __future__ import annotations

import ctypes
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

ARRAY = "array"  # a pointer to a numpy array (its dtype in the comment)
FLOAT = "float"  # a scalar of the kernel's dtype
DOUBLE = "double"  # a float64 scalar, whatever the kernel's dtype
INT = "int"  # an int64 scalar

# The per-block layout "(blocks, rows, L)": row-major, a row holds one value of L runs.
# B is the batch size, H the hidden units, N / N_test the samples, Rp the runs padded to blocks.
# batch_stats' rows, per BN unit: ATen's batch-norm forward and backward terms for one block
# (proj_scale = Σ q (x - mean) · invstd² / B, grad_mean = Σ q / B)
STATS = ("mean", "invstd", "alpha", "shift", "proj_scale", "grad_mean")


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # ARRAY | FLOAT | DOUBLE | INT
    doc: str


ARGS = (
    Arg("params", ARRAY, "dtype (blocks, parameters, L): theta's rows (Shape.w, gamma, beta)"),
    Arg("grads", ARRAY, "dtype, as params: this step's gradient"),
    Arg("moment1", ARRAY, "dtype, as params: SGD's momentum buffer / Adam's exp_avg"),
    Arg("moment2", ARRAY, "dtype, as params: Adam's exp_avg_sq (unused by SGD)"),
    Arg("has_buffer", ARRAY, "uint8 (Rp,): SGD: a run's momentum buffer exists"),
    Arg("running_stats", ARRAY, "dtype (blocks, 2 H, L): BN's running mean, then running var"),
    Arg("scratch", ARRAY, "dtype (B, scratch_rows, L): a batch's per-sample values"),
    Arg("batch_stats", ARRAY, "dtype (len(STATS), H, L): per BN unit, one block's statistics"),
    Arg("order", ARRAY, "int32 (distinct orders, N): this epoch's batch orders"),
    Arg("lane_order", ARRAY, "int32 (Rp,): each lane's row of order"),
    Arg("train_xy", ARRAY, "dtype (N, in + 1): the training features, then the target"),
    Arg("test_xy", ARRAY, "dtype (N_test, in + 1): the test features, then the target"),
    Arg("coef", ARRAY, "dtype (K, steps, Rp): the optimizer's per-run coefficients per step"),
    Arg("loss", ARRAY, "float64 (2, Rp): out: the train and test MSE per run"),
    Arg("weight_decay", FLOAT, "SGD's and Adam's weight decay (AdamW's is in coef)"),
    Arg("one_minus_dampening", FLOAT, "SGD: 1 - dampening"),
    Arg("beta2", FLOAT, "Adam: beta2"),
    Arg("one_minus_beta2", FLOAT, "Adam: 1 - beta2"),
    Arg("eps", FLOAT, "Adam: eps"),
    Arg("bn_momentum", DOUBLE, "BatchNorm1d's momentum for the running statistics"),
    Arg("n_blocks", INT, "blocks of L runs"),
    Arg("batch_size", INT, "samples per mini-batch (the last may have fewer)"),
    Arg("n_train", INT, "N: training samples"),
    Arg("n_test", INT, "N_test: test samples"),
    Arg("n_lanes", INT, "Rp: the runs, then idle lanes, n_blocks · L"),
)

# The arguments as a tuple of named fields: the IR function's (``Arguments(*fn.args)``) or the
# call's (``Arguments(**values)``, which names a missing or unknown argument).
Arguments = namedtuple("Arguments", [a.name for a in ARGS])


def ir_types(dtype: str) -> list:
    """The IR types of the arguments, for a kernel of ``dtype``."""
    from .ir import F32, F64, I64, PTR  # (llvmlite is needed only to write a kernel)

    of = {ARRAY: PTR, FLOAT: F32 if dtype == "float32" else F64, DOUBLE: F64, INT: I64}
    return [of[a.kind] for a in ARGS]


def prototype(dtype: str):
    """The ctypes function type of a kernel of ``dtype``."""
    of = {
        ARRAY: ctypes.c_void_p,
        FLOAT: ctypes.c_float if dtype == "float32" else ctypes.c_double,
        DOUBLE: ctypes.c_double,
        INT: ctypes.c_int64,
    }
    return ctypes.CFUNCTYPE(None, *(of[a.kind] for a in ARGS))


def call(fn, **values) -> None:
    """Calls the compiled kernel ``fn`` with every argument by name; an array may be given as a
    numpy array (C-contiguous, kept alive by the caller) or as its address."""
    fn(*(v.ctypes.data if isinstance(v, np.ndarray) else v for v in Arguments(**values)))
