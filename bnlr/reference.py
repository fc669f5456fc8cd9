"""The reference engine: one plain PyTorch training loop per run. This is the ground truth.

It is the loop a PyTorch user writes: ``zero_grad`` → forward → ``MSELoss`` → ``backward`` →
``optimizer.step()``, the scheduler stepped after the optimizer (per batch or per epoch;
``ReduceLROnPlateau`` fed the run's own train or test loss), and after every epoch the model in
eval mode scored on the whole train and test splits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .config import Experiment, RunConfig
from .data import Dataset, batch_order
from .history import Cancelled, RunHistory
from .models import MLP, initial_parameters
from .schedules import build_scheduler, group_momentum, make_optimizer, parse_schedule


def train_reference(
    experiment: Experiment,
    data: Dataset,
    tick: Callable[[int], None],
    cancel: Callable[[], bool] | None = None,
) -> list[RunHistory]:
    """Returns one RunHistory per run of ``experiment``, trained one after another."""
    return [_train_one(experiment, run, data, tick, cancel) for run in experiment.runs]


def _train_one(exp: Experiment, run: RunConfig, data: Dataset, tick, cancel) -> RunHistory:
    dtype = getattr(torch, exp.dtype)
    gen = torch.Generator().manual_seed(run.seed)
    n_train, n_features = data.X_train.shape
    model = MLP(run.model, n_features, dtype).load_initial(
        initial_parameters(run.model, n_features, gen, dtype)
    )
    order = batch_order(n_train, exp.epochs, gen)  # (E, N_train)
    optimizer = make_optimizer(model.parameters(), run.optimizer, run.lr)
    spec = parse_schedule(run.schedule)
    scheduler = build_scheduler(spec, optimizer, exp.epochs, exp.steps_per_epoch)
    loss_fn = nn.MSELoss()
    group = optimizer.param_groups[0]
    hist = RunHistory.empty(exp.epochs, exp.steps_per_epoch)
    for epoch in range(exp.epochs):
        if cancel is not None and cancel():
            raise Cancelled()
        model.train()
        for b, idx in enumerate(order[epoch].split(exp.batch_size)):
            hist.step_lr[epoch, b] = group["lr"]
            hist.step_momentum[epoch, b] = group_momentum(group)
            optimizer.zero_grad()
            loss = loss_fn(model(data.X_train[idx]), data.y_train[idx])
            loss.backward()
            optimizer.step()
            if scheduler is not None and spec.every == "batch":
                scheduler.step()
        model.eval()
        with torch.no_grad():
            train_loss = loss_fn(model(data.X_train), data.y_train).item()
            test_loss = loss_fn(model(data.X_test), data.y_test).item()
        hist.train[epoch], hist.test[epoch] = train_loss, test_loss
        tick(1)
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            hist.diverged_epoch = epoch + 1
            tick(exp.epochs - epoch - 1)
            break
        if scheduler is not None and spec.every == "epoch":
            if spec.name == "plateau":
                scheduler.step(train_loss if spec.get("monitor") == "train" else test_loss)
            else:
                scheduler.step()
    return hist
