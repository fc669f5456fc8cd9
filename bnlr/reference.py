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
from .data import Dataset
from .history import Cancelled, RunHistory
from .protocol import torch_run


def train_reference(
    experiment: Experiment,
    data: Dataset,
    tick: Callable[[int], None],
    cancel: Callable[[], bool] | None = None,
) -> list[RunHistory]:
    """Returns one RunHistory per run of ``experiment``, trained one after another."""
    return [_train_one(experiment, run, data, tick, cancel) for run in experiment.runs]


def _train_one(exp: Experiment, run: RunConfig, data: Dataset, tick, cancel) -> RunHistory:
    r = torch_run(run, data, exp.epochs, exp.steps_per_epoch)
    model, optimizer, stepper = r.model, r.optimizer, r.stepper
    loss_fn = nn.MSELoss()
    hist = RunHistory.empty(exp.epochs, exp.steps_per_epoch)
    for epoch in range(exp.epochs):
        if cancel is not None and cancel():
            raise Cancelled()
        model.train()
        for b, idx in enumerate(r.order[epoch].split(exp.batch_size)):
            hist.step_lr[epoch, b] = stepper.lr
            hist.step_momentum[epoch, b] = stepper.momentum
            optimizer.zero_grad()
            loss = loss_fn(model(data.X_train[idx]), data.y_train[idx])
            loss.backward()
            optimizer.step()
            stepper.after_batch()
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
        stepper.after_epoch(train_loss, test_loss)
    return hist
