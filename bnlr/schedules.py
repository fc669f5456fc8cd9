"""Learning-rate schedules: the spec language and the real ``torch.optim.lr_scheduler`` behind it.

A schedule is written ``NAME`` or ``NAME:key=value,...`` with torch's key names, e.g.
``step:step_size=10,gamma=0.5`` or ``onecycle:max_lr=0.1,pct_start=0.3``; ``lambda:EXPR`` takes a
``LambdaLR`` factor expression in ``epoch`` (see :mod:`bnlr.safe_expr`). Cyclic and 1cycle step
per batch, the rest per epoch; ``every=batch|epoch`` overrides that. Durations (``step_size``,
``T_max``, ``T_0``, ``warmup``, ...) count scheduler steps: epochs, or batches when stepped per batch.

The Géron forms of the article (Hands-On ML, ch. 11) map onto torch as
``power:s,c`` → ``LambdaLR(lambda t: (1 + t/s) ** -c)`` and ``exponential:s`` →
``ExponentialLR(gamma=0.1 ** (1/s))``, i.e. lr0 · 0.1^(t/s).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.optim import lr_scheduler

from .config import OptimizerConfig
from .safe_expr import check_factors

# Each key: (kind, default, check, what it does). A default of None is resolved at build time.
_POS = (lambda v: v > 0, "> 0")
_NONNEG = (lambda v: v >= 0, "≥ 0")
_UNIT = (lambda v: 0 < v < 1, "in (0, 1)")
_UNIT_INCL = (lambda v: 0 < v <= 1, "in (0, 1]")
_INT1 = (lambda v: v >= 1, "≥ 1")
_MOM = (lambda v: 0 <= v < 1, "in [0, 1)")
_EVERY = (
    "str",
    None,
    (lambda v: v in ("epoch", "batch"), "epoch or batch"),
    "step the scheduler once per epoch or once per batch",
)

FAMILIES: dict[str, dict[str, tuple]] = {
    "constant": {},
    "power": {
        "s": ("float", 1.0, _POS, "steps until lr has fallen to lr0 / 2**c"),
        "c": ("float", 1.0, _NONNEG, "the power; c = 1 gives lr0, lr0/2, lr0/3, ..."),
    },
    "exponential": {
        "s": ("float", 20.0, _POS, "steps for lr to fall tenfold: lr0 · 0.1^(t/s)"),
        "gamma": ("float", None, _UNIT_INCL, "ExponentialLR's factor per step (overrides s)"),
    },
    "step": {
        "step_size": ("int", 10, _INT1, "steps between two decays"),
        "gamma": ("float", 0.1, _POS, "factor applied at each decay"),
    },
    "multistep": {
        "milestones": (
            "ints",
            (20, 30),
            _INT1,
            "steps at which lr is multiplied by gamma, e.g. 5|15",
        ),
        "gamma": ("float", 0.1, _POS, "factor applied at each milestone"),
    },
    "plateau": {
        "factor": ("float", 0.1, _UNIT, "factor applied when the loss stops improving"),
        "patience": ("int", 10, _NONNEG, "epochs without improvement before lowering lr"),
        "threshold": ("float", 1e-4, _NONNEG, "relative improvement that counts"),
        "cooldown": ("int", 0, _NONNEG, "epochs to wait after a decay"),
        "min_lr": ("float", 0.0, _NONNEG, "lr never goes below this"),
        "monitor": (
            "str",
            "train",
            (lambda v: v in ("train", "test"), "train or test"),
            "which loss ReduceLROnPlateau watches",
        ),
    },
    "cyclic": {
        "base_lr": ("float", None, _POS, "lower lr bound (default: lr / 10)"),
        "max_lr": ("float", None, _POS, "upper lr bound (default: the run's lr)"),
        "step_size_up": ("int", None, _INT1, "steps from base_lr up to max_lr (default: 4 epochs)"),
        "step_size_down": ("int", None, _INT1, "steps back down (default: = step_size_up)"),
        "mode": (
            "str",
            "triangular",
            (
                lambda v: v in ("triangular", "triangular2", "exp_range"),
                "triangular, triangular2 or exp_range",
            ),
            "the cycle's shape",
        ),
        "gamma": ("float", 1.0, _UNIT_INCL, "exp_range's decay per step"),
        "cycle_momentum": (
            "bool",
            True,
            (lambda v: True, ""),
            "cycle momentum (SGD) or beta1 (Adam) inversely",
        ),
        "base_momentum": ("float", 0.8, _MOM, "momentum at the lr peak"),
        "max_momentum": ("float", 0.9, _MOM, "momentum at the lr trough"),
    },
    "onecycle": {
        "max_lr": ("float", None, _POS, "the peak lr (default: the run's lr)"),
        "pct_start": ("float", 0.3, _UNIT, "share of the steps spent rising"),
        "anneal_strategy": (
            "str",
            "cos",
            (lambda v: v in ("cos", "linear"), "cos or linear"),
            "shape of the rise and fall",
        ),
        "three_phase": ("bool", False, (lambda v: True, ""), "add a third, annihilation phase"),
        "div_factor": ("float", 25.0, _POS, "initial lr = max_lr / div_factor"),
        "final_div_factor": ("float", 1e4, _POS, "final lr = initial lr / final_div_factor"),
        "cycle_momentum": (
            "bool",
            True,
            (lambda v: True, ""),
            "cycle momentum (SGD) or beta1 (Adam) inversely",
        ),
        "base_momentum": ("float", 0.85, _MOM, "momentum at the lr peak"),
        "max_momentum": ("float", 0.95, _MOM, "momentum at the start and the end"),
    },
    "cosine": {
        "T_max": ("int", None, _INT1, "steps of one half cosine (default: the whole run)"),
        "eta_min": ("float", 0.0, _NONNEG, "the lowest lr"),
    },
    "cosine_restarts": {
        "T_0": ("int", 10, _INT1, "steps until the first restart"),
        "T_mult": ("int", 1, _INT1, "each period is T_mult times the last"),
        "eta_min": ("float", 0.0, _NONNEG, "the lowest lr"),
    },
    "warmup_cosine": {
        "warmup": ("int", 5, _INT1, "steps of linear warmup (LinearLR)"),
        "start_factor": ("float", 1 / 3, _UNIT_INCL, "warmup starts at lr · start_factor"),
        "eta_min": ("float", 0.0, _NONNEG, "the lowest lr at the end of the cosine"),
    },
    "lambda": {},
}
PER_BATCH = ("cyclic", "onecycle")


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed schedule spec: the family, its explicit keys, and how often it steps."""

    name: str
    params: tuple[tuple[str, object], ...] = ()  # only the keys given explicitly
    every: str = "epoch"  # epoch | batch
    expression: str = ""  # the LambdaLR factor, for name == "lambda"

    def get(self, key: str):
        return dict(self.params).get(key, FAMILIES[self.name][key][1])

    @property
    def cycles_momentum(self) -> bool:
        return self.name in PER_BATCH and bool(self.get("cycle_momentum"))


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
    if name == "lambda":
        check_factors(rest, 1)  # syntax and names; values are checked per run length later
        return ScheduleSpec("lambda", (), "epoch", rest.strip())
    keys = FAMILIES[name]
    params: dict[str, object] = {}
    every = "batch" if name in PER_BATCH else "epoch"
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if key == "every":
            kind, _, check, _ = _EVERY
        elif key in keys:
            kind, _, check, _ = keys[key]
        else:
            accepted = ", ".join([*keys, "every"])
            raise ValueError(f"unknown key {key!r} for schedule {name!r}; accepted: {accepted}")
        if not eq or not raw:
            raise ValueError(f"schedule {name!r}: key {key!r} needs a value, as {key}=...")
        value = _convert(name, key, raw, kind)
        ok, what = check
        for v in value if kind == "ints" else (value,):
            if not ok(v):
                raise ValueError(f"schedule {name!r}: {key}={raw} is out of range; must be {what}")
        if key == "every":
            every = value
        else:
            params[key] = value
    if name == "plateau" and every == "batch":
        raise ValueError(
            "schedule 'plateau': ReduceLROnPlateau steps once per epoch on that epoch's loss; "
            "every=batch is not accepted"
        )
    if name == "multistep" and "milestones" in params:
        ms = params["milestones"]
        if list(ms) != sorted(set(ms)):
            raise ValueError(f"schedule 'multistep': milestones {raw_list(ms)} must be increasing")
    return ScheduleSpec(name, tuple(sorted(params.items())), every)


def raw_list(values) -> str:
    return "|".join(str(v) for v in values)


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


def make_optimizer(params, config: OptimizerConfig, lr: float) -> torch.optim.Optimizer:
    """Returns the torch.optim optimizer that ``config`` describes, at learning rate ``lr``."""
    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=config.momentum,
            dampening=config.dampening,
            nesterov=config.nesterov,
            weight_decay=config.decay,
        )
    cls = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=config.betas, eps=config.eps, weight_decay=config.decay)


def total_steps(spec: ScheduleSpec, epochs: int, steps_per_epoch: int) -> int:
    """Returns how many times the scheduler steps over the run (epochs or batches)."""
    return epochs * steps_per_epoch if spec.every == "batch" else epochs


def scheduler_arguments(
    spec: ScheduleSpec | str, lr: float, epochs: int, steps_per_epoch: int
) -> tuple[str, dict] | None:
    """Returns the torch scheduler class name and its resolved keyword arguments (None for ``constant``).

    Every default is resolved here (e.g. CyclicLR's base_lr, OneCycleLR's total_steps), so the
    app and the generated code show exactly what ``build_scheduler`` builds. ``LambdaLR``'s
    ``lr_lambda`` is the source of a ``lambda epoch: ...``; ``SequentialLR``'s ``schedulers`` is
    a list of (class name, kwargs) pairs.

    >>> scheduler_arguments("step:step_size=5", 0.1, 40, 14)
    ('StepLR', {'step_size': 5, 'gamma': 0.1})
    """
    spec = parse_schedule(spec) if isinstance(spec, str) else spec
    n = total_steps(spec, epochs, steps_per_epoch)
    g = spec.get
    name = spec.name
    if name == "constant":
        return None
    if name == "power":
        return "LambdaLR", {"lr_lambda": f"lambda epoch: (1 + epoch / {g('s')!r}) ** -{g('c')!r}"}
    if name == "exponential":
        gamma = g("gamma") if g("gamma") is not None else 0.1 ** (1 / g("s"))
        return "ExponentialLR", {"gamma": gamma}
    if name == "step":
        return "StepLR", {"step_size": g("step_size"), "gamma": g("gamma")}
    if name == "multistep":
        return "MultiStepLR", {"milestones": list(g("milestones")), "gamma": g("gamma")}
    if name == "plateau":
        return "ReduceLROnPlateau", {
            "mode": "min",
            "factor": g("factor"),
            "patience": g("patience"),
            "threshold": g("threshold"),
            "cooldown": g("cooldown"),
            "min_lr": g("min_lr"),
        }
    if name == "cyclic":
        max_lr = g("max_lr") or lr
        base_lr = g("base_lr") or max_lr / 10
        if base_lr > max_lr:
            raise ValueError(
                f"schedule 'cyclic': base_lr {base_lr:g} is above max_lr {max_lr:g}; "
                "CyclicLR needs base_lr ≤ max_lr"
            )
        up = g("step_size_up") or max(1, 4 * (steps_per_epoch if spec.every == "batch" else 1))
        return "CyclicLR", {
            "base_lr": base_lr,
            "max_lr": max_lr,
            "step_size_up": up,
            "step_size_down": g("step_size_down"),
            "mode": g("mode"),
            "gamma": g("gamma"),
            "cycle_momentum": g("cycle_momentum"),
            "base_momentum": g("base_momentum"),
            "max_momentum": g("max_momentum"),
        }
    if name == "onecycle":
        return "OneCycleLR", {
            "max_lr": g("max_lr") or lr,
            "total_steps": n,
            "pct_start": g("pct_start"),
            "anneal_strategy": g("anneal_strategy"),
            "three_phase": g("three_phase"),
            "div_factor": g("div_factor"),
            "final_div_factor": g("final_div_factor"),
            "cycle_momentum": g("cycle_momentum"),
            "base_momentum": g("base_momentum"),
            "max_momentum": g("max_momentum"),
        }
    if name == "cosine":
        return "CosineAnnealingLR", {"T_max": g("T_max") or n, "eta_min": g("eta_min")}
    if name == "cosine_restarts":
        return "CosineAnnealingWarmRestarts", {
            "T_0": g("T_0"),
            "T_mult": g("T_mult"),
            "eta_min": g("eta_min"),
        }
    if name == "warmup_cosine":
        warmup = g("warmup")
        if warmup >= n:
            raise ValueError(
                f"schedule 'warmup_cosine': warmup={warmup} must be shorter than the run "
                f"({n} {spec.every} steps)"
            )
        return "SequentialLR", {
            "schedulers": [
                ("LinearLR", {"start_factor": g("start_factor"), "total_iters": warmup}),
                ("CosineAnnealingLR", {"T_max": n - warmup, "eta_min": g("eta_min")}),
            ],
            "milestones": [warmup],
        }
    if name == "lambda":
        return "LambdaLR", {"lr_lambda": f"lambda epoch: {spec.expression}"}
    raise AssertionError(name)


def build_scheduler(
    spec: ScheduleSpec | str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
):
    """Returns the torch scheduler for ``spec`` on ``optimizer`` (None for ``constant``).

    Args:
        spec: a schedule spec or its string.
        optimizer: a torch optimizer; its lr is the run's lr.
        epochs: epochs in the run.
        steps_per_epoch: batches per epoch (for per-batch stepping and OneCycleLR's total_steps).

    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    >>> build_scheduler("lambda:0.5**epoch", opt, 3, 14).get_last_lr()
    [0.05]
    """
    spec = parse_schedule(spec) if isinstance(spec, str) else spec
    resolved = scheduler_arguments(spec, optimizer.param_groups[0]["lr"], epochs, steps_per_epoch)
    if resolved is None:
        return None
    cls, kwargs = resolved
    if spec.name == "power":
        s, c = spec.get("s"), spec.get("c")
        return lr_scheduler.LambdaLR(optimizer, lambda t: (1 + t / s) ** -c)
    if spec.name == "lambda":
        return lr_scheduler.LambdaLR(
            optimizer,
            check_factors(spec.expression, total_steps(spec, epochs, steps_per_epoch) + 1),
        )
    if cls == "SequentialLR":
        parts = [getattr(lr_scheduler, c)(optimizer, **kw) for c, kw in kwargs["schedulers"]]
        return lr_scheduler.SequentialLR(optimizer, parts, milestones=kwargs["milestones"])
    return getattr(lr_scheduler, cls)(optimizer, **kwargs)


def group_momentum(group: dict) -> float:
    """Returns SGD's momentum or Adam's beta1: what CyclicLR / OneCycleLR cycle."""
    return group["betas"][0] if "betas" in group else group["momentum"]


@dataclass(frozen=True)
class Trajectory:
    """The lr (and momentum / beta1) in effect at each optimizer step of a run."""

    lr: tuple[float, ...]  # one per optimizer step: epochs × steps_per_epoch
    momentum: tuple[float, ...]  # momentum (SGD) or beta1 (Adam), per optimizer step
    every: str  # how the scheduler steps: epoch | batch


@lru_cache(maxsize=4096)
def trajectory(
    spec: str,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    optimizer: OptimizerConfig = OptimizerConfig(),
) -> Trajectory | None:
    """Returns the lr and momentum at every optimizer step, from the torch scheduler on a bare
    optimizer; None for ReduceLROnPlateau, whose lr depends on the loss.

    >>> trajectory("lambda:0.5**epoch", 0.05, 3, 1).lr
    (0.05, 0.025, 0.0125)
    """
    parsed = parse_schedule(spec)
    if parsed.name == "plateau":
        return None
    opt = make_optimizer([torch.zeros(1, requires_grad=True)], optimizer, lr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # "scheduler.step() before optimizer.step()": no training here
            sched = build_scheduler(parsed, opt, epochs, steps_per_epoch)
            lrs, moms = [], []
            group = opt.param_groups[0]
            for _ in range(epochs):
                for _ in range(steps_per_epoch):
                    lrs.append(float(group["lr"]))
                    moms.append(float(group_momentum(group)))
                    if sched is not None and parsed.every == "batch":
                        sched.step()
                if sched is not None and parsed.every == "epoch":
                    sched.step()
    except ValueError:
        raise
    except (TypeError, ZeroDivisionError, OverflowError, RuntimeError) as err:
        raise ValueError(f"schedule {spec!r} is rejected by torch: {err}") from None
    return Trajectory(tuple(lrs), tuple(moms), parsed.every)


def check_schedule(
    spec: str,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    optimizer: OptimizerConfig = OptimizerConfig(),
) -> None:
    """Raises ValueError if ``spec`` cannot run for this many epochs (torch's reason in plain words)."""
    parsed = parse_schedule(spec)
    if parsed.name == "plateau":
        build_scheduler(
            parsed,
            make_optimizer([torch.zeros(1, requires_grad=True)], optimizer, lr),
            epochs,
            steps_per_epoch,
        )
        return
    traj = trajectory(spec, lr, epochs, steps_per_epoch, optimizer)
    bad = next((i for i, v in enumerate(traj.lr) if not (math.isfinite(v) and v >= 0)), None)
    if bad is not None:
        raise ValueError(
            f"schedule {spec!r} gives lr {traj.lr[bad]!r} at step {bad}; lr must be finite and ≥ 0"
        )
