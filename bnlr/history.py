"""What an engine returns for one run: per-epoch losses and the lr at every optimizer step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Cancelled(Exception):
    """Raised between epochs when the caller's ``cancel()`` returns True."""


@dataclass
class RunHistory:
    """Per-epoch eval losses and per-step lr / momentum of one run (NaN after divergence)."""

    train: np.ndarray  # (E,) MSE over the whole train split, model in eval mode
    test: np.ndarray  # (E,) MSE over the whole test split
    step_lr: np.ndarray  # (E, S) lr in effect at each optimizer step
    step_momentum: np.ndarray  # (E, S) SGD momentum or Adam beta1 at each step
    diverged_epoch: int | None = None  # first epoch (1-based) with a non-finite loss
    parameters: np.ndarray | None = None  # (E + 1, P) at init and after each epoch, if recorded
    step_loss: np.ndarray | None = None  # (E, S) each step's batch MSE before it, if recorded

    @classmethod
    def empty(cls, epochs: int, steps: int) -> RunHistory:
        nan = np.full
        return cls(
            nan(epochs, np.nan),
            nan(epochs, np.nan),
            nan((epochs, steps), np.nan),
            nan((epochs, steps), np.nan),
        )
