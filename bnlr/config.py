"""Frozen, hashable configs: the data, a model, an optimizer, one run, and a grid of runs.

Every field is checked in ``__post_init__`` so that a bad value raises ``ValueError``
naming it before any training starts. Being frozen dataclasses of tuples, configs are
hashable and serve directly as the keys of the app's results cache (``ui.cache``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product

from . import article
from .optimizers import OptimizerConfig
from .schedules import check_schedule, parse_schedule

ACTIVATIONS = ("tanh", "relu", "sigmoid", "leaky_relu")
BN_PLACEMENTS = ("none", "pre", "post")
BN_LABEL = {"none": "no BN", "pre": "BN pre", "post": "BN post"}
DTYPES = ("float32", "float64")


# Learning rates the configs accept: past 10 every network here diverges in its first steps, and
# an lr like 1e308 would overflow float32 to inf before the first step.
LR_MIN, LR_MAX = 1e-12, 10.0


def _lr(name: str, value: float) -> None:
    _positive_finite(name, value)
    if not LR_MIN <= value <= LR_MAX:
        raise ValueError(f"{name} must lie in [{LR_MIN:g}, {LR_MAX:g}], got {value!r}")


def _positive_finite(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")


def _int_at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """The article's regression data: y = (X ** degree) @ w (+ 1 if bias) + noise · N(0, 1)."""

    n: int = article.N  # samples in all, before the split
    w: tuple[float, ...] = article.W  # true weights; len(w) = number of features
    degree: int = article.DEGREE  # the power applied to X elementwise
    bias: bool = False  # add 1 to every target (the article's bias=True)
    noise: float = article.NOISE  # std of the Gaussian noise added to y
    train_fraction: float = article.TRAIN_FRACTION  # the rest is the test split
    seed: int = article.SEED  # seeds the data and the split, nothing else

    def __post_init__(self):
        object.__setattr__(self, "w", tuple(float(v) for v in self.w))
        _int_at_least("n", self.n, 4)
        if not self.w or not all(math.isfinite(v) for v in self.w):
            raise ValueError(f"w must be a non-empty list of finite numbers, got {self.w!r}")
        _int_at_least("degree", self.degree, 1)
        if self.degree > 6:
            raise ValueError(f"degree must be between 1 and 6, got {self.degree}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number ≥ 0, got {self.noise!r}")
        if not (0 < self.train_fraction < 1):
            raise ValueError(
                f"train_fraction must lie strictly between 0 and 1, got {self.train_fraction!r}"
            )
        _int_at_least("data seed", self.seed, 0)

    @property
    def n_train(self) -> int:
        return round(self.n * self.train_fraction)

    @property
    def n_features(self) -> int:
        return len(self.w)


@dataclass(frozen=True)
class ModelConfig:
    """An MLP: hidden Linear layers of the given widths, then Linear(width, 1)."""

    widths: tuple[int, ...] = (4, 4, 4)  # hidden layer widths; depth = len(widths)
    activation: str = article.ACTIVATION  # one of ACTIVATIONS
    bn: str = "none"  # none | pre (Linear→BN→act) | post (Linear→act→BN)
    bn_momentum: float = article.BN_MOMENTUM  # nn.BatchNorm1d's momentum for running statistics

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.widths or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.widths
        ):
            raise ValueError(
                f"widths must be a non-empty list of integers ≥ 1, got {self.widths!r}"
            )
        if len(self.widths) > 12 or max(self.widths) > 512:
            raise ValueError(f"widths {self.widths!r} too large: at most 12 layers of width ≤ 512")
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("BN placement", self.bn, BN_PLACEMENTS)
        if not (0 <= self.bn_momentum <= 1):
            raise ValueError(f"bn_momentum must lie in [0, 1], got {self.bn_momentum!r}")

    @property
    def depth(self) -> int:
        return len(self.widths)

    @property
    def label(self) -> str:
        """A short name for charts, e.g. ``3×4 tanh · BN pre``."""
        w = self.widths
        shape = f"{len(w)}×{w[0]}" if len(set(w)) == 1 else "-".join(map(str, w))
        return f"{shape} {self.activation} · {BN_LABEL[self.bn]}"


@dataclass(frozen=True)
class RunConfig:
    """One training run: a model, an optimizer, an lr, a schedule and a seed."""

    model: ModelConfig = ModelConfig()
    lr: float = 0.01  # the optimizer's initial lr (for cyclic / onecycle: the peak, unless given)
    seed: int = article.SEED  # seeds the initial weights and the batch order
    schedule: str = "constant"  # a schedule spec, see bnlr.schedules
    optimizer: OptimizerConfig = OptimizerConfig()
    perturb: float = 0.0  # a twin: initial weights × (1 + perturb · N(0, 1)), same batch order

    def __post_init__(self):
        _lr("lr", self.lr)
        _int_at_least("seed", self.seed, 0)
        parse_schedule(self.schedule)
        if not (0 <= self.perturb < 1):
            raise ValueError(f"perturb must lie in [0, 1), got {self.perturb!r}")


@dataclass(frozen=True)
class Experiment:
    """Runs that share data, epochs and batch size: what one call to ``train`` does."""

    runs: tuple[RunConfig, ...]
    data: DataConfig = DataConfig()
    epochs: int = article.EPOCHS  # passes over the training split
    batch_size: int = article.BATCH_SIZE  # mini-batch size; batches reshuffled every epoch
    dtype: str = "float32"  # float32 | float64

    def __hash__(self) -> int:
        """The hash of the fields, computed once: an experiment is the key of every cache (the
        runner's, the figures', the cost model's), asked for many times per page rerun, and
        hashing its runs is most of the work."""
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.runs, self.data, self.epochs, self.batch_size, self.dtype))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        """The fields, not the kept hash: another process hashes strings with another seed."""
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def __post_init__(self):
        object.__setattr__(self, "runs", tuple(self.runs))
        if not self.runs:
            raise ValueError("an experiment needs at least one run")
        _int_at_least("epochs", self.epochs, 1)
        if self.epochs > 2000:
            raise ValueError(f"epochs must be at most 2000, got {self.epochs}")
        _int_at_least("batch_size", self.batch_size, 1)
        if self.batch_size > self.data.n_train:
            raise ValueError(
                f"batch_size {self.batch_size} is larger than the training set "
                f"({self.data.n_train} samples)"
            )
        _choice("dtype", self.dtype, DTYPES)
        if self.data.n_train < 2 or self.data.n - self.data.n_train < 1:
            raise ValueError(
                f"n={self.data.n} leaves an empty split "
                f"at train_fraction {self.data.train_fraction}"
            )
        with_bn = any(r.model.bn != "none" for r in self.runs)
        if self.batch_size == 1 and with_bn:
            raise ValueError(
                "batch_size 1 with BatchNorm: BatchNorm needs at least 2 samples per batch "
                "(nn.BatchNorm1d raises in training); pick a batch size ≥ 2 or no BN"
            )
        last = self.data.n_train % self.batch_size
        if last == 1 and with_bn:
            raise ValueError(
                f"batch_size {self.batch_size} leaves a last batch of 1 sample out of "
                f"{self.data.n_train}; BatchNorm needs at least 2 (pick another batch size)"
            )
        for run in self.runs:
            check_schedule(run.schedule, run.lr, self.epochs, self.steps_per_epoch, run.optimizer)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.data.n_train, self.batch_size)

    @property
    def work(self) -> int:
        """Runs × epochs × training samples: the unit the app caps per request."""
        return len(self.runs) * self.epochs * self.data.n_train


@dataclass(frozen=True)
class Grid:
    """A grid of runs: every depth × activation × BN × schedule × lr × seed."""

    depths: tuple[int, ...] = article.DEPTHS  # hidden layers
    width: int = article.WIDTH  # units per hidden layer
    activations: tuple[str, ...] = (article.ACTIVATION,)
    bns: tuple[str, ...] = article.BNS  # BatchNorm placements
    bn_momentum: float = article.BN_MOMENTUM
    lrs: tuple[float, ...] = article.LRS
    seeds: tuple[int, ...] = (article.SEED,)  # one run per seed: its initial weights, batch order
    schedules: tuple[str, ...] = ("constant",)
    optimizer: OptimizerConfig = OptimizerConfig(article.OPTIMIZER)
    data: DataConfig = DataConfig()
    epochs: int = article.EPOCHS
    batch_size: int = article.BATCH_SIZE
    dtype: str = "float32"  # float32 | float64
    experiment: Experiment = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        for name in ("depths", "activations", "bns", "lrs", "seeds", "schedules"):
            values = tuple(getattr(self, name))
            if not values:
                raise ValueError(f"{name} is empty; give at least one value")
            object.__setattr__(self, name, values)
        for lr in self.lrs:
            _lr("lr", lr)
        _int_at_least("width", self.width, 1)
        for d in self.depths:
            _int_at_least("depth", d, 1)
        runs = tuple(
            RunConfig(
                ModelConfig((self.width,) * depth, act, bn, self.bn_momentum),
                float(lr),
                seed,
                sched,
                self.optimizer,
            )
            for depth, act, bn, sched, lr, seed in product(
                self.depths, self.activations, self.bns, self.schedules, self.lrs, self.seeds
            )
        )
        object.__setattr__(
            self,
            "experiment",
            Experiment(runs, self.data, self.epochs, self.batch_size, self.dtype),
        )


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Returns the mini-batches in one epoch (the last may be smaller).

    >>> steps_per_epoch(700, 50), steps_per_epoch(700, 300)
    (14, 3)
    """
    return math.ceil(n_train / max(1, min(batch_size, n_train)))


def log_grid(low: float, high: float, count: int) -> tuple[float, ...]:
    """Returns ``count`` learning rates spaced evenly in log10 from ``low`` to ``high``.

    >>> log_grid(1e-3, 1e-1, 3)
    (0.001, 0.01, 0.1)
    """
    _lr("lr grid low", low)
    _lr("lr grid high", high)
    _int_at_least("lr grid count", count, 2)
    if not low < high:
        raise ValueError(f"lr grid range reversed or empty: low {low:g} must be < high {high:g}")
    a, b = math.log10(low), math.log10(high)
    return tuple(float(f"{10 ** (a + (b - a) * k / (count - 1)):.6g}") for k in range(count))
