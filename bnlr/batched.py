"""The batched engine: every run that shares a network shape trains at once.

Runs are grouped by (model, optimizer settings). A group of R runs keeps each Linear as one
stacked block (R, out, in + 1) — the weight with the bias as its last column, so that a single
``bmm`` against the input with a row of ones appended does the whole layer — and trains all R
with one forward/backward. Activations are feature-major, (R, F, B). Each run keeps its own
initial weights and batch order (``bnlr.protocol.start``), lr, optimizer state and schedule.
BatchNorm treats every (run, feature) pair as one channel of ``native_batch_norm`` over a
(1, R·F, B) view, so batch statistics, affine parameters and running statistics are exactly
``nn.BatchNorm1d``'s, per run. The backward pass is written out with ATen's own backward kernels
(the ones autograd calls), which halves the per-step overhead. The lr and momentum of every step
come from the real torch scheduler (``schedules.trajectory``); ``ReduceLROnPlateau`` runs live
per run on its own loss. The update rules are torch.optim's, per run (``bnlr.optimizers``).
With ``record``, every run's parameters are kept at init and after each epoch (``bnlr.why``).

Two paths compute an epoch: where ``bnlr.fused`` applies (llvmlite importable, the network within
its size limits, ``BNLR_KERNEL`` not ``torch``), one compiled SIMD kernel per network shape trains
the whole group for the epoch (``fused.FusedGroup``); otherwise the torch path below
(``_TorchPath``: bmm, ATen's batch-norm kernels). Both have the same methods (``epoch``,
``quarantine``, ``write_back``); ``_Group.train`` picks one per group, once.
Both are tested against ``bnlr.reference`` in ``tests/test_engines.py`` and ``tests/test_fused.py``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from . import fused
from .config import Experiment, RunConfig
from .data import Dataset
from .history import Cancelled, RunHistory
from .models import ACTIVATION_FNS
from .optimizers import Rule, bare_optimizer
from .protocol import start
from .schedules import Stepper, trajectory

BN_EPS = 1e-5  # nn.BatchNorm1d's default
LEAKY_SLOPE = 0.01  # F.leaky_relu's default
# The activations, written straight into a given output (a view of the next layer's input).
ACTIVATION_OUT = {
    "tanh": lambda z, out: torch.tanh(z, out=out),
    "sigmoid": lambda z, out: torch.sigmoid(z, out=out),
    "relu": lambda z, out: torch.clamp_min(z, 0, out=out),
    "leaky_relu": lambda z, out: torch._C._nn.leaky_relu(z, LEAKY_SLOPE, out=out),
}


def train_batched(
    experiment: Experiment,
    data: Dataset,
    tick: Callable[[int], None],
    cancel: Callable[[], bool] | None = None,
    record: bool = False,
    step_losses: bool = False,
) -> list[RunHistory]:
    """Returns one RunHistory per run of ``experiment``, in the experiment's order (with its
    parameters at init and after every epoch when ``record``, each batch's loss when
    ``step_losses``: on the torch path, the fused kernel does not compute it)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(experiment.runs):
        groups[(run.model, run.optimizer)].append(i)
    out: list[RunHistory | None] = [None] * len(experiment.runs)
    for idxs in groups.values():
        for i, hist in zip(
            idxs,
            _Group(experiment, [experiment.runs[i] for i in idxs], data).train(
                tick, cancel, record, step_losses
            ),
        ):
            out[i] = hist
    return out  # type: ignore[return-value]


class _Group:
    """R runs of one model shape and optimizer kind, trained together."""

    def __init__(self, exp: Experiment, runs: list[RunConfig], data: Dataset):
        self.exp, self.runs, self.data = exp, runs, data
        self.dtype = getattr(torch, exp.dtype)
        self.model, self.opt_cfg = runs[0].model, runs[0].optimizer
        self.R = R = len(runs)
        # The reference engine's draws; runs that differ only in lr or schedule share them.
        drawn: dict[tuple, tuple] = {}
        for run in runs:
            key = (run.seed, run.perturb)
            if key not in drawn:
                drawn[key] = start(run, data, exp.epochs)
        keys = {k: i for i, k in enumerate(drawn)}
        self.orders = torch.stack([d[1] for d in drawn.values()])  # (distinct, E, N_train)
        self.order_of = np.array([keys[(run.seed, run.perturb)] for run in runs])  # (R,)
        # Every parameter lives in one flat tensor theta, block by block; each block holds one
        # tensor of all R runs contiguously, (R, ...), so layers are free views and the optimizer
        # update is a few elementwise ops over theta with a per-element lr.
        blocks = []
        which = torch.from_numpy(self.order_of)
        for l in range(len(self.model.widths) + 1):  # Linear l: [W | b] as (R, out, in + 1)
            distinct = [
                torch.cat([w, b.unsqueeze(1)], dim=1) for w, b in (d[0][l] for d in drawn.values())
            ]
            blocks.append(torch.stack(distinct)[which])
        widths = self.model.widths if self.model.bn != "none" else ()
        for w in widths:  # BatchNorm1d's affine weight (ones) and bias (zeros)
            blocks += [torch.ones(R, w, dtype=self.dtype), torch.zeros(R, w, dtype=self.dtype)]
        self.shapes = [tuple(b.shape) for b in blocks]
        self.theta = torch.cat([b.reshape(-1) for b in blocks])  # (Σ R·size,)
        self.run_of = torch.cat(
            [torch.arange(R).repeat_interleave(b[0].numel()) for b in blocks]
        )  # run per element
        self.running_mean = [torch.zeros(R, w, dtype=self.dtype) for w in widths]  # (R, F)
        self.running_var = [torch.ones(R, w, dtype=self.dtype) for w in widths]
        self.act = ACTIVATION_FNS[self.model.activation]
        self.act_out = ACTIVATION_OUT[self.model.activation]
        # theta and grad are only ever updated in place, so their per-layer views are made once
        self.grad = torch.empty_like(self.theta)
        self.theta_views, self.grad_views = self._views(self.theta), self._views(self.grad)
        self._inputs: dict[tuple[int, int], torch.Tensor] = {}  # (layer, batch) → input buffer

    def _input_buffer(self, l: int, width: int, B: int) -> torch.Tensor:
        """A reusable (R, width + 1, B) buffer for layer l's input, its last row ones."""
        buf = self._inputs.get((l, B))
        if buf is None:
            buf = self._inputs[(l, B)] = torch.empty(self.R, width + 1, B, dtype=self.dtype)
            buf[:, width] = 1
        return buf

    def _blocks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """A theta-shaped tensor's blocks, as views: [W | b] per Linear, then BN gamma, beta."""
        return [
            p.view(shape)
            for p, shape in zip(flat.split([math.prod(s) for s in self.shapes]), self.shapes)
        ]

    def _views(self, flat: torch.Tensor):
        """The blocks of a theta-shaped tensor: ([W | b] per Linear, gammas, betas)."""
        parts = self._blocks(flat)
        n = self.model.depth + 1
        return parts[:n], parts[n::2], parts[n + 1 :: 2]

    def _bn(self, z: torch.Tensor, l: int, gamma, beta, training: bool):
        """BatchNorm1d per (run, feature) on z (R, F, B): returns the output and what backward
        needs."""
        R, W, B = z.shape
        flat = z.view(1, R * W, B)  # one BN channel per (run, feature), statistics over the batch
        out, mean, invstd = torch.native_batch_norm(
            flat,
            gamma.reshape(-1),
            beta.reshape(-1),
            self.running_mean[l].view(-1),
            self.running_var[l].view(-1),
            training,
            self.model.bn_momentum,
            BN_EPS,
        )
        return out.view(R, W, B), (flat, mean, invstd)

    def _bn_backward(self, g: torch.Tensor, l: int, gamma, saved, g_gamma, g_beta) -> torch.Tensor:
        """Returns d/dz; writes d/dgamma and d/dbeta straight into their blocks of the gradient."""
        flat, mean, invstd = saved
        R, W, B = g.shape
        g_in = torch.empty_like(flat)
        torch.ops.aten.native_batch_norm_backward.out(
            g.reshape(1, R * W, B),
            flat,
            gamma.reshape(-1),
            self.running_mean[l].view(-1),
            self.running_var[l].view(-1),
            mean,
            invstd,
            True,
            BN_EPS,
            [True, True, True],
            out0=g_in,
            out1=g_gamma.view(-1),
            out2=g_beta.view(-1),
        )
        return g_in.view(R, W, B)

    def _act_backward(self, g: torch.Tensor, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        name = self.model.activation
        if name == "tanh":
            return torch.ops.aten.tanh_backward(g, post)
        if name == "sigmoid":
            return torch.ops.aten.sigmoid_backward(g, post)
        if name == "relu":
            return torch.ops.aten.threshold_backward(g, post, 0)
        return torch.ops.aten.leaky_relu_backward(g, pre, LEAKY_SLOPE, False)

    def forward(self, x1: torch.Tensor, training: bool, saved: list | None = None) -> torch.Tensor:
        """x1 (R, in + 1, B): the inputs as columns, with a row of ones → predictions (R, 1, B).

        Activations are kept feature-major, (R, F, B), so that BatchNorm's channels are plain
        views and each layer is one bmm. Fills ``saved`` with what ``backward`` needs.
        """
        layers, gammas, betas = self.theta_views
        bn, last = self.model.bn, len(layers) - 1
        B = x1.shape[2]
        for l, wb in enumerate(layers):
            z = torch.bmm(wb, x1)  # (R, out, B): W @ x + b in one bmm
            if l == last:
                if saved is not None:
                    saved.append((x1, None, None, None))
                return z
            width = wb.shape[1]
            nxt = self._input_buffer(
                l + 1, width, B
            )  # the next layer's input, with its row of ones
            bn_saved = None
            if bn == "pre":
                z, bn_saved = self._bn(z, l, gammas[l], betas[l], training)
            if bn == "post":
                a = self.act(z)
                u, bn_saved = self._bn(a, l, gammas[l], betas[l], training)
                nxt[:, :width] = u
            else:
                a = self.act_out(z, nxt[:, :width])
            if saved is not None:
                saved.append((x1, z, a, bn_saved))
            x1 = nxt
        raise AssertionError

    def backward(self, g: torch.Tensor, saved: list) -> torch.Tensor:
        """Returns d(Σ_r loss_r)/dθ given g = d loss / d prediction (R, 1, B), by autograd's
        formulas."""
        grad = self.grad
        layers, gammas, _ = self.theta_views
        g_layers, g_gammas, g_betas = self.grad_views
        bn, last = self.model.bn, len(layers) - 1
        for l in range(last, -1, -1):
            x1, z, a, bn_saved = saved[l]
            if l < last:  # hidden layer: back through BN and the activation
                if bn == "post":
                    g = self._bn_backward(g, l, gammas[l], bn_saved, g_gammas[l], g_betas[l])
                g = self._act_backward(g, z, a)
                if bn == "pre":
                    g = self._bn_backward(g, l, gammas[l], bn_saved, g_gammas[l], g_betas[l])
            torch.bmm(g, x1.transpose(1, 2), out=g_layers[l])  # (R, out, in + 1): dW and db at once
            if l > 0:
                g = torch.bmm(layers[l][:, :, :-1].transpose(1, 2), g)  # (R, in, B)
        return grad

    def flat_index(self) -> torch.Tensor:
        """Returns (R, P): where each run's parameters sit in theta, in ``models.layout`` order."""
        offsets = np.cumsum([0] + [math.prod(s) for s in self.shapes])
        depth, bn = self.model.depth, self.model.bn != "none"
        parts = []
        for k in range(depth + 1):  # Linear k as (R, out, in + 1): weight columns, then bias
            R, out, cols = self.shapes[k]
            block = np.arange(R * out * cols).reshape(R, out, cols) + offsets[k]
            parts += [block[:, :, :-1].reshape(R, -1), block[:, :, -1]]
            if bn and k < depth:  # gamma_k, beta_k follow theta's Linear blocks
                for j in (depth + 1 + 2 * k, depth + 2 + 2 * k):
                    parts.append(np.arange(R * self.shapes[j][1]).reshape(R, -1) + offsets[j])
        return torch.from_numpy(np.concatenate(parts, axis=1))

    def train(
        self, tick, cancel, record: bool = False, step_losses: bool = False
    ) -> list[RunHistory]:
        exp, R, S = self.exp, self.R, self.exp.steps_per_epoch
        E = exp.epochs
        trajs = [trajectory(r.schedule, r.lr, E, S, r.optimizer) for r in self.runs]
        # Runs whose lr depends on their loss (ReduceLROnPlateau) get a live scheduler on a bare
        # optimizer, stepped after each epoch's evaluation with the run's own losses.
        live = {
            i: Stepper(r.schedule, bare_optimizer(r.optimizer, r.lr), E, S)
            for i, r in enumerate(self.runs)
            if trajs[i] is None
        }
        default_mom = self.opt_cfg.momentum_or_beta1
        tables = np.stack(  # (R, 2, E · S): lr, momentum / beta1 (a new array: rows may change)
            [
                t.table if t else np.repeat([[r.lr], [default_mom]], E * S, axis=1)
                for r, t in zip(self.runs, trajs)
            ]
        )
        lr_table = tables[:, 0].reshape(R, E, S)  # a live scheduler writes its run's rows
        mom_table = tables[:, 1].reshape(R, E, S)
        losses = np.full((2, R, E), np.nan)  # train, test per run and epoch (NaN once diverged)
        trained = np.zeros(R, dtype=int)  # epochs each run trained (up to its divergence)
        diverged: list[int | None] = [None] * R
        alive = np.ones(R, dtype=bool)
        index = self.flat_index() if record else None
        if record:
            params = np.full((R, E + 1, index.shape[1]), np.nan)
            params[:, 0] = self.theta[index].double().numpy()
        path = _TorchPath(self) if step_losses else self._path(bool(mom_table.any()))
        step_loss = np.full((R, E, S), np.nan) if step_losses else None
        with torch.no_grad():
            for epoch in range(E):
                if cancel is not None and cancel():
                    raise Cancelled()
                now = (epoch, lr_table[:, epoch] * alive[:, None], mom_table[:, epoch])
                train_l, test_l = (
                    path.epoch(*now) if step_loss is None else path.epoch(*now, step_loss[:, epoch])
                )
                losses[0, alive, epoch], losses[1, alive, epoch] = train_l[alive], test_l[alive]
                trained[alive] = epoch + 1
                bad = alive & ~(np.isfinite(train_l) & np.isfinite(test_l))
                for r in np.flatnonzero(bad):
                    diverged[r] = epoch + 1
                    tick(E - epoch)
                alive &= ~bad
                for r, stepper in live.items():
                    if alive[r] and epoch + 1 < E:
                        stepper.after_epoch(train_l[r], test_l[r])
                        lr_table[r, epoch + 1 :] = stepper.lr
                if bad.any():
                    path.quarantine(~alive)
                if record:
                    path.write_back()
                    params[alive, epoch + 1] = self.theta[index].double().numpy()[alive]
                tick(int(alive.sum()))
        done = np.arange(E)[None, :] < trained[:, None]  # (R, E): the epochs a run trained
        step_lr = np.where(done[:, :, None], lr_table, np.nan)
        step_mom = np.where(done[:, :, None], mom_table, np.nan)
        return [
            RunHistory(
                losses[0, r],
                losses[1, r],
                step_lr[r],
                step_mom[r],
                diverged[r],
                params[r] if record else None,
                None if step_loss is None else np.where(done[r, :, None], step_loss[r], np.nan),
            )
            for r in range(R)
        ]

    def _path(self, momentum: bool) -> fused.FusedGroup | _TorchPath:
        """The fused kernel's path where it applies and its kernel is ready (``bnlr.fused``),
        else the torch path; ``momentum``: some run has SGD momentum at some step."""
        F = self.data.X_train.shape[1]
        if fused.wanted() and fused.supported(self.model.widths, F, self.model.bn):
            shape = fused.shape_of(self.model, F, self.opt_cfg, self.exp.dtype, momentum)
            if fused.ready(shape):
                return fused.FusedGroup(
                    fused.kernel(shape),
                    shape,
                    params=self._blocks(self.theta),
                    running_mean=self.running_mean,
                    running_var=self.running_var,
                    data=self.data,
                    orders=self.orders,
                    order_of=self.order_of,
                    optimizer=self.opt_cfg,
                    bn_momentum=self.model.bn_momentum,
                    batch_size=self.exp.batch_size,
                )
        return _TorchPath(self)


class _TorchPath:
    """A group's epochs on the torch path: bmm and ATen's kernels on the group's own tensors.
    Its methods are ``fused.FusedGroup``'s: ``epoch``, ``quarantine``, ``write_back``."""

    def __init__(self, group: _Group):
        self.g = group
        self.optimizer: Rule = group.opt_cfg.rule(group.opt_cfg, group.theta)
        d = group.data
        ones = lambda X: torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)  # noqa: E731
        self.Xtr1, self.Xte1 = ones(d.X_train), ones(d.X_test)  # (N, in + 1)
        self.ytr_row, self.yte_row = d.y_train.t(), d.y_test.t()  # (1, N)

    def epoch(
        self,
        epoch: int,
        lr: np.ndarray,
        momentum: np.ndarray,
        step_loss: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trains one epoch with lr and momentum / beta1 (R, S) per run and step (lr 0 for a
        diverged run); returns the train and test MSE per run (float64). ``step_loss`` (R, S),
        if given, receives each step's batch MSE before the step."""
        g = self.g
        S, bs = g.exp.steps_per_epoch, g.exp.batch_size
        # this epoch's lr and momentum per step, spread to every element of theta: (S, P)
        lr_e = torch.from_numpy(lr.T.copy())[:, g.run_of]
        any_momentum = bool(momentum.any())
        # (momentum is only read when some run has it this epoch; plain SGD skips it)
        mom_e = torch.from_numpy(momentum.T.copy())[:, g.run_of] if any_momentum else lr_e
        order = g.orders[g.order_of, epoch]  # (R, N_train)
        X_e = self.Xtr1.t()[:, order].transpose(0, 1)  # (R, in + 1, N): this epoch's order
        y_e = self.ytr_row[0, order].unsqueeze(1)  # (R, 1, N)
        for b in range(S):
            batch = slice(b * bs, (b + 1) * bs)
            saved: list = []
            pred = g.forward(X_e[:, :, batch], training=True, saved=saved)  # (R, 1, B)
            # d MSE_r / d pred: each run its own mean loss, as MSELoss's backward gives
            residual = pred - y_e[:, :, batch]
            if step_loss is not None:  # MSELoss of each run's batch
                step_loss[:, b] = residual.square().mean(dim=(1, 2)).double().numpy()
            grad_pred = residual.mul_(2.0 / pred.shape[2])
            self.optimizer.step(g.backward(grad_pred, saved), lr_e[b], mom_e[b], any_momentum)
        train = self._eval_losses(self.Xtr1.t(), self.ytr_row)
        return train, self._eval_losses(self.Xte1.t(), self.yte_row)

    def _eval_losses(self, X1: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        R = self.g.R
        pred = self.g.forward(X1.expand(R, *X1.shape), training=False)  # (R, 1, N)
        return ((pred - y) ** 2).mean(dim=(1, 2)).double().numpy()

    def quarantine(self, dead: np.ndarray) -> None:
        """Zero a diverged run's weights and state so its NaNs stay out of every later step."""
        g = self.g
        mask = torch.from_numpy(dead)
        elements = mask[g.run_of]
        g.theta[elements] = 0
        for mean, var in zip(g.running_mean, g.running_var):
            mean[mask] = 0
            var[mask] = 1
        self.optimizer.reset(elements)

    def write_back(self) -> None:
        """Nothing to do: the torch path trains the group's theta itself."""
