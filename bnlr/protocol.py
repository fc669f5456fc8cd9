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

TWIN_SEED_OFFSET = 1_000_003  # the perturbation's generator: seed + this, never the run's own


def start(
    run: RunConfig, data: Dataset, epochs: int
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Returns the run's initial [(weight, bias), ...] and its batch order (epochs, N_train).

    A twin (``run.perturb`` > 0) starts from the same weights times 1 + perturb · N(0, 1), drawn
    from a generator of its own, and keeps the run's batch order.
    """
    n_train, n_features = data.X_train.shape
    generator = torch.Generator().manual_seed(run.seed)
    layers = initial_parameters(run.model, n_features, generator, data.X_train.dtype)
    order = batch_order(n_train, epochs, generator)  # (E, N_train), drawn after the weights
    if run.perturb:  # a twin: its own generator, so the batch order stays the run's
        twin = torch.Generator().manual_seed(run.seed + TWIN_SEED_OFFSET)
        layers = [
            tuple(
                p * (1 + run.perturb * torch.randn(p.shape, generator=twin, dtype=p.dtype))
                for p in layer
            )
            for layer in layers
        ]
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
