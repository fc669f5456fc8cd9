"""The schedule families: one definition each, everything about a family in one place.

A ``Family`` carries its spec keys (torch's names, defaults, range checks and one line of help
each), whether it steps per batch, how it resolves to a ``torch.optim.lr_scheduler`` class and
its arguments, and the words around it: the title the app shows, its formula (LaTeX), Géron's
form where the article has one, and the comment the generated script prints. The spec parser
(``bnlr.schedules``), ``python -m bnlr schedule``, the generated script (``bnlr.codegen``) and
the playground's controls, formulas and presets are all derived from ``FAMILIES``; a new family
is one entry here (and its tests).

A ``Family.arguments`` function receives a ``Context``: the spec's values (``get``), the run's
lr, how many times the scheduler steps over the run (``total``) and the batches per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .safe_expr import check_factors


@dataclass(frozen=True)
class Key:
    """One argument of a family, as torch names it."""

    kind: str  # float | int | ints (joined by |) | bool | choice
    default: object  # None: resolved when the scheduler is built (see the help)
    check: Callable[[object], bool]  # the range torch (or sense) accepts
    accepted: str  # that range in words, for the error message
    help: str  # one line for the app and the docs
    choices: tuple[str, ...] = ()  # for kind "choice"


def _float(default, check, accepted, help):
    return Key("float", default, check, accepted, help)


def _int(default, help, low=1):
    return Key("int", default, lambda v: v >= low, f"≥ {low}", help)


def _choice(default, choices, help):
    accepted = ", ".join(choices[:-1]) + " or " + choices[-1]
    return Key("choice", default, lambda v: v in choices, accepted, help, choices)


def _bool(default, help):
    return Key("bool", default, lambda v: True, "true or false", help)


def _positive(default, help):
    return _float(default, lambda v: v > 0, "> 0", help)


def _nonnegative(default, help):
    return _float(default, lambda v: v >= 0, "≥ 0", help)


def _unit(default, help):  # in (0, 1)
    return _float(default, lambda v: 0 < v < 1, "in (0, 1)", help)


def _unit_incl(default, help):  # in (0, 1]
    return _float(default, lambda v: 0 < v <= 1, "in (0, 1]", help)


def _momentum(default, help):
    return _float(default, lambda v: 0 <= v < 1, "in [0, 1)", help)


EVERY = _choice(None, ("epoch", "batch"), "step the scheduler once per epoch or once per batch")


@dataclass(frozen=True)
class Context:
    """What a family's arguments depend on, beside its own keys."""

    get: Callable[[str], object]  # the spec's value of a key (its default when not given)
    lr: float  # the run's lr (the optimizer's initial lr)
    total: int  # scheduler steps over the run: epochs, or epochs × batches when per batch
    steps_per_epoch: int
    every: str  # epoch | batch
    expression: str = ""  # LambdaLR's factor, for the lambda family


@dataclass(frozen=True)
class Family:
    """A schedule family: its keys, its torch scheduler, and how to explain it."""

    name: str  # the spec's name, e.g. "step"
    title: str  # what the app calls it
    torch: str  # the torch scheduler as the app names it
    formula: str  # LaTeX; t counts scheduler steps
    explain: str  # the generated script's comment above its construction
    arguments: Callable[[Context], tuple[str, dict] | None]  # → (torch class, kwargs); None: none
    keys: dict[str, Key] = field(default_factory=dict)
    per_batch: bool = False  # steps per batch unless the spec says every=epoch
    epoch_only: bool = False  # never per batch (ReduceLROnPlateau reads an epoch's loss)
    geron: str = ""  # Géron's name for it (Hands-On ML, ch. 11), where the article lists it
    factor: Callable[[Context], Callable[[int], float]] | None = None  # LambdaLR's lr_lambda

    @property
    def cycles_momentum_key(self) -> bool:
        return "cycle_momentum" in self.keys


def _cyclic(c: Context):
    max_lr = c.get("max_lr") or c.lr
    base_lr = c.get("base_lr") or max_lr / 10
    if base_lr > max_lr:
        raise ValueError(
            f"schedule 'cyclic': base_lr {base_lr:g} is above max_lr {max_lr:g}; "
            "CyclicLR needs base_lr ≤ max_lr"
        )
    up = c.get("step_size_up") or max(1, 4 * (c.steps_per_epoch if c.every == "batch" else 1))
    keys = ("step_size_down", "mode", "gamma", "cycle_momentum", "base_momentum", "max_momentum")
    return "CyclicLR", {
        "base_lr": base_lr,
        "max_lr": max_lr,
        "step_size_up": up,
        **{k: c.get(k) for k in keys},
    }


def _onecycle(c: Context):
    keys = ("pct_start", "anneal_strategy", "three_phase", "div_factor", "final_div_factor")
    return "OneCycleLR", {
        "max_lr": c.get("max_lr") or c.lr,
        "total_steps": c.total,
        **{k: c.get(k) for k in keys},
        **{k: c.get(k) for k in ("cycle_momentum", "base_momentum", "max_momentum")},
    }


def _warmup_cosine(c: Context):
    warmup = c.get("warmup")
    if warmup >= c.total:
        raise ValueError(
            f"schedule 'warmup_cosine': warmup={warmup} must be shorter than the run "
            f"({c.total} {c.every} steps)"
        )
    return "SequentialLR", {
        "schedulers": [
            ("LinearLR", {"start_factor": c.get("start_factor"), "total_iters": warmup}),
            ("CosineAnnealingLR", {"T_max": c.total - warmup, "eta_min": c.get("eta_min")}),
        ],
        "milestones": [warmup],
    }


def _power_factor(c: Context):
    s, power = c.get("s"), c.get("c")
    return lambda t: (1 + t / s) ** -power


def _lambda_factor(c: Context):
    return check_factors(c.expression, c.total + 1)


_CYCLIC_MOMENTUM = {
    "cycle_momentum": _bool(True, "cycle momentum (SGD) or beta1 (Adam) inversely"),
}

_FAMILIES = [
    Family(
        "constant",
        "constant",
        "no scheduler",
        r"\eta_t = \eta_0",
        "",
        lambda c: None,
    ),
    Family(
        "power",
        "power (Géron)",
        "LambdaLR(lambda t: (1 + t/s) ** -c)",
        r"\eta_t = \frac{\eta_0}{(1 + t/s)^{c}} \qquad c = 1:\ \eta_0,\ \tfrac{\eta_0}{2},\ "
        r"\tfrac{\eta_0}{3},\ \dots\ (s = 1)",
        "Power scheduling (Geron): lr = lr0 / (1 + t / s) ** c, written as a LambdaLR factor:\n"
        "LambdaLR sets lr = lr_lambda(epoch) * initial_lr.",
        lambda c: (
            "LambdaLR",
            {"lr_lambda": f"lambda epoch: (1 + epoch / {c.get('s')!r}) ** -{c.get('c')!r}"},
        ),
        {
            "s": _positive(1.0, "steps until lr has fallen to lr0 / 2**c"),
            "c": _nonnegative(1.0, "the power; c = 1 gives lr0, lr0/2, lr0/3, ..."),
        },
        geron="Géron's power scheduling: the lr drops fast at first, then ever more slowly.",
        factor=_power_factor,
    ),
    Family(
        "exponential",
        "exponential (Géron)",
        "ExponentialLR(gamma = 0.1 ** (1/s))",
        r"\eta_t = \eta_0 \cdot 0.1^{\,t/s} = \eta_0 \cdot \gamma^{t}, \quad \gamma = 0.1^{1/s}",
        "ExponentialLR: lr = initial_lr * gamma ** epoch (Geron's lr0 * 0.1 ** (t / s) is "
        "gamma = 0.1 ** (1 / s)).",
        lambda c: (
            "ExponentialLR",
            {"gamma": c.get("gamma") if c.get("gamma") is not None else 0.1 ** (1 / c.get("s"))},
        ),
        {
            "s": _positive(20.0, "steps for lr to fall tenfold: lr0 · 0.1^(t/s)"),
            "gamma": _positive(None, "ExponentialLR's factor per step (overrides s); > 1 rises"),
        },
        geron="Géron's exponential scheduling: the lr falls tenfold every s steps.",
    ),
    Family(
        "step",
        "piecewise · StepLR",
        "StepLR",
        r"\eta_t = \eta_0 \cdot \gamma^{\lfloor t / \mathrm{step\_size} \rfloor}",
        "StepLR: lr = initial_lr * gamma ** (epoch // step_size).",
        lambda c: ("StepLR", {"step_size": c.get("step_size"), "gamma": c.get("gamma")}),
        {
            "step_size": _int(10, "steps between two decays"),
            "gamma": _positive(0.1, "factor applied at each decay"),
        },
        geron="Géron's piecewise constant scheduling, every step_size steps.",
    ),
    Family(
        "multistep",
        "piecewise · MultiStepLR",
        "MultiStepLR",
        r"\eta_t = \eta_0 \cdot \gamma^{\#\{m \in \mathrm{milestones}\,:\, m \le t\}}"
        r"\qquad \text{(Géron: } \eta_0 \text{ until } t_1,\ \eta_1 \text{ until } t_2, \dots)",
        "MultiStepLR: lr is multiplied by gamma at each milestone (piecewise constant).",
        lambda c: (
            "MultiStepLR",
            {"milestones": list(c.get("milestones")), "gamma": c.get("gamma")},
        ),
        {
            "milestones": Key(
                "ints",
                (20, 30),
                lambda v: v >= 1,
                "≥ 1",
                "steps at which lr is multiplied by gamma, e.g. 5|15",
            ),
            "gamma": _positive(0.1, "factor applied at each milestone"),
        },
        geron="Géron's piecewise constant scheduling: e.g. η₀ for 20 epochs, η₀/100 after.",
    ),
    Family(
        "plateau",
        "performance · ReduceLROnPlateau",
        "ReduceLROnPlateau",
        r"\text{if the loss has not improved by threshold for patience epochs: } "
        r"\eta \leftarrow \max(\eta \cdot \mathrm{factor},\ \mathrm{min\_lr})",
        "ReduceLROnPlateau: lr *= factor once the watched loss has not improved for\n"
        "`patience` epochs. Its step() NEEDS that loss: scheduler.step(loss).",
        lambda c: (
            "ReduceLROnPlateau",
            {
                "mode": "min",
                **{k: c.get(k) for k in ("factor", "patience", "threshold", "cooldown", "min_lr")},
            },
        ),
        {  # in the order the app shows them: the three that matter first
            "factor": _unit(0.1, "factor applied when the loss stops improving"),
            "patience": _int(10, "epochs without improvement before lowering lr", low=0),
            "monitor": _choice("train", ("train", "test"), "which loss ReduceLROnPlateau watches"),
            "threshold": _nonnegative(1e-4, "relative improvement that counts"),
            "cooldown": _int(0, "epochs to wait after a decay", low=0),
            "min_lr": _nonnegative(0.0, "lr never goes below this"),
        },
        epoch_only=True,
        geron="Géron's performance scheduling: watch the loss, lower the lr when it stalls.",
    ),
    Family(
        "cyclic",
        "cyclic · CyclicLR",
        "CyclicLR",
        r"\eta_t = \mathrm{base\_lr} + (\mathrm{max\_lr} - \mathrm{base\_lr}) \cdot "
        r"\max\!\left(0,\ 1 - \left|\tfrac{t}{\mathrm{step\_size\_up}} - 2k - 1\right|\right) "
        r"\cdot \mathrm{scale}(k), \quad k = \text{cycle}",
        "CyclicLR: lr goes base_lr -> max_lr -> base_lr, step_size_up steps up. Stepped per\n"
        "batch, so step sizes count batches. cycle_momentum=True also cycles SGD's momentum\n"
        "(Adam's beta1) the other way, from max_momentum down to base_momentum at the lr peak:\n"
        "with plain SGD (momentum=0) this turns momentum ON.",
        _cyclic,
        {
            "base_lr": _positive(None, "lower lr bound (default: lr / 10)"),
            "max_lr": _positive(None, "upper lr bound (default: the run's lr)"),
            "step_size_up": _int(None, "steps from base_lr up to max_lr (default: 4 epochs)"),
            "step_size_down": _int(None, "steps back down (default: = step_size_up)"),
            "mode": _choice(
                "triangular", ("triangular", "triangular2", "exp_range"), "the cycle's shape"
            ),
            "gamma": _unit_incl(1.0, "exp_range's decay per step"),
            **_CYCLIC_MOMENTUM,
            "base_momentum": _momentum(0.8, "momentum at the lr peak"),
            "max_momentum": _momentum(0.9, "momentum at the lr trough"),
        },
        per_batch=True,
        geron="Smith's cyclical learning rates: the lr oscillates between two bounds.",
    ),
    Family(
        "onecycle",
        "1cycle · OneCycleLR",
        "OneCycleLR",
        r"\eta:\ \tfrac{\mathrm{max\_lr}}{\mathrm{div\_factor}} \nearrow \mathrm{max\_lr} "
        r"\text{ over pct\_start} \cdot T,\ \text{then} \searrow "
        r"\tfrac{\mathrm{max\_lr}}{\mathrm{div\_factor} \cdot \mathrm{final\_div\_factor}},"
        r"\quad T = \text{epochs} \times \text{batches per epoch}",
        "OneCycleLR: lr rises from max_lr / div_factor to max_lr, then anneals far below.\n"
        "total_steps = epochs * batches per epoch, because it is stepped per batch: calling\n"
        "step() once more than total_steps raises ValueError. It also cycles momentum\n"
        "(Adam's beta1) inversely when cycle_momentum=True.",
        _onecycle,
        {
            "max_lr": _positive(None, "the peak lr (default: the run's lr)"),
            "pct_start": _unit(0.3, "share of the steps spent rising"),
            "anneal_strategy": _choice("cos", ("cos", "linear"), "shape of the rise and fall"),
            "three_phase": _bool(False, "add a third, annihilation phase"),
            "div_factor": _positive(25.0, "initial lr = max_lr / div_factor"),
            "final_div_factor": _positive(1e4, "final lr = initial lr / final_div_factor"),
            **_CYCLIC_MOMENTUM,
            "base_momentum": _momentum(0.85, "momentum at the lr peak"),
            "max_momentum": _momentum(0.95, "momentum at the start and the end"),
        },
        per_batch=True,
        geron="Géron's 1cycle: up to a peak, back down, then far below for the last steps.",
    ),
    Family(
        "cosine",
        "cosine · CosineAnnealingLR",
        "CosineAnnealingLR",
        r"\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})"
        r"\left(1 + \cos\tfrac{\pi t}{T_{max}}\right)",
        "CosineAnnealingLR: lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2.",
        lambda c: (
            "CosineAnnealingLR",
            {"T_max": c.get("T_max") or c.total, "eta_min": c.get("eta_min")},
        ),
        {
            "T_max": _int(None, "steps of one half cosine (default: the whole run)"),
            "eta_min": _nonnegative(0.0, "the lowest lr"),
        },
    ),
    Family(
        "cosine_restarts",
        "cosine · warm restarts",
        "CosineAnnealingWarmRestarts",
        r"\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})"
        r"\left(1 + \cos\tfrac{\pi T_{cur}}{T_i}\right),\quad T_i = T_0 \cdot T_{mult}^{\,i}",
        "CosineAnnealingWarmRestarts: a cosine from initial_lr to eta_min over T_0 steps,\n"
        "then back to initial_lr; each period is T_mult times the last.",
        lambda c: (
            "CosineAnnealingWarmRestarts",
            {k: c.get(k) for k in ("T_0", "T_mult", "eta_min")},
        ),
        {
            "T_0": _int(10, "steps until the first restart"),
            "T_mult": _int(1, "each period is T_mult times the last"),
            "eta_min": _nonnegative(0.0, "the lowest lr"),
        },
    ),
    Family(
        "warmup_cosine",
        "warmup + cosine",
        "SequentialLR(LinearLR, CosineAnnealingLR)",
        r"\eta_t = \eta_0\left(f + (1-f)\tfrac{t}{w}\right)\ (t < w),\quad "
        r"\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})"
        r"\left(1 + \cos\tfrac{\pi (t-w)}{T - w}\right)",
        "Warmup + cosine: LinearLR for `warmup` steps, then CosineAnnealingLR (SequentialLR).",
        _warmup_cosine,
        {
            "warmup": _int(5, "steps of linear warmup (LinearLR)"),
            "start_factor": _unit_incl(1 / 3, "warmup starts at lr · start_factor"),
            "eta_min": _nonnegative(0.0, "the lowest lr at the end of the cosine"),
        },
    ),
    Family(
        "polynomial",
        "polynomial · PolynomialLR",
        "PolynomialLR",
        r"\eta_t = \eta_0 \left(1 - \tfrac{\min(t,\ T)}{T}\right)^{p},"
        r"\quad T = \mathrm{total\_iters},\ p = \mathrm{power}",
        "PolynomialLR: lr = initial_lr * (1 - min(t, total_iters) / total_iters) ** power;\n"
        "it reaches 0 at total_iters and stays there.",
        lambda c: (
            "PolynomialLR",
            {"total_iters": c.get("total_iters") or c.total, "power": c.get("power")},
        ),
        {
            "total_iters": _int(None, "steps until lr reaches 0 (default: the whole run)"),
            "power": _positive(1.0, "the power; 1 is a straight line down to 0"),
        },
    ),
    Family(
        "linear",
        "linear · LinearLR",
        "LinearLR",
        r"\eta_t = \eta_0 \left(f_s + (f_e - f_s)\,\tfrac{\min(t,\ T)}{T}\right),"
        r"\quad f_s = \mathrm{start\_factor},\ f_e = \mathrm{end\_factor},"
        r"\ T = \mathrm{total\_iters}",
        "LinearLR: lr moves in a straight line from initial_lr * start_factor to\n"
        "initial_lr * end_factor over total_iters steps, then stays there.",
        lambda c: (
            "LinearLR",
            {k: c.get(k) for k in ("start_factor", "end_factor")}
            | {"total_iters": c.get("total_iters") or c.total},
        ),
        {
            "start_factor": _unit_incl(1 / 3, "lr starts at lr0 · start_factor"),
            "end_factor": _float(
                1.0, lambda v: 0 <= v <= 1, "in [0, 1]", "lr ends at lr0 · end_factor"
            ),
            "total_iters": _int(None, "steps of the straight line (default: the whole run)"),
        },
    ),
    Family(
        "lambda",
        "LambdaLR · your expression",
        "LambdaLR(lambda epoch: …)",
        r"\eta_t = \mathrm{lr\_lambda}(t) \cdot \mathrm{initial\_lr}",
        "LambdaLR: lr = lr_lambda(epoch) * initial_lr. lr_lambda returns a FACTOR, not an lr.",
        lambda c: ("LambdaLR", {"lr_lambda": f"lambda epoch: {c.expression}"}),
        factor=_lambda_factor,
    ),
]

FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILIES}
