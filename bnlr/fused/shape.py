"""What a kernel is specialised to (``Shape``, its parameter layout) and which networks get one."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

try:  # llvmlite comes with numba; without it the batched engine keeps its torch path
    import llvmlite  # noqa: F401
except ImportError:  # pragma: no cover - exercised by environments without llvmlite
    AVAILABLE = False
else:
    AVAILABLE = True

# runs per block: one AVX-512 register (two AVX2 registers) of either dtype
LANES = {"float32": 16, "float64": 8}
MAX_UNITS = 64  # hidden units in all, for the fast path
MAX_PARAMETERS = 256  # compile time grows with the unrolled code (~1 s for the article's nets)


def wanted() -> bool:
    """True when the fused kernel should run: llvmlite is importable and ``BNLR_KERNEL`` is not
    ``torch``."""
    choice = os.environ.get("BNLR_KERNEL", "auto").strip().lower()
    if choice not in ("auto", "fused", "torch"):
        raise ValueError(f"BNLR_KERNEL must be auto, fused or torch, got {choice!r}")
    if choice == "fused" and not AVAILABLE:
        raise RuntimeError("BNLR_KERNEL=fused but llvmlite cannot be imported")
    return AVAILABLE and choice != "torch"


def n_parameters(sizes: tuple[int, ...], bn: str) -> int:
    """Parameters of an MLP with layer sizes (in, widths…, 1), BN gamma and beta included."""
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return params + (2 * sum(sizes[1:-1]) if bn != "none" else 0)


def supported(widths: tuple[int, ...], in_features: int, bn: str) -> bool:
    """True when the fused kernel covers a network of this shape."""
    sizes = (in_features, *widths, 1)
    return sum(widths) <= MAX_UNITS and n_parameters(sizes, bn) <= MAX_PARAMETERS


def scratch_rows(in_features: int, hidden: int) -> int:
    """Rows of a sample's scratch: features, target, z, a, q and g per hidden unit, g of the
    output."""
    return in_features + 1 + 4 * hidden + 1


@dataclass(frozen=True)
class Shape:
    """What a kernel is specialised to."""

    sizes: tuple[int, ...]  # in_features, widths…, 1
    activation: str
    bn: str  # none | pre | post
    optimizer: str  # sgd | adam | adamw
    dtype: str  # float32 | float64
    momentum: bool = False  # SGD: some run has momentum at some step
    nesterov: bool = False
    weight_decay: bool = False

    @property
    def widths(self) -> tuple[int, ...]:
        return self.sizes[1:-1]

    @property
    def hoff(self) -> list[int]:
        """Each hidden layer's first unit among all hidden units."""
        return [int(v) for v in np.cumsum([0, *self.widths])]

    def linear_rows(self) -> list[int]:
        """Each Linear's first row in the parameter block ([W | b] row-major), then the end."""
        offs, off = [], 0
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            offs.append(off)
            off += (a + 1) * b
        return [*offs, off]

    @property
    def n_params(self) -> int:
        return n_parameters(self.sizes, self.bn)

    # Rows of the parameter block, in theta's order (``batched._Group``): each Linear as [W | b]
    # (out, in + 1) row-major, then BN gamma_l, beta_l per hidden layer.
    def w(self, l: int, o: int, i: int) -> int:
        """Linear l's weight [o, i]; i = its in_features is the bias."""
        return self.linear_rows()[l] + o * (self.sizes[l] + 1) + i

    def gamma(self, l: int, j: int) -> int:
        return self.linear_rows()[-1] + 2 * self.hoff[l] + j

    def beta(self, l: int, j: int) -> int:
        return self.gamma(l, j) + self.widths[l]


def shape_of(model, in_features: int, optimizer, dtype: str, momentum: bool) -> Shape:
    """The kernel shape of a group: ``model`` (ModelConfig), ``optimizer`` (OptimizerConfig);
    ``momentum``: some run has SGD momentum at some step (a schedule may cycle it)."""
    sgd = optimizer.name == "sgd"
    return Shape(
        (in_features, *model.widths, 1),
        model.activation,
        model.bn,
        optimizer.name,
        dtype,
        momentum=sgd and momentum,
        nesterov=sgd and optimizer.nesterov,
        weight_decay=optimizer.resolved_weight_decay != 0 and optimizer.name != "adamw",
    )  # (AdamW decays through its per-step coefficient)
