"""The reference engine: one plain PyTorch training loop per run. This is the ground truth.

It is the loop a PyTorch user writes: ``zero_grad`` → forward → ``MSELoss`` → ``backward`` →
``optimizer.step()``, the scheduler stepped after the optimizer (per batch or per epoch;
``ReduceLROnPlateau`` fed the run's own train or test loss), and after every epoch the model in
eval mode scored on the whole train and test splits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .config import Experiment, RunConfig
from .data import Dataset
from .history import Cancelled, RunHistory
from .models import MLP, layout
from .protocol import torch_run


def train_reference(
    experiment: Experiment,
    data: Dataset,
    tick: Callable[[int], None],
    cancel: Callable[[], bool] | None = None,
    record: bool = False,
    step_losses: bool = False,
) -> list[RunHistory]:
    """Returns one RunHistory per run of ``experiment``, trained one after another (with its
    parameters at init and after every epoch when ``record``, each batch's loss when
    ``step_losses``)."""
    return [
        _train_one(experiment, run, data, tick, cancel, record, step_losses)
        for run in experiment.runs
    ]


def flat_parameters(model: MLP, config) -> np.ndarray:
    """Returns the model's parameters as one float64 vector in ``models.layout`` order."""
    named = dict(model.named_parameters())
    names = [name for name, _ in layout(config, model.linears[0].in_features)]
    return torch.cat([named[n].detach().reshape(-1) for n in names]).double().numpy()


def _train_one(
    exp: Experiment,
    run: RunConfig,
    data: Dataset,
    tick,
    cancel,
    record: bool = False,
    step_losses: bool = False,
) -> RunHistory:
    r = torch_run(run, data, exp.epochs, exp.steps_per_epoch)
    model, optimizer, stepper = r.model, r.optimizer, r.stepper
    loss_fn = nn.MSELoss()
    hist = RunHistory.empty(exp.epochs, exp.steps_per_epoch)
    if record:
        first = flat_parameters(model, run.model)
        hist.parameters = np.full((exp.epochs + 1, len(first)), np.nan)
        hist.parameters[0] = first
    if step_losses:
        hist.step_loss = np.full((exp.epochs, exp.steps_per_epoch), np.nan)
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
            if step_losses:
                hist.step_loss[epoch, b] = loss.item()
        model.eval()
        with torch.no_grad():
            train_loss = loss_fn(model(data.X_train), data.y_train).item()
            test_loss = loss_fn(model(data.X_test), data.y_test).item()
        hist.train[epoch], hist.test[epoch] = train_loss, test_loss
        tick(1)
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            hist.diverged_epoch = epoch + 1  # its parameters stay NaN from here on
            tick(exp.epochs - epoch - 1)
            break
        if record:
            hist.parameters[epoch + 1] = flat_parameters(model, run.model)
        stepper.after_epoch(train_loss, test_loss)
    return hist
