"""The article's regression data and the per-run batch order.

``make_data`` draws X ~ N(0, 1) and y = (X ** degree) @ w (+ 1) + noise · N(0, 1) from a
generator seeded by the data config alone, then splits it 70/30 at random. ``batch_order``
gives each epoch's shuffled sample order for one run, from that run's own generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .config import DataConfig


@dataclass(frozen=True)
class Dataset:
    """The train and test splits, each X (N, F) and y (N, 1)."""

    X_train: torch.Tensor  # (N_train, F)
    y_train: torch.Tensor  # (N_train, 1)
    X_test: torch.Tensor  # (N_test, F)
    y_test: torch.Tensor  # (N_test, 1)


@lru_cache(maxsize=16)
def make_data(config: DataConfig = DataConfig(), dtype: torch.dtype = torch.float32) -> Dataset:
    """Returns the split data set; drawn in float64 and cast, so both dtypes see the same numbers.

    >>> d = make_data()
    >>> tuple(d.X_train.shape), tuple(d.y_test.shape)
    ((700, 5), (300, 1))
    """
    gen = torch.Generator().manual_seed(config.seed)
    w = torch.tensor(config.w, dtype=torch.float64)
    X = torch.randn(config.n, len(w), generator=gen, dtype=torch.float64)  # (N, F)
    y = (X**config.degree) @ w + (1.0 if config.bias else 0.0)  # (N,)
    y = y + config.noise * torch.randn(config.n, generator=gen, dtype=torch.float64)
    order = torch.randperm(config.n, generator=gen)
    tr, te = order[: config.n_train], order[config.n_train :]
    y = y.unsqueeze(1)  # (N, 1): same shape as the model's output, so MSELoss never broadcasts
    return Dataset(*(t.to(dtype).contiguous() for t in (X[tr], y[tr], X[te], y[te])))


def batch_order(n_train: int, epochs: int, generator: torch.Generator) -> torch.Tensor:
    """Returns (epochs, n_train) sample indices: one fresh permutation per epoch."""
    return torch.stack([torch.randperm(n_train, generator=generator) for _ in range(epochs)])
