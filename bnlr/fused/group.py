"""``FusedGroup``: a group's runs in blocks of ``LANES`` lanes, one kernel call per epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .args import STATS, call
from .shape import LANES, Shape, scratch_rows


class FusedGroup:
    """R runs of one network ``shape``: their parameters, BatchNorm statistics and optimizer
    state as blocks of ``self.L`` runs, trained one epoch per ``epoch`` call by ``kernel``.

    Args:
        kernel: the compiled epoch kernel of ``shape`` (``bnlr.fused.kernel``).
        params: the parameter blocks in theta's order, (R, …) each: each Linear's [W | b], then
            BN gamma, beta per hidden layer; read here, written back by ``write_back``.
        running_mean, running_var: BatchNorm's running statistics per hidden layer, (R, width).
        data: the Dataset (train and test features and targets, in the experiment's dtype).
        orders: the distinct batch orders, (distinct, epochs, N_train); ``order_of`` (R,): each
            run's.
        optimizer: the OptimizerConfig; ``bn_momentum``: BatchNorm1d's momentum.
        batch_size: samples per mini-batch.
    """

    def __init__(
        self,
        kernel: Callable,
        shape: Shape,
        *,
        params: Sequence[torch.Tensor],
        running_mean: Sequence[torch.Tensor],
        running_var: Sequence[torch.Tensor],
        data,
        orders: torch.Tensor,
        order_of: np.ndarray,
        optimizer,
        bn_momentum: float,
        batch_size: int,
    ):
        self.kernel, self.shape, self.blocks = kernel, shape, list(params)
        self.optimizer, self.batch_size = optimizer, batch_size
        dtype = shape.dtype
        self.L = LANES[dtype]
        self.R = R = len(order_of)
        self.nblk = -(-R // self.L)
        self.Rp = Rp = self.nblk * self.L  # the runs, then idle lanes (zero weights, lr 0)
        self.dt = dt = np.dtype(dtype)
        sgd = optimizer.name == "sgd"
        self.params = self.to_lanes(np.concatenate([b.reshape(R, -1).numpy() for b in params], 1))
        self.grads = np.zeros_like(self.params)
        self.moment1 = np.zeros_like(self.params)  # SGD's momentum buffer / Adam's exp_avg
        self.moment2 = np.zeros_like(self.params) if not sgd else np.zeros(self.L, dt)
        self.has_buffer = np.zeros(Rp, dtype=np.uint8)  # SGD: a run's momentum buffer exists
        H = sum(shape.widths)
        if shape.bn != "none":
            stats = torch.cat([*running_mean, *running_var], dim=1)  # (R, 2H)
            self.running_stats = self.to_lanes(stats.numpy(), fill=np.r_[np.zeros(H), np.ones(H)])
        else:
            self.running_stats = np.zeros(self.L, dt)
        rows = scratch_rows(data.X_train.shape[1], H)
        self.scratch = np.zeros(batch_size * rows * self.L, dt)  # one batch's scratch rows
        self.batch_stats = np.zeros(len(STATS) * H * self.L, dt)
        # the distinct batch orders, (E, distinct, N), and each lane's (an idle lane: the first)
        self.orders = np.ascontiguousarray(orders.numpy().transpose(1, 0, 2), dtype=np.int32)
        self.lane_order = np.zeros(Rp, dtype=np.int32)
        self.lane_order[:R] = order_of
        self.train_xy, self.test_xy = (
            np.ascontiguousarray(torch.cat([X, y], dim=1).numpy(), dtype=dt)
            for X, y in ((data.X_train, data.y_train), (data.X_test, data.y_test))
        )
        self.t = 0  # Adam's step count
        self.loss = np.zeros((2, Rp), dtype=np.float64)
        # the kernel's arguments but this epoch's order and coefficients: arrays kept alive by
        # self and only ever changed in place, so their addresses are taken once
        arrays = ("params", "grads", "moment1", "moment2", "has_buffer", "running_stats")
        arrays += ("scratch", "batch_stats", "lane_order", "train_xy", "test_xy", "loss")
        beta2 = optimizer.betas[1]
        self.fixed = {name: getattr(self, name).ctypes.data for name in arrays} | dict(
            weight_decay=optimizer.resolved_weight_decay,
            one_minus_dampening=1 - optimizer.dampening,
            beta2=beta2,
            one_minus_beta2=1 - beta2,
            eps=optimizer.eps,
            bn_momentum=float(bn_momentum),
            n_blocks=self.nblk,
            batch_size=batch_size,
            n_train=len(self.train_xy),
            n_test=len(self.test_xy),
            n_lanes=Rp,
        )

    def to_lanes(self, m: np.ndarray, fill=0.0) -> np.ndarray:
        """(R, rows) → the kernel's flat layout (block, row, lane); idle lanes get ``fill``."""
        rows = m.shape[1]
        full = np.empty((self.Rp, rows), dtype=self.dt)
        full[: self.R] = m
        full[self.R :] = fill
        return np.ascontiguousarray(
            full.reshape(self.nblk, self.L, rows).transpose(0, 2, 1)
        ).ravel()

    def from_lanes(self, flat: np.ndarray) -> np.ndarray:
        """The kernel's flat layout → (R, rows)."""
        rows = flat.size // self.Rp
        return (
            flat.reshape(self.nblk, rows, self.L)
            .transpose(0, 2, 1)
            .reshape(self.Rp, rows)[: self.R]
        )

    def epoch(
        self, epoch: int, lr: np.ndarray, momentum: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trains one epoch with lr and momentum / beta1 (R, S) per run and step (float64; lr 0
        for a diverged run); returns the train and test MSE per run (float64)."""
        R, Rp = self.R, self.Rp
        pad = np.zeros((Rp - R, lr.shape[1]))
        lr, mom = (np.concatenate([a, pad]).T for a in (lr, momentum))  # (S, lanes)
        if self.shape.optimizer == "sgd":
            coef = np.stack([lr, mom])
        else:  # torch.optim.Adam's scalars, computed in float64 as torch does in Python
            cfg, S = self.optimizer, lr.shape[0]
            t = (self.t + 1 + np.arange(S, dtype=np.float64))[:, None]
            self.t += S
            step_size = lr / (1 - mom**t)
            bc2_sqrt = np.broadcast_to((1 - cfg.betas[1] ** t) ** 0.5, lr.shape)
            coef = np.stack([step_size, bc2_sqrt, 1 - mom, 1 - lr * cfg.resolved_weight_decay])
        coef = np.ascontiguousarray(coef, dtype=self.dt)
        call(self.kernel, **self.fixed, order=self.orders[epoch], coef=coef)
        return self.loss[0, :R].copy(), self.loss[1, :R].copy()

    def quarantine(self, dead: np.ndarray) -> None:
        """Zero a diverged run's weights and state: its lane then computes harmless zeros."""
        lanes = np.flatnonzero(dead)
        blk, lane = lanes // self.L, lanes % self.L
        state = (self.params, self.grads, self.moment1)
        for flat in state + ((self.moment2,) if self.moment2.size > self.L else ()):
            flat.reshape(self.nblk, -1, self.L)[blk, :, lane] = 0
        if self.running_stats.size > self.L:
            view = self.running_stats.reshape(self.nblk, 2, -1, self.L)
            view[blk, 0, :, lane] = 0
            view[blk, 1, :, lane] = 1

    def write_back(self) -> None:
        """Copies the parameters back into the blocks given as ``params`` (for ``record``)."""
        m = torch.from_numpy(np.ascontiguousarray(self.from_lanes(self.params)))
        col = 0
        for block in self.blocks:
            size = block[0].numel()
            block.view(self.R, -1).copy_(m[:, col : col + size])
            col += size
