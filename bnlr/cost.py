"""What a request costs: seconds of one core on the demo's machine, estimated before training.

The cost of ``bnlr.train`` (batched engine) is not its sample-steps: it is a sum of what the
engine does, each counted from the config alone and weighted by a constant measured on this
machine (``python bench/cost.py --fit`` fits them; ``python bench/cost.py`` prints the estimate
beside the measured time at the corners of the app's controls):

- per optimizer step of a group of runs (one network shape): Python and dispatch overhead, per
  layer (more with BatchNorm) — the cost of a small batch;
- per parameter per step, all runs: the update and the per-step lr spread over theta;
- per sample per parameter: the forward and backward passes (train split) and the evaluation
  after every epoch (both splits);
- per run and epoch: the batch order, the evaluation, the tidy tables (one row per run × step);
- the LR range test: its rising runs, one per network and seed, trained together on the torch
  path (``lrfinder.range_test``). The ``rt_*`` terms are the plain PyTorch loop of
  ``lrfinder.run_range_test``: the calibration probe (``calibrate``).

``estimate(experiment)`` returns seconds; ``breakdown`` the same per term, which the app uses to
name the controls to lower. ``page_estimate`` adds a page's own work (analysis, chart specs);
``physics_estimate`` the Why page's exact Hessians (``hessian_seconds``). Every estimate reads the
config alone (nothing is trained or stepped), and asks ``bnlr.fused`` which path each group takes.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, replace

from . import fused
from .config import DataConfig, Experiment, ModelConfig, steps_per_epoch
from .models import layout
from .optimizers import OptimizerConfig

# Seconds per unit of each feature on the machine they were fitted on. The torch-path and shared
# terms: ``python bench/cost.py --fit`` (non-negative least squares on the relative error of CPU
# time over trainings and range tests, one torch thread), times a margin for that fit's median
# relative error, and the torch path's training terms raised again where the corner walk
# (``python bench/cost.py``) found its deepest corners over their estimate. The fused kernel's
# terms (fused_*): the same fit over trainings with the kernel; the compile term from compile
# times under load. The fits and their errors are in docs/performance.md.
COST_S = {
    "request": 0.0159,
    "group": 0.000691,
    "run": 0.000255,
    "step": 9.67e-05,
    "step_layer": 2.73e-05,
    "step_bn_layer": 0.000134,
    "step_param": 2.46e-08,
    "train_flop": 1.18e-09,
    "eval_flop": 0,
    "run_epoch": 6.95e-06,
    "order": 3.63e-08,
    "step_row": 3.99e-06,
    "fused_group": 0.001,
    "fused_block_step": 1.86e-07,
    "fused_train_flop": 1.08e-09,
    "fused_eval_flop": 0,
    "fused_compile": 0.35,
    "schedule_step": 3.8e-06,
    "rt_net": 0.0103,
    "rt_order": 6.9e-07,
    "rt_step": 0.000102,
    "rt_step_layer": 0.000113,
    "rt_flop": 4.81e-10,
}

# How much slower this host is than the machine COST_S was fitted on (``calibrate`` measures it;
# 1.0 until then). Every estimate is multiplied by it.
SPEED = 1.0

# What each feature is, and which app controls make it smaller (the refusal names them).
LOWER = {
    "request": "",
    "group": "depths, activations or BN placements",
    "run": "learning rates, seeds, depths, activations or BN placements",
    "step": "epochs or samples, or raise the batch size",
    "step_layer": "epochs, samples or depths, or raise the batch size",
    "step_bn_layer": "epochs, samples or BN placements, or raise the batch size",
    "step_param": "epochs, width, depths, learning rates or seeds, or raise the batch size",
    "train_flop": "width, depths, epochs, samples, learning rates or seeds",
    "eval_flop": "width, depths, epochs, samples, learning rates or seeds",
    "run_epoch": "epochs, learning rates or seeds",
    "order": "epochs, samples, learning rates or seeds",
    "step_row": "epochs, samples, learning rates or seeds, or raise the batch size",
    "fused_group": "depths, activations or BN placements",
    "fused_block_step": "epochs, samples, learning rates or seeds, or raise the batch size",
    "fused_train_flop": "width, depths, epochs, samples, learning rates or seeds",
    "fused_eval_flop": "width, depths, epochs, samples, learning rates or seeds",
    "fused_compile": "depths, activations or BN placements",
    "schedule_step": "epochs or samples, or raise the batch size",
    "rt_net": "range test batches, depths or seeds",
    "rt_order": "samples, depths or seeds",
    "rt_step": "range test batches, depths or seeds",
    "rt_step_layer": "range test batches, depths or seeds",
    "rt_flop": "range test batches, width or the batch size",
}


def _shape(model: ModelConfig, n_features: int) -> tuple[int, int, int]:
    """Returns (layers, parameters per run, hidden units) of a model."""
    sizes = (n_features, *model.widths, 1)
    params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    hidden = sum(model.widths)
    if model.bn != "none":
        params += 2 * hidden
    return len(sizes) - 1, params, hidden


def features(
    experiment: Experiment | Shape, range_test_batches: int = 0, torch_path: bool = False
) -> dict[str, float]:
    """Returns the count of each unit of work in ``experiment`` (and its range test), on the
    path each group takes now (``bnlr.fused.path``), or all on the torch path."""
    data, E = experiment.data, experiment.epochs
    S = experiment.steps_per_epoch
    n_train, n = data.n_train, data.n
    f = dict.fromkeys(COST_S, 0.0)
    f["request"] = 1.0
    groups, schedules = _tally(experiment)
    for (model, optimizer), R in groups:
        layers, params, hidden = _shape(model, data.n_features)
        per_sample = params + 2 * hidden  # multiply-adds, plus the activation (and BN) per unit
        f["group"] += 1
        f["run"] += R
        f["run_epoch"] += R * E
        f["step_row"] += R * E * S  # the tidy tables: one row per run and step
        route = (
            "torch"
            if torch_path
            else fused.path(model, data.n_features, optimizer.name, experiment.dtype)
        )
        if route != "torch":
            # the fused kernel: blocks of lanes, the whole epoch in one call
            lanes = fused.LANES[experiment.dtype]
            blocks = -(-R // lanes)
            f["fused_group"] += 1
            f["fused_block_step"] += blocks * E * S * (layers + params / 10)
            f["fused_train_flop"] += blocks * lanes * E * n_train * per_sample
            f["fused_eval_flop"] += blocks * lanes * E * n * per_sample
            f["fused_compile"] += (1 + params / 50) * (route == "compile")
            continue
        f["step"] += E * S
        f["step_layer"] += E * S * layers
        f["step_bn_layer"] += E * S * (layers - 1) * (model.bn != "none")
        f["step_param"] += E * S * R * params
        f["train_flop"] += R * E * n_train * per_sample
        f["eval_flop"] += R * E * n * per_sample
        f["order"] += R * E * n_train * (data.n_features + 1)
    # every (schedule, lr) is checked once by stepping its torch scheduler over the whole run
    f["schedule_step"] = schedules * E * S
    if range_test_batches:  # trained together on the torch path (``lrfinder.range_test``)
        for k, v in features(_range_tests(experiment, range_test_batches), 0, True).items():
            f[k] += v * (k != "request")
    return f


@functools.lru_cache(maxsize=64)  # (it keeps the experiments: a few pages' worth)
def _tally(experiment: Experiment | Shape) -> tuple[tuple, int]:
    """Returns ((((model, optimizer), runs), ...), distinct (schedule, lr, optimizer)) of an
    experiment: what ``features`` counts over its runs, once per experiment (a page asks for
    the same estimates on every rerun)."""
    groups = Counter((r.model, r.optimizer) for r in experiment.runs)
    schedules = len({(r.schedule, r.lr, r.optimizer) for r in experiment.runs})
    return tuple(groups.items()), schedules


def _range_tests(experiment: Experiment | Shape, batches: int) -> Shape:
    """The range tests of ``experiment`` as ``lrfinder.tests_of`` makes them: one rising run
    per network, optimizer and seed, over the epochs that hold ``batches``."""
    nets = {(r.model, r.optimizer, r.seed): r for r in experiment.runs}
    runs = tuple(_Run(m, o, 1e-5, seed, "exponential") for m, o, seed in nets)
    epochs = math.ceil(batches / experiment.steps_per_epoch)
    return Shape(runs, experiment.data, epochs, experiment.batch_size, experiment.dtype)


def loop_features(experiment: Experiment | Shape, batches: int) -> dict[str, float]:
    """The count of each unit of work of ``batches`` steps of ``lrfinder.run_range_test`` (a
    plain PyTorch loop) on every network and seed of ``experiment``: the calibration probe."""
    data, S = experiment.data, experiment.steps_per_epoch
    f = dict.fromkeys(("rt_net", "rt_order", "rt_step", "rt_step_layer", "rt_flop"), 0.0)
    for model, _, _ in {(r.model, r.optimizer, r.seed) for r in experiment.runs}:
        layers, params, hidden = _shape(model, data.n_features)
        f["rt_net"] += 1
        f["rt_order"] += data.n_train * math.ceil(batches / S)
        f["rt_step"] += batches
        f["rt_step_layer"] += batches * layers
        f["rt_flop"] += batches * experiment.batch_size * (params + 2 * hidden)
    return f


def breakdown(
    experiment: Experiment | Shape, range_test_batches: int = 0, torch_path: bool = False
) -> dict[str, float]:
    """Returns the estimated seconds of each term."""
    f = features(experiment, range_test_batches, torch_path)
    return {k: SPEED * COST_S[k] * v for k, v in f.items()}


def estimate(
    experiment: Experiment | Shape, range_test_batches: int = 0, torch_path: bool = False
) -> float:
    """Returns the estimated seconds (one core, this machine) to train ``experiment`` (as if
    every group took the torch path, with ``torch_path``: a yardstick for the pages' own work,
    calibrated against it)."""
    return sum(breakdown(experiment, range_test_batches, torch_path).values())


def result_bytes(experiment: Experiment | Shape) -> int:
    """Returns about how many bytes the trained result holds (history, steps and runs tables)."""
    R, E, S = len(experiment.runs), experiment.epochs, experiment.steps_per_epoch
    return R * E * S * STEP_ROW_BYTES + R * E * 2 * HISTORY_ROW_BYTES + R * 400


STEP_ROW_BYTES = 40  # run, epoch, step (int64), lr, momentum (float64)
HISTORY_ROW_BYTES = 420  # 17 columns, 6 of them short strings (pandas memory_usage, deep)


@dataclass(frozen=True)
class Refusal:
    """Why a request is over the cap: its estimate, the cap, and the controls to lower."""

    seconds: float
    cap: float
    lower: str

    def message(self, what: str = "this setting", work: str = "training") -> str:
        return (
            f"{what} would take about {self.seconds:.1f} s of {work} on this server; the "
            f"demo's cap is {self.cap:g} s per request, so that one link cannot hold the "
            f"machine. Lower {self.lower}."
        )


def lower_what(experiment: Experiment | Shape, range_test_batches: int = 0, also=()) -> str:
    """Returns the controls to lower, in one list: those of the two largest terms of the
    estimate (after ``also``, controls named first), e.g. "epochs, samples or depths, or raise
    the batch size"."""
    terms = sorted(breakdown(experiment, range_test_batches).items(), key=lambda kv: -kv[1])
    names, raise_batch, picked = list(also), False, 0
    for name, _ in terms:
        if not LOWER[name]:
            continue
        text = LOWER[name]
        raise_batch |= text.endswith(_RAISE)
        for part in text.removesuffix(_RAISE).split(", "):
            names += [n for n in part.split(" or ") if n not in names]
        picked += 1
        if picked == 2:
            break
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return listed + (_RAISE if raise_batch else "")


_RAISE = ", or raise the batch size"


@dataclass(frozen=True)
class _Run:
    model: ModelConfig
    optimizer: OptimizerConfig
    lr: float
    seed: int
    schedule: str


@dataclass(frozen=True)
class Shape:
    """What the estimate reads of an experiment, without validating it: building a Grid steps
    every schedule's torch scheduler over the whole run, which is itself a cost to cap."""

    runs: tuple[_Run, ...]
    data: DataConfig
    epochs: int
    batch_size: int
    dtype: str = "float32"

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.data.n_train, self.batch_size)


def grid_shape(
    depths,
    width: int,
    activations,
    bns,
    lrs,
    seeds,
    schedules=("constant",),
    optimizer: OptimizerConfig = OptimizerConfig(),
    data: DataConfig = DataConfig(),
    epochs: int = 40,
    batch_size: int = 50,
    bn_momentum: float = 0.1,
    dtype: str = "float32",
    **_,
) -> Shape:
    """Returns the Shape of ``bnlr.Grid(...)`` with these arguments (cheap: nothing is stepped)."""
    models = [
        ModelConfig((width,) * d, a, b, bn_momentum)
        for d in depths
        for a in activations
        for b in bns
    ]
    runs = tuple(
        _Run(m, optimizer, float(lr), seed, sched)
        for m in models
        for sched in schedules
        for lr in lrs
        for seed in seeds
    )
    return Shape(runs, data, int(epochs), int(batch_size), dtype)


# ---------------------------------------------------------------- a page's own work

# What a page does besides training (analysis, chart specs; the playground's per-batch lr tables,
# code and optimizer-state panels), as a factor on its training's torch-path estimate (the
# yardstick it was measured against), set from the corner walk's measured page CPU.
PAGE_FACTOR = {"lr_sensitivity": 1.0, "lr_curve": 1.45, "schedules": 2.0}


def page_estimate(
    experiment: Experiment | Shape, range_test_batches: int = 0, factor: float = 1.0
) -> float:
    """Returns the estimated seconds of a page's request: its training (on the path each group
    takes), plus the page's own work as (factor − 1) × the training's torch-path estimate (the
    LR curve, with its range test, × its own factor)."""
    total = factor * (PAGE_FACTOR["lr_curve"] if range_test_batches else 1.0)
    secs = estimate(experiment, range_test_batches)
    if total > 1:
        secs += (total - 1) * estimate(experiment, range_test_batches, torch_path=True)
    return secs


# ---------------------------------------------------------------- exact Hessians (the Why page)

# CPU seconds per unit of an exact Hessian's work, N·P·(P + 12·depth·width²) (bnlr.sharpness:
# each of the P directions goes through the layers above its own, ~12·width² flops a layer), per
# BN placement (BN's tangents make a unit dearer), measured for 3×4 tanh networks on one thread
# (bench/sharpness.py). A unit grows with the samples as they fall out of the cache, hence
# · (1 + N / HESSIAN_CACHE_N). The eigenvalues cost ~1e-9·P³ s more.
HESSIAN_UNIT_S = {"none": 0.55e-10, "pre": 1.02e-10, "post": 0.84e-10}
HESSIAN_CACHE_N = 18_000
WHY_PAGE_S = 1.0  # the Why page's own work besides training and Hessians (its charts and tables)
WHY_ROW_S = 3e-4  # ... and per run and epoch (its measurement tables)


def hessian_seconds(model: ModelConfig, data: DataConfig) -> float:
    """Returns the estimated CPU seconds of one exact Hessian of ``model`` over the training
    split, and of its largest eigenvalue."""
    p = sum(math.prod(shape) for _, shape in layout(model, data.n_features))
    width, depth = max(model.widths), len(model.widths)
    unit = HESSIAN_UNIT_S[model.bn] * (1 + data.n_train / HESSIAN_CACHE_N)
    return SPEED * (unit * data.n_train * p * (p + 12 * depth * width**2) + 1e-9 * p**3)


def physics_estimate(experiment: Experiment, cores: int, measured: int | None = None) -> float:
    """Returns the estimated seconds of the Why page: its runs and their twins in float64, an
    exact Hessian per run and epoch spread over ``cores`` threads (bnlr.sharpness), and the
    page's own work. Fitted to the corner walk: the page's wall time is about a second plus the
    Hessians' CPU over the cores, the twins' training a small part. ``measured``: Hessians
    after that many epochs only (a preview's, ``bnlr.why.preview_epochs``)."""
    from .why import with_twins

    twins = with_twins(replace(experiment, dtype="float64"))
    per_epoch = sum(hessian_seconds(r.model, experiment.data) for r in experiment.runs)
    cores = max(1, min(cores, len(experiment.runs)))
    epochs = experiment.epochs + 1 if measured is None else measured  # init and every epoch
    rows = len(experiment.runs) * (experiment.epochs + 1)
    own = SPEED * (WHY_PAGE_S + WHY_ROW_S * rows)
    replay = adam_replay_estimate(experiment)  # Adam's second moment (bnlr.preconditioned)
    return page_estimate(twins) + per_epoch * epochs / cores + own + replay


def initial_sharpness_estimate(experiment: Experiment) -> float:
    """Returns the seconds of ``why.initial_sharpness``: an exact Hessian and its eigenvalues
    per network and seed."""
    nets = {(r.model, r.seed) for r in experiment.runs}
    return sum(hessian_seconds(model, experiment.data) for model, _ in nets)


# CPU seconds of one run's full-batch loss and gradient per sample and parameter (the Hessian
# kernel's forward and backward pass without tangents, bnlr.sharpness.losses_and_gradients),
# measured for the article's networks against HESSIAN_UNIT_S on the same machine.
GD_UNIT_S = 1.9e-9
ADAM_REPLAY_FACTOR = 1.5  # the Adam replay's numpy update and per-step calls, over its gradients


def gd_seconds(model: ModelConfig, data: DataConfig, samples: int | None = None) -> float:
    """Returns the estimated CPU seconds of one gradient step of one run (all of the training
    split, or ``samples`` of it)."""
    p = sum(math.prod(shape) for _, shape in layout(model, data.n_features))
    return SPEED * GD_UNIT_S * (samples or data.n_train) * p


def past_estimate(past, cores: int) -> float:
    """Returns the estimated seconds of ``bnlr.edge.trajectories(past)``: per run, ``steps``
    full-batch gradient steps and an exact Hessian at every measured step, spread over
    ``cores`` threads. Runs that diverge stop early, so this is an upper bound."""
    measured = sum(past.measured(t) for t in range(past.steps + 1))
    per_run = sum(
        past.steps * gd_seconds(m, past.data) + measured * hessian_seconds(m, past.data)
        for m in past.models
    )
    return per_run * len(past.seeds) * len(past.factors) / max(1, cores)


def adam_replay_estimate(experiment: Experiment) -> float:
    """Returns the estimated CPU seconds of ``bnlr.preconditioned.replay_adam``: every Adam run's
    mini-batch steps again, and a second eigen-decomposition per run and epoch."""
    adam = [r for r in experiment.runs if r.optimizer.name in ("adam", "adamw")]
    steps = experiment.epochs * experiment.steps_per_epoch
    batch = experiment.batch_size
    return sum(
        ADAM_REPLAY_FACTOR * steps * gd_seconds(r.model, experiment.data, batch) for r in adam
    )


# ---------------------------------------------------------------- this host against the fit's

PROBE_BATCHES = 60  # plain-PyTorch steps per probe network
PROBE_TRIES = 3  # the probe runs this many times at most (the fastest counts) ...
PROBE_CPU_S = 1.0  # ... within this much CPU
SPEED_RANGE = (0.5, 20.0)  # clipped to this: below 1, the clock bound (ui.jobs) is the backstop


@dataclass(frozen=True)
class Calibration:
    """What the probe measured: its CPU seconds here, what COST_S predicts for it, the ratio."""

    measured_s: float
    predicted_s: float
    speed: float  # measured / predicted, clipped to SPEED_RANGE

    def describe(self) -> str:
        return (
            f"{self.speed:.2f} (probe {self.measured_s * 1e3:.0f} ms of CPU here, "
            f"{self.predicted_s * 1e3:.0f} ms on the machine the costs were fitted on)"
        )


def probe_experiment() -> Experiment:
    """The probe's runs: the article's depth-3 networks, with and without BN."""
    from .config import Grid

    return Grid(depths=(3,), lrs=(0.01,), seeds=(929,), epochs=1).experiment


def calibrate(apply: bool = True) -> Calibration:
    """Measures this host against the machine COST_S was fitted on, and (``apply``) sets SPEED.

    The probe is a plain-PyTorch loop (the range test's, with an lr too small to stop it early)
    over the article's networks, timed in CPU seconds of this thread, fastest of up to
    PROBE_TRIES within PROBE_CPU_S; COST_S's range-test terms predict it. Per-op speed differs
    3–4× between the CPUs this runs on, and the torch path, the range test and the Hessians
    are all op-bound, so one factor scales every estimate.
    """
    import time

    import torch

    from .data import make_data
    from .lrfinder import RangeTest, run_range_test

    global SPEED
    experiment = probe_experiment()
    test = RangeTest(start_lr=1e-7, end_lr=1e-6, num_it=PROBE_BATCHES)
    predicted = sum(COST_S[k] * v for k, v in loop_features(experiment, PROBE_BATCHES).items())
    times, spent = [], 0.0
    while len(times) < PROBE_TRIES and spent < PROBE_CPU_S:
        start = time.thread_time()
        data = make_data(experiment.data, getattr(torch, experiment.dtype))
        for run in experiment.runs:
            run_range_test(run, experiment, test, data)
        times.append(time.thread_time() - start)
        spent += times[-1]
    speed = min(max(min(times) / predicted, SPEED_RANGE[0]), SPEED_RANGE[1])
    if apply:
        SPEED = speed
    return Calibration(min(times), predicted, speed)
