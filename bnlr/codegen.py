"""The plain PyTorch behind a bnlr experiment: a copyable script, and what its optimizer sees.

``script(experiment)`` writes a self-contained Python file (it imports only ``torch`` and
``math``) that trains the chosen runs exactly as ``bnlr.reference`` does — same data, same
initial weights, same batch order, the real ``torch.optim`` optimizer and
``torch.optim.lr_scheduler`` scheduler with every argument resolved, the scheduler stepped in
the right place — and prints CSV ``run,epoch,train_loss,test_loss``. Its losses equal
``bnlr.train(experiment, engine="reference")`` to the last bit (``tests/test_codegen.py``).

``optimizer_states(...)`` replays a schedule on a bare optimizer and returns
``optimizer.state_dict()["param_groups"]`` before training and after each ``scheduler.step()``:
the article's example (SGD lr=0.05, ``LambdaLR(lambda epoch: 0.5 ** epoch)``) shows
``initial_lr: 0.05`` beside ``lr: 0.05``, then lr 0.025, 0.0125, ...
"""

from __future__ import annotations

import ast
import textwrap
import warnings
from collections.abc import Sequence

import pandas as pd

from .config import Experiment, RunConfig
from .families import FAMILIES
from .optimizers import OptimizerConfig, bare_optimizer, source
from .safe_expr import MATH_NAMES, parse_factor
from .schedules import ScheduleSpec, Stepper, parse_schedule, scheduler_arguments


def script(experiment: Experiment, runs: Sequence[int] | None = None) -> str:
    """Returns a standalone PyTorch script reproducing ``runs`` of ``experiment`` (all by default).

    Args:
        experiment: the runs, data, epochs, batch size and dtype.
        runs: indices into ``experiment.runs``; the script prints these indices in its ``run``
            column.

    >>> import bnlr
    >>> grid = bnlr.Grid(depths=(3,), bns=("none",), lrs=(0.05,), schedules=("lambda:0.5**epoch",))
    >>> code = script(grid.experiment)
    >>> "LambdaLR(optimizer, lr_lambda=lambda epoch: 0.5 ** epoch)" in code
    True
    """
    indices = list(range(len(experiment.runs))) if runs is None else list(runs)
    if not indices:
        raise ValueError("script needs at least one run")
    for i in indices:
        if not (isinstance(i, int) and 0 <= i < len(experiment.runs)):
            raise ValueError(
                f"run index {i!r} out of range; the experiment has {len(experiment.runs)} runs"
            )
    chosen = [(i, experiment.runs[i]) for i in indices]
    optimizers = _distinct([r.optimizer for _, r in chosen], _optimizer_name)
    families = {
        _resolved(r, experiment): parse_schedule(r.schedule).name for _, r in reversed(chosen)
    }
    schedulers = _distinct(
        [_resolved(r, experiment) for _, r in chosen], lambda key: _scheduler_name(families[key])
    )
    d = experiment.data
    schedules = sorted({r.schedule for _, r in chosen})
    listed = textwrap.fill(
        ", ".join(schedules), 96, initial_indent="    ", subsequent_indent="    "
    )
    parts = [
        _HEADER.format(
            count=len(chosen),
            s="s" if len(chosen) > 1 else "",
            schedules=listed,
            dtype=experiment.dtype,
            epochs=experiment.epochs,
            batch_size=experiment.batch_size,
            seed=d.seed,
            n=d.n,
            w=d.w,
            degree=d.degree,
            noise=d.noise,
            n_train=d.n_train,
            bias=" + 1.0" if d.bias else "",
        )
    ]
    parts += [_optimizer_source(name, cfg) for cfg, name in optimizers.items()]
    parts += [_scheduler_source(name, key, families[key]) for key, name in schedulers.items()]
    rows = []
    for i, r in chosen:
        key = _resolved(r, experiment)
        m = r.model
        rows.append(
            f"    dict(run={i}, widths={m.widths!r}, activation={m.activation!r}, bn={m.bn!r}, "
            f"bn_momentum={m.bn_momentum!r},\n         lr={r.lr!r}, seed={r.seed}, "
            f"optimizer={optimizers[r.optimizer]}, scheduler={schedulers[key]}, "
            f"every={key[2]!r}{', monitor=' + repr(key[3]) if key[3] else ''}),  # {r.schedule}"
        )
    parts.append(_RUNS.format(rows="\n".join(rows)))
    parts.append(_LOOP)
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"


def _distinct(keys: list, base_name) -> dict:
    """Returns {key: unique function name} in first-seen order."""
    names: dict = {}
    for key in keys:
        if key not in names:
            name = base_name(key)
            taken = sum(1 for v in names.values() if v == name or v.startswith(name + "_"))
            names[key] = name if not taken else f"{name}_{taken + 1}"
    return names


def _resolved(run: RunConfig, exp: Experiment) -> tuple:
    """Returns a hashable (class, kwargs source, every, monitor) for the run's scheduler."""
    spec = parse_schedule(run.schedule)
    args = scheduler_arguments(spec, run.lr, exp.epochs, exp.steps_per_epoch)
    if args is None:
        return (None, "", spec.every, None)
    cls, kwargs = args
    return (cls, _kwargs_source(spec, cls, kwargs), spec.every, spec.monitor)


def _kwargs_source(spec: ScheduleSpec, cls: str, kwargs: dict) -> tuple[str, ...]:
    """Returns the keyword arguments as source, one ``key=value`` each (SequentialLR: its repr)."""
    if cls == "LambdaLR":
        return ("lr_lambda=" + _lambda_source(spec, kwargs["lr_lambda"]),)
    if cls == "SequentialLR":
        return (repr(kwargs),)  # rendered by _scheduler_source
    return tuple(f"{k}={v!r}" for k, v in kwargs.items())


def _lambda_source(spec: ScheduleSpec, source: str) -> str:
    """Returns ``lambda epoch: ...`` with math functions spelled ``math.exp`` etc."""
    if spec.name == "lambda":
        parse_factor(spec.expression)  # only a validated, plain arithmetic expression gets here
    body = ast.parse(source.partition(":")[2].strip(), mode="eval")

    class _Qualify(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name):
            if node.id in MATH_NAMES:
                return ast.copy_location(
                    ast.Attribute(ast.Name("math", ast.Load()), node.id, ast.Load()), node
                )
            return node

    return "lambda epoch: " + ast.unparse(_Qualify().visit(body))


def _optimizer_name(cfg: OptimizerConfig) -> str:
    return f"make_{cfg.name}"


def _scheduler_name(family: str) -> str:
    return "no_scheduler" if family == "constant" else f"make_{family}_scheduler"


def _optimizer_source(name: str, cfg: OptimizerConfig) -> str:
    return (
        f'def {name}(params, lr):\n    """Returns the optimizer ({cfg.label})."""\n'
        f"    return {source(cfg)}"
    )


def _scheduler_source(name: str, key: tuple, family: str) -> str:
    cls, source, every, _monitor = key
    if cls is None:
        return (
            f"def {name}(optimizer):\n"
            '    """Constant lr: no scheduler; the optimizer keeps its lr."""\n'
            "    return None"
        )
    doc = f'    """Returns the {cls}, stepped once per {every}."""\n'
    comment = "    # " + FAMILIES[family].explain.replace("\n", "\n    # ") + "\n"
    if cls == "SequentialLR":
        kwargs = ast.literal_eval(source[0])
        (c1, k1), (c2, k2) = kwargs["schedulers"]
        fmt = lambda kw: ", ".join(f"{k}={v!r}" for k, v in kw.items())  # noqa: E731
        return (
            f"def {name}(optimizer):\n{doc}{comment}"
            f"    warmup = lr_scheduler.{c1}(optimizer, {fmt(k1)})\n"
            f"    cosine = lr_scheduler.{c2}(optimizer, {fmt(k2)})\n"
            f"    return lr_scheduler.SequentialLR(optimizer, [warmup, cosine], "
            f"milestones={kwargs['milestones']!r})"
        )
    call = f"    return lr_scheduler.{cls}(optimizer, {', '.join(source)})"
    if len(call) > 100:
        call = (
            f"    return lr_scheduler.{cls}(\n        optimizer,\n"
            + "".join(f"        {a},\n" for a in source)
            + "    )"
        )
    return f"def {name}(optimizer):\n{doc}{comment}{call}"


def optimizer_states(
    schedule: str,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    optimizer: OptimizerConfig = OptimizerConfig(),
    steps: int = 3,
    metric: float = 1.0,
) -> list[dict]:
    """Returns ``optimizer.state_dict()["param_groups"][0]`` before training and after each of the
    first ``steps`` calls to ``scheduler.step()``, with the scheduler's ``get_last_lr()`` beside it.

    Each entry is ``{"step": k, "get_last_lr": [...], "param_group": {...}}`` (k = 0 before
    training). The optimizer steps before each scheduler step, as in training, on a parameter
    without a gradient (so nothing moves but the schedule). ReduceLROnPlateau is fed ``metric``
    every time: a loss that never improves.

    >>> states = optimizer_states("lambda:0.5**epoch", 0.05, 3, 14, steps=2)
    >>> [s["param_group"]["lr"] for s in states]
    [0.05, 0.025, 0.0125]
    """
    opt = bare_optimizer(optimizer, lr)
    stepper = Stepper(schedule, opt, epochs, steps_per_epoch)

    def snapshot(k: int) -> dict:
        group = dict(opt.state_dict()["param_groups"][0])
        sched = stepper.scheduler
        last = sched.get_last_lr() if sched is not None else [group["lr"]]
        return {
            "step": k,
            "get_last_lr": [float(v) for v in last],
            "param_group": group,
            "momentum": stepper.momentum,
        }

    states = [snapshot(0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(1, min(steps, stepper.spec.steps(epochs, steps_per_epoch)) + 1):
            opt.step()
            stepper.step(metric)
            states.append(snapshot(k))
    return states


def state_table(states: list[dict]) -> pd.DataFrame:
    """Returns ``optimizer_states`` as a table: one row per ``scheduler.step()`` call."""
    return pd.DataFrame(
        {
            "after scheduler.step() #": [s["step"] for s in states],
            "param_groups[0]['lr']": [s["param_group"]["lr"] for s in states],
            "get_last_lr()": [s["get_last_lr"][0] for s in states],
            "initial_lr": [s["param_group"].get("initial_lr") for s in states],
            "momentum / beta1": [s["momentum"] for s in states],
        }
    )


_HEADER = '''
"""Trains {count} run{s} of a bnlr experiment in plain PyTorch, with the schedules
{schedules}

Generated by bnlr.codegen: the same numbers as bnlr's reference engine run with one thread,
to the last bit (same torch version). Run it with
    python this_file.py > losses.csv
It prints CSV run,epoch,train_loss,test_loss: the MSE over the whole train and test splits
after each epoch, the model in eval mode.
"""
import math

import torch
from torch import nn
from torch.optim import lr_scheduler

# One intra-op thread, as bnlr's app and CLI: these networks are tiny (threads only spin), and a
# parallel sum rounds differently with another thread count.
torch.set_num_threads(1)

DTYPE = torch.{dtype}
EPOCHS = {epochs}
BATCH_SIZE = {batch_size}


def make_data(seed={seed}, n={n}, w={w!r}, degree={degree}, noise={noise!r}, n_train={n_train}):
    """Returns X_train (N, F), y_train (N, 1), X_test, y_test.

    The targets are y = (X ** degree) @ w + noise * N(0, 1).
    """
    gen = torch.Generator().manual_seed(seed)  # the data's own RNG: the global one is never touched
    w = torch.tensor(w, dtype=torch.float64)
    # Drawn in float64 and cast at the end, so float32 and float64 runs see the same data.
    X = torch.randn(n, len(w), generator=gen, dtype=torch.float64)  # (N, F)
    y = (X ** degree) @ w{bias}  # (N,)
    y = y + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    order = torch.randperm(n, generator=gen)  # a random 70/30 split
    train, test = order[:n_train], order[n_train:]
    y = y.unsqueeze(1)  # (N, 1), the model's output shape: MSELoss never broadcasts
    return [t.to(DTYPE) for t in (X[train], y[train], X[test], y[test])]


def make_linear(fan_in, fan_out, gen):
    """Returns nn.Linear(fan_in, fan_out) with nn.Linear's default init, drawn from `gen`."""
    layer = nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=DTYPE)  # skips the global-RNG init
    w = torch.empty(fan_out, fan_in, dtype=torch.float64)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)  # as nn.Linear.reset_parameters
    b = torch.empty(fan_out, dtype=torch.float64)
    bound = 1 / math.sqrt(fan_in)
    nn.init.uniform_(b, -bound, bound, generator=gen)
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    return layer


ACTIVATIONS = {{
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}}


def make_model(widths, activation, bn, bn_momentum, in_features, gen):
    """Returns the MLP: the hidden layers, then Linear(., 1).

    Each hidden layer is Linear -> [BN if "pre"] -> activation -> [BN if "post"].
    """
    layers, sizes = [], [in_features, *widths]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers.append(make_linear(fan_in, fan_out, gen))
        if bn == "pre":
            layers.append(nn.BatchNorm1d(fan_out, momentum=bn_momentum, dtype=DTYPE))
        layers.append(ACTIVATIONS[activation]())
        if bn == "post":
            layers.append(nn.BatchNorm1d(fan_out, momentum=bn_momentum, dtype=DTYPE))
    layers.append(make_linear(sizes[-1], 1, gen))
    return nn.Sequential(*layers)
'''

_RUNS = """
# One row per run. Runs with the same seed share initial weights and batch order: a controlled
# experiment, where only the lr or the schedule differs.
RUNS = [
{rows}
]
"""

_LOOP = '''
def train(run, X_train, y_train, X_test, y_test):
    """Trains one run, printing its per-epoch losses as CSV rows."""
    # the run's RNG: first the weights, then batch orders
    gen = torch.Generator().manual_seed(run["seed"])
    model = make_model(
        run["widths"], run["activation"], run["bn"], run["bn_momentum"], X_train.shape[1], gen
    )
    optimizer = run["optimizer"](model.parameters(), run["lr"])
    scheduler = run["scheduler"](optimizer)  # records initial_lr in optimizer.param_groups
    loss_fn = nn.MSELoss()
    for epoch in range(1, EPOCHS + 1):
        model.train()
        # The lr in effect is optimizer.param_groups[0]["lr"]: what optimizer.step() reads.
        # scheduler.get_last_lr() is the scheduler's record of the lr it last set; after
        # scheduler.step() both hold the lr of the COMING step, not the one just trained.
        # (Never call scheduler.get_lr(): an internal that computes the next value and warns.)
        for idx in torch.randperm(len(X_train), generator=gen).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss = loss_fn(model(X_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
            if scheduler is not None and run["every"] == "batch":
                # AFTER optimizer.step(); the other order skips the schedule's first lr
                scheduler.step()
        model.eval()  # BatchNorm uses its running statistics from here on
        with torch.no_grad():
            train_loss = loss_fn(model(X_train), y_train).item()
            test_loss = loss_fn(model(X_test), y_test).item()
        print(f"{run['run']},{epoch},{train_loss!r},{test_loss!r}")
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            break  # diverged: lr too large for this model
        if scheduler is None or run["every"] != "epoch":
            continue
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            # it needs the metric
            scheduler.step(train_loss if run["monitor"] == "train" else test_loss)
        else:
            scheduler.step()  # once per epoch, after the epoch's optimizer steps


if __name__ == "__main__":
    data = make_data()
    print("run,epoch,train_loss,test_loss")
    for run in RUNS:
        train(run, *data)
'''
