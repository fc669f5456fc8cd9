"""The gradient noise scale B_noise = tr Σ / |G|² (McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training"): Σ the covariance of the per-example gradients over the training split, G
their mean (the full-batch gradient). A minibatch of B samples has gradient noise tr Σ / B, so
B_noise is the batch size at which that noise equals the signal: below it the best lr grows
about linearly with B, above it hardly at all, ε_opt(B) ≈ ε_max / (1 + B_noise / B).

- **No BatchNorm** (``noise_scale``): exact. The loss of one sample is its squared error
  (the MSE of a batch is their mean), so a per-example gradient is well defined; all of them come
  from ``torch.func`` (``vmap`` over samples of ``grad``), float64. Σ is the population
  covariance (divided by N): at the article's initial weights (seed 929, 3×4 tanh) B_noise = 0.72.
- **With BatchNorm** (``two_batch_noise_scale``): a sample's gradient depends on the batch it is
  in, so there is no per-example gradient. McCandlish's App. A estimator instead: the squared
  norm of minibatch gradients, E|G_b|² = |G|² + tr S · (1/b − 1/N) for batches of b drawn without
  replacement from the N training samples (S the sample covariance, N − 1), measured at a small
  b (``repeats`` random partitions of the split into batches, mean over all of them) and at the
  whole split (b = N: |G|² itself, BN normalising with the split's statistics). For networks
  without BN it estimates the exact value (``tests/test_batch_size.py`` checks it); with BN it
  depends on b, since BN's batch statistics are noise of their own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import grad, vmap

from .config import ModelConfig
from .why import full_batch_loss

REPEATS = 8  # random partitions of the split into batches, for the two-batch estimator


def _loss_of_batch(model: ModelConfig):
    """Returns f(theta (P,), X (b, F), y (b, 1)) -> the MSE of that batch (BN in train mode)."""

    def loss(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return full_batch_loss(model, theta.unsqueeze(0), X, y)[0]

    return loss


def per_example_gradients(
    model: ModelConfig, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Returns (K, N, P): the gradient of each sample's squared error at each of K parameter
    vectors (``theta`` (K, P), ``bnlr.models.layout`` order). No BatchNorm: with BN one sample
    has no gradient of its own."""
    if model.bn != "none":
        raise ValueError(
            f"per-example gradients of a BN {model.bn!r} network are not defined (a sample's "
            "gradient depends on its batch); use two_batch_noise_scale"
        )
    batch = _loss_of_batch(model)

    def one(theta_k, x, t):  # a batch of one sample: its squared error
        return batch(theta_k, x.unsqueeze(0), t.unsqueeze(0))

    return vmap(vmap(grad(one), (None, 0, 0)), (0, None, None))(theta, X, y)


def noise_scale(model: ModelConfig, theta, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Returns (K,) B_noise = tr Σ / |G|² at each parameter vector, exact (no BatchNorm).

    Args:
        theta: (K, P) flat parameters (or (P,)), float64 recommended.
        X, y: the training split, (N, F) and (N, 1).
    """
    theta = torch.as_tensor(np.atleast_2d(theta), dtype=X.dtype)
    g = per_example_gradients(model, theta, X, y)  # (K, N, P)
    mean = g.mean(1)  # (K, P): G, the full-batch gradient
    trace = ((g - mean.unsqueeze(1)) ** 2).sum(2).mean(1)  # tr Σ, Σ divided by N
    return (trace / (mean**2).sum(1)).numpy()


def from_two_batches(small_sq: np.ndarray, batch: int, full_sq: np.ndarray, n: int) -> np.ndarray:
    """Returns B_noise from E|G_b|² (``small_sq``, batches of ``batch`` drawn without replacement)
    and |G|² (``full_sq``, the whole split of ``n``): tr S = (E|G_b|² − |G|²) / (1/b − 1/n),
    tr Σ = tr S · (n − 1)/n. Exact when ``small_sq`` is the exact expectation.

    >>> round(float(from_two_batches(np.array(1.5), 2, np.array(1.0), 10**9)), 6)  # tr Σ/2 = 0.5
    1.0
    """
    if not 1 <= batch < n:
        raise ValueError(f"the small batch must lie in [1, {n}), got {batch}")
    trace = (small_sq - full_sq) / (1 / batch - 1 / n) * (n - 1) / n
    return trace / full_sq


def two_batch_noise_scale(
    model: ModelConfig,
    theta,
    X: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    repeats: int = REPEATS,
    seed: int = 0,
) -> np.ndarray:
    """Returns (K,) B_noise estimated from minibatch gradients of ``batch`` samples and the whole
    split's gradient (McCandlish App. A; any BN placement). The batches: ``repeats`` random
    partitions of the split (a generator seeded with ``seed``; the last partial batch left out)."""
    theta = torch.as_tensor(np.atleast_2d(theta), dtype=X.dtype)
    n = X.shape[0]
    loss = _loss_of_batch(model)
    per_batch = vmap(vmap(grad(loss), (None, 0, 0)), (0, None, None))
    gen = torch.Generator().manual_seed(seed)
    count = n // batch
    squares = []
    for _ in range(repeats):
        idx = torch.randperm(n, generator=gen)[: count * batch].reshape(count, batch)
        g = per_batch(theta, X[idx], y[idx])  # (K, count, P)
        squares.append((g**2).sum(2).mean(1))
    small = torch.stack(squares).mean(0).numpy()
    full = (vmap(grad(loss), (0, None, None))(theta, X, y) ** 2).sum(1).numpy()
    return from_two_batches(small, batch, full, n)


def estimator(model: ModelConfig, batch: int, n: int) -> str:
    """Returns which estimate ``along_training`` uses for ``model``, in words."""
    if model.bn == "none":
        return "exact (per-example gradients)"
    return f"two batch sizes ({batch} and {n})"


def along_training(
    model: ModelConfig, params: np.ndarray, X: torch.Tensor, y: torch.Tensor, batch: int
) -> np.ndarray:
    """Returns B_noise at each row of ``params`` ((E + 1, P): init and after each epoch; a NaN
    row, after a divergence, gives NaN): exact without BN, else from batches of ``batch`` and
    the whole split."""
    params = np.asarray(params, dtype=np.float64)
    out = np.full(len(params), np.nan)
    ok = np.isfinite(params).all(1)
    if ok.any():
        theta = torch.as_tensor(params[ok])
        if model.bn == "none":
            out[ok] = noise_scale(model, theta, X, y)
        else:
            out[ok] = two_batch_noise_scale(model, theta, X, y, min(batch, X.shape[0] - 1))
    return out
