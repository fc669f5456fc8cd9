"""Learning-rate schedules: the spec language, the real ``torch.optim.lr_scheduler`` behind it, and
the order in which a scheduler steps.

A schedule is written ``NAME`` or ``NAME:key=value,...`` with torch's key names, e.g.
``step:step_size=10,gamma=0.5`` or ``onecycle:max_lr=0.1,pct_start=0.3``; ``lambda:EXPR`` takes a
``LambdaLR`` factor expression in ``epoch`` (see :mod:`bnlr.safe_expr`). The families and their
keys are defined in :mod:`bnlr.families`. Cyclic and 1cycle step per batch, the rest per epoch;
``every=batch|epoch`` overrides that. Durations (``step_size``, ``T_max``, ``T_0``, ``warmup``,
...) count scheduler steps: epochs, or batches when stepped per batch.

``Stepper`` is the step order every loop in bnlr follows (the reference engine, the batched
engine's live ReduceLROnPlateau, the lr trajectories, the optimizer-state panel): the scheduler
steps after ``optimizer.step()``, per batch or after the epoch's evaluation, and
ReduceLROnPlateau is fed the loss it monitors.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from torch.optim import lr_scheduler

from .families import EVERY, FAMILIES, Context
from .optimizers import OptimizerConfig, bare_optimizer, group_momentum
from .safe_expr import check_factors


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed schedule spec: the family, its explicit keys, and how often it steps."""

    name: str
    params: tuple[tuple[str, object], ...] = ()  # only the keys given explicitly
    every: str = "epoch"  # epoch | batch
    expression: str = ""  # the LambdaLR factor, for name == "lambda"

    @property
    def family(self):
        return FAMILIES[self.name]

    def get(self, key: str):
        return dict(self.params).get(key, self.family.keys[key].default)

    @property
    def cycles_momentum(self) -> bool:
        return self.family.cycles_momentum_key and bool(self.get("cycle_momentum"))

    @property
    def monitor(self) -> str | None:
        """The loss the scheduler watches (train or test, for ReduceLROnPlateau), or None."""
        return self.get("monitor") if "monitor" in self.family.keys else None

    def steps(self, epochs: int, steps_per_epoch: int) -> int:
        """Returns how many times the scheduler steps over the run (epochs or batches)."""
        return epochs * steps_per_epoch if self.every == "batch" else epochs


@lru_cache(maxsize=1024)
def parse_schedule(spec: str) -> ScheduleSpec:
    """Returns the parsed spec, or raises ValueError naming the bad part.

    >>> parse_schedule("step:step_size=5,gamma=0.5").get("gamma")
    0.5
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty schedule; accepted: {', '.join(FAMILIES)}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in FAMILIES:
        raise ValueError(f"unknown schedule {name!r}; accepted: {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    if name == "lambda":
        check_factors(rest, 1)  # syntax and names; values are checked per run length later
        return ScheduleSpec("lambda", (), "epoch", rest.strip())
    params: dict[str, object] = {}
    every = "batch" if family.per_batch else "epoch"
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        spec_key = EVERY if key == "every" else family.keys.get(key)
        if spec_key is None:
            accepted = ", ".join([*family.keys, "every"])
            raise ValueError(f"unknown key {key!r} for schedule {name!r}; accepted: {accepted}")
        if not eq or not raw:
            raise ValueError(f"schedule {name!r}: key {key!r} needs a value, as {key}=...")
        value = _convert(name, key, raw, spec_key.kind)
        for v in value if spec_key.kind == "ints" else (value,):
            if not spec_key.check(v):
                raise ValueError(
                    f"schedule {name!r}: {key}={raw} is out of range; must be {spec_key.accepted}"
                )
        if spec_key.kind == "ints" and list(value) != sorted(set(value)):
            raise ValueError(f"schedule {name!r}: {key} {raw} must be increasing")
        if key == "every":
            every = value
        else:
            params[key] = value
    if family.epoch_only and every == "batch":
        raise ValueError(
            f"schedule {name!r}: {family.torch} steps once per epoch on that epoch's loss; "
            "every=batch is not accepted"
        )
    return ScheduleSpec(name, tuple(sorted(params.items())), every)


def _convert(name: str, key: str, raw: str, kind: str):
    try:
        if kind == "float":
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind == "int":
            return int(raw)
        if kind == "ints":
            return tuple(int(v) for v in raw.split("|"))
        if kind == "bool":
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        return raw
    except ValueError:
        what = {
            "float": "a number",
            "int": "a whole number",
            "ints": "whole numbers joined by |",
            "bool": "true or false",
        }.get(kind, "a word")
        raise ValueError(f"schedule {name!r}: {key}={raw!r} is not {what}") from None


def _context(spec: ScheduleSpec, lr: float, epochs: int, steps_per_epoch: int) -> Context:
    total = spec.steps(epochs, steps_per_epoch)
    return Context(spec.get, lr, total, steps_per_epoch, spec.every, spec.expression)


def scheduler_arguments(
    spec: ScheduleSpec | str, lr: float, epochs: int, steps_per_epoch: int
) -> tuple[str, dict] | None:
    """Returns the torch scheduler class name and its resolved keyword arguments (None: constant).

    Every default is resolved here (e.g. CyclicLR's base_lr, OneCycleLR's total_steps), so the
    app and the generated code show exactly what ``build_scheduler`` builds. ``LambdaLR``'s
    ``lr_lambda`` is the source of a ``lambda epoch: ...``; ``SequentialLR``'s ``schedulers`` is
    a list of (class name, kwargs) pairs.

    >>> scheduler_arguments("step:step_size=5", 0.1, 40, 14)
    ('StepLR', {'step_size': 5, 'gamma': 0.1})
    """
    spec = parse_schedule(spec) if isinstance(spec, str) else spec
    return spec.family.arguments(_context(spec, lr, epochs, steps_per_epoch))


def build_scheduler(spec: ScheduleSpec | str, optimizer, epochs: int, steps_per_epoch: int):
    """Returns the torch scheduler for ``spec`` on ``optimizer`` (None for ``constant``).

    Args:
        spec: a schedule spec or its string.
        optimizer: a torch optimizer; its lr is the run's lr.
        epochs: epochs in the run.
        steps_per_epoch: batches per epoch (for per-batch stepping and OneCycleLR's total_steps).

    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    >>> build_scheduler("lambda:0.5**epoch", opt, 3, 14).get_last_lr()
    [0.05]
    """
    spec = parse_schedule(spec) if isinstance(spec, str) else spec
    context = _context(spec, optimizer.param_groups[0]["lr"], epochs, steps_per_epoch)
    resolved = spec.family.arguments(context)
    if resolved is None:
        return None
    cls, kwargs = resolved
    if cls == "LambdaLR":  # the source in kwargs is for people; torch gets the function
        return lr_scheduler.LambdaLR(optimizer, spec.family.factor(context))
    if cls == "SequentialLR":
        parts = [getattr(lr_scheduler, c)(optimizer, **kw) for c, kw in kwargs["schedulers"]]
        return lr_scheduler.SequentialLR(optimizer, parts, milestones=kwargs["milestones"])
    return getattr(lr_scheduler, cls)(optimizer, **kwargs)


class Stepper:
    """A run's scheduler, stepped where the protocol says.

    ``after_batch()`` follows every ``optimizer.step()``; ``after_epoch(train, test)`` follows
    the epoch's evaluation. A per-batch scheduler steps in the first, a per-epoch one in the
    second, and ReduceLROnPlateau gets the loss it monitors (train or test).
    """

    def __init__(self, spec: ScheduleSpec | str, optimizer, epochs: int, steps_per_epoch: int):
        self.spec = parse_schedule(spec) if isinstance(spec, str) else spec
        self.optimizer = optimizer
        self.scheduler = build_scheduler(self.spec, optimizer, epochs, steps_per_epoch)

    @property
    def lr(self) -> float:
        """The lr the next ``optimizer.step()`` uses."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def momentum(self) -> float:
        """SGD's momentum or Adam's beta1 for the next step."""
        return float(group_momentum(self.optimizer.param_groups[0]))

    def step(self, loss: float | None = None) -> None:
        """One ``scheduler.step()`` (``step(loss)`` for ReduceLROnPlateau)."""
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(loss)
        else:
            self.scheduler.step()

    def after_batch(self) -> None:
        if self.spec.every == "batch":
            self.step()

    def after_epoch(self, train_loss: float | None = None, test_loss: float | None = None) -> None:
        if self.spec.every == "epoch":
            self.step(train_loss if self.spec.monitor == "train" else test_loss)


@dataclass(frozen=True)
class Trajectory:
    """The lr (and momentum / beta1) in effect at each optimizer step of a run."""

    lr: tuple[float, ...]  # one per optimizer step: epochs × steps_per_epoch
    momentum: tuple[float, ...]  # momentum (SGD) or beta1 (Adam), per optimizer step
    every: str  # how the scheduler steps: epoch | batch

    @cached_property
    def table(self) -> np.ndarray:
        """(2, steps) float64: lr, then momentum / beta1 (made once: ``trajectory`` is cached)."""
        table = np.array([self.lr, self.momentum], dtype=np.float64)
        table.flags.writeable = False
        return table


@lru_cache(maxsize=4096)
def trajectory(
    spec: str,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    optimizer: OptimizerConfig = OptimizerConfig(),
) -> Trajectory | None:
    """Returns the lr and momentum at every optimizer step, from the torch scheduler on a bare
    optimizer; None for a schedule whose lr depends on the loss (ReduceLROnPlateau).

    >>> trajectory("lambda:0.5**epoch", 0.05, 3, 1).lr
    (0.05, 0.025, 0.0125)
    """
    parsed = parse_schedule(spec)
    if parsed.monitor is not None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            stepper = Stepper(parsed, bare_optimizer(optimizer, lr), epochs, steps_per_epoch)
            lrs, moms = [], []
            for _ in range(epochs):
                for _ in range(steps_per_epoch):
                    lrs.append(stepper.lr)
                    moms.append(stepper.momentum)
                    stepper.after_batch()
                stepper.after_epoch()
    except (TypeError, ZeroDivisionError, OverflowError, RuntimeError) as err:
        raise ValueError(f"schedule {spec!r} is rejected by torch: {err}") from None
    return Trajectory(tuple(lrs), tuple(moms), parsed.every)


@lru_cache(maxsize=4096)  # a grid checks each of its runs: most share schedule, lr and optimizer
def check_schedule(
    spec: str,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    optimizer: OptimizerConfig = OptimizerConfig(),
) -> None:
    """Raises ValueError if ``spec`` can't run this many epochs (torch's reason in plain words)."""
    parsed = parse_schedule(spec)
    if parsed.monitor is not None:
        build_scheduler(parsed, bare_optimizer(optimizer, lr), epochs, steps_per_epoch)
        return
    traj = trajectory(spec, lr, epochs, steps_per_epoch, optimizer)
    bad = next((i for i, v in enumerate(traj.lr) if not (math.isfinite(v) and v >= 0)), None)
    if bad is not None:
        raise ValueError(
            f"schedule {spec!r} gives lr {traj.lr[bad]!r} at step {bad}; lr must be finite and ≥ 0"
        )
