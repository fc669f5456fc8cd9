"""How a run starts, written once: generator, initial weights, batch order, optimizer, scheduler.

Every run draws from its own ``torch.Generator`` seeded with ``run.seed``: first the initial
weights (``nn.Linear``'s default init), then one shuffled batch order per epoch. Runs that differ
only in lr or schedule therefore share both: a controlled experiment. The reference engine and
the LR range test build a real ``nn.Module``, ``torch.optim`` optimizer and scheduler on top
(``torch_run``); the batched engine stacks the same draws (``start``). The step order inside an
epoch is ``bnlr.schedules.Stepper``'s. The generated script (``bnlr.codegen``) spells the same
protocol out in plain torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import RunConfig
from .data import Dataset, batch_order
from .models import MLP, initial_parameters
from .optimizers import make_optimizer
from .schedules import Stepper


def start(
    run: RunConfig, data: Dataset, epochs: int
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Returns the run's initial [(weight, bias), ...] and its batch order (epochs, N_train)."""
    n_train, n_features = data.X_train.shape
    generator = torch.Generator().manual_seed(run.seed)
    layers = initial_parameters(run.model, n_features, generator, data.X_train.dtype)
    order = batch_order(n_train, epochs, generator)  # (E, N_train), drawn after the weights
    return layers, order


@dataclass
class TorchRun:
    """A run as a PyTorch user writes it."""

    model: MLP
    optimizer: torch.optim.Optimizer
    stepper: Stepper  # the scheduler, stepped after each batch and after each epoch
    order: torch.Tensor  # (epochs, N_train) sample indices


def torch_run(run: RunConfig, data: Dataset, epochs: int, steps_per_epoch: int) -> TorchRun:
    """Returns the run's model (from its initial weights), optimizer, scheduler and batch order."""
    layers, order = start(run, data, epochs)
    model = MLP(run.model, data.X_train.shape[1], data.X_train.dtype).load_initial(layers)
    optimizer = make_optimizer(model.parameters(), run.optimizer, run.lr)
    return TorchRun(
        model, optimizer, Stepper(run.schedule, optimizer, epochs, steps_per_epoch), order
    )
