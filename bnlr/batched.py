"""The batched engine: every run that shares a network shape trains at once.

Runs are grouped by (model, optimizer settings). A group of R runs keeps each Linear as one
stacked block (R, in + 1, out) — the weight transposed with the bias as its last row, so that a
single ``bmm`` against the input with a column of ones appended does the whole layer — and
trains all R with one forward/backward. Each run keeps its own initial weights, batch order,
lr, optimizer state and schedule. BatchNorm treats every (run, feature) pair as one channel of
``native_batch_norm`` over a (B, R·F) view, so batch statistics, affine parameters and running
statistics are exactly ``nn.BatchNorm1d``'s, per run. The backward pass is written out with
ATen's own backward kernels (the ones autograd calls), which halves the per-step overhead.
The lr and momentum of every step come from the real torch scheduler
(``schedules.trajectory``); ``ReduceLROnPlateau`` runs live per run on its own loss. The update
rules are torch.optim's SGD / Adam / AdamW with a learning rate and momentum per run.
Tested against ``bnlr.reference`` in ``tests/test_engines.py``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable

import numpy as np
import torch

from .config import Experiment, OptimizerConfig, RunConfig
from .data import Dataset, batch_order
from .history import Cancelled, RunHistory
from .models import ACTIVATION_FNS, initial_parameters
from .schedules import build_scheduler, make_optimizer, parse_schedule, trajectory

BN_EPS = 1e-5  # nn.BatchNorm1d's default
LEAKY_SLOPE = 0.01  # F.leaky_relu's default


def train_batched(experiment: Experiment, data: Dataset, tick: Callable[[int], None],
                  cancel: Callable[[], bool] | None = None) -> list[RunHistory]:
    """Returns one RunHistory per run of ``experiment``, in the experiment's order."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(experiment.runs):
        groups[(run.model, run.optimizer)].append(i)
    out: list[RunHistory | None] = [None] * len(experiment.runs)
    for idxs in groups.values():
        for i, hist in zip(idxs, _Group(experiment, [experiment.runs[i] for i in idxs], data).train(tick, cancel)):
            out[i] = hist
    return out  # type: ignore[return-value]


class _Group:
    """R runs of one model shape and optimizer kind, trained together."""

    def __init__(self, exp: Experiment, runs: list[RunConfig], data: Dataset):
        self.exp, self.runs, self.data = exp, runs, data
        self.dtype = getattr(torch, exp.dtype)
        self.model, self.opt_cfg = runs[0].model, runs[0].optimizer
        R, (n_train, n_features) = len(runs), data.X_train.shape
        self.R = R
        inits, orders = [], []
        for run in runs:  # same draws, in the same order, as the reference engine
            gen = torch.Generator().manual_seed(run.seed)
            inits.append(initial_parameters(run.model, n_features, gen, self.dtype))
            orders.append(batch_order(n_train, exp.epochs, gen))
        self.order = torch.stack(orders)  # (R, E, N_train)
        # Every parameter lives in one flat tensor theta, block by block; each block holds one
        # tensor of all R runs contiguously, (R, ...), so layers are free views and the optimizer
        # update is a few elementwise ops over theta with a per-element lr.
        blocks, self.shapes = [], []
        for l in range(len(inits[0])):  # Linear l: [W^T; b] as (R, in + 1, out)
            blocks.append(torch.stack([torch.cat([w.t(), b.unsqueeze(0)]) for w, b in (ly[l] for ly in inits)]))
        widths = self.model.widths if self.model.bn != "none" else ()
        for w in widths:  # BatchNorm1d's affine weight (ones) and bias (zeros)
            blocks += [torch.ones(R, w, dtype=self.dtype), torch.zeros(R, w, dtype=self.dtype)]
        self.shapes = [tuple(b.shape) for b in blocks]
        self.theta = torch.cat([b.reshape(-1) for b in blocks])  # (Σ R·size,)
        self.run_of = torch.cat([torch.arange(R).repeat_interleave(b[0].numel()) for b in blocks])  # run per element
        self.running_mean = [torch.zeros(R, w, dtype=self.dtype) for w in widths]  # (R, F)
        self.running_var = [torch.ones(R, w, dtype=self.dtype) for w in widths]
        self.act = ACTIVATION_FNS[self.model.activation]

    def _views(self, flat: torch.Tensor):
        """Splits a theta-shaped tensor into its blocks: [W^T; b] per Linear, then gamma, beta per BN."""
        parts = [p.view(shape) for p, shape in zip(flat.split([math.prod(s) for s in self.shapes]), self.shapes)]
        n = self.model.depth + 1
        return parts[:n], parts[n::2], parts[n + 1::2]

    def _bn(self, z: torch.Tensor, l: int, gamma, beta, training: bool):
        """BatchNorm1d per (run, feature): returns the output (R, B, F) and what backward needs."""
        R, B, W = z.shape
        flat = z.transpose(0, 1).reshape(B, R * W)  # (B, R·F): one BN channel per (run, feature)
        out, mean, invstd = torch.native_batch_norm(
            flat, gamma.reshape(-1), beta.reshape(-1), self.running_mean[l].view(-1),
            self.running_var[l].view(-1), training, self.model.bn_momentum, BN_EPS)
        return out.view(B, R, W).transpose(0, 1), (flat, mean, invstd)  # (R, B, F) view, B-major memory

    def _bn_backward(self, g: torch.Tensor, l: int, gamma, saved):
        flat, mean, invstd = saved
        R, B, W = g.shape
        g_in, g_gamma, g_beta = torch.ops.aten.native_batch_norm_backward(
            g.transpose(0, 1).reshape(B, R * W), flat, gamma.reshape(-1), self.running_mean[l].view(-1),
            self.running_var[l].view(-1), mean, invstd, True, BN_EPS, [True, True, True])
        return g_in.view(B, R, W).transpose(0, 1), g_gamma.view(R, W), g_beta.view(R, W)

    def _act_backward(self, g: torch.Tensor, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        name = self.model.activation
        if name == "tanh":
            return torch.ops.aten.tanh_backward(g, post)
        if name == "sigmoid":
            return torch.ops.aten.sigmoid_backward(g, post)
        if name == "relu":
            return torch.ops.aten.threshold_backward(g, post, 0)
        return torch.ops.aten.leaky_relu_backward(g, pre, LEAKY_SLOPE, False)

    def _with_ones(self, R: int, B: int, width: int) -> torch.Tensor:
        buf = torch.empty(R, B, width + 1, dtype=self.dtype)
        buf[..., width] = 1
        return buf

    def forward(self, x1: torch.Tensor, training: bool, saved: list | None = None) -> torch.Tensor:
        """x1 (R, B, in + 1), the input with a column of ones → predictions (R, B, 1).

        Fills ``saved`` with what ``backward`` needs.
        """
        layers, gammas, betas = self._views(self.theta)
        bn, last = self.model.bn, len(layers) - 1
        R, B = x1.shape[:2]
        for l, wb in enumerate(layers):
            z = torch.bmm(x1, wb)  # (R, B, out): x @ W^T + b in one bmm
            if l == last:
                if saved is not None:
                    saved.append((x1, None, None, None))
                return z
            width = wb.shape[2]
            nxt = self._with_ones(R, B, width)
            bn_saved = None
            if bn == "pre":
                z, bn_saved = self._bn(z, l, gammas[l], betas[l], training)
            a = self.act(z)
            if bn == "post":
                u, bn_saved = self._bn(a, l, gammas[l], betas[l], training)
                nxt[..., :width] = u
            else:
                nxt[..., :width] = a
            if saved is not None:
                saved.append((x1, z, a, bn_saved))
            x1 = nxt
        raise AssertionError

    def backward(self, g: torch.Tensor, saved: list) -> torch.Tensor:
        """Returns d(Σ_r loss_r)/dθ given g = d loss / d prediction (R, B, 1), by autograd's formulas."""
        grad = torch.empty_like(self.theta)
        layers, gammas, _ = self._views(self.theta)
        g_layers, g_gammas, g_betas = self._views(grad)
        bn, last = self.model.bn, len(layers) - 1
        for l in range(last, -1, -1):
            x1, z, a, bn_saved = saved[l]
            if l < last:  # hidden layer: back through BN and the activation
                if bn == "post":
                    g, gg, gb = self._bn_backward(g, l, gammas[l], bn_saved)
                    g_gammas[l].copy_(gg), g_betas[l].copy_(gb)
                g = self._act_backward(g, z, a)
                if bn == "pre":
                    g, gg, gb = self._bn_backward(g, l, gammas[l], bn_saved)
                    g_gammas[l].copy_(gg), g_betas[l].copy_(gb)
            torch.bmm(x1.transpose(1, 2), g, out=g_layers[l])  # (R, in + 1, out): dW^T and db at once
            if l > 0:
                g = torch.bmm(g, layers[l][:, :-1].transpose(1, 2))  # (R, B, in)
        return grad

    def _eval_losses(self, X1: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        pred = self.forward(X1.expand(self.R, *X1.shape), training=False)  # (R, N, 1)
        return ((pred - y) ** 2).mean(dim=(1, 2)).double().numpy()

    def train(self, tick, cancel) -> list[RunHistory]:
        exp, R, S = self.exp, self.R, self.exp.steps_per_epoch
        E, bs = exp.epochs, exp.batch_size
        specs = [parse_schedule(r.schedule) for r in self.runs]
        trajs = [trajectory(r.schedule, r.lr, E, S, r.optimizer) for r in self.runs]
        # Runs whose lr depends on their loss (ReduceLROnPlateau) get a live scheduler on a bare optimizer.
        live = {i: build_scheduler(spec, make_optimizer([torch.zeros(1, requires_grad=True)], r.optimizer, r.lr), E, S)
                for i, (r, spec) in enumerate(zip(self.runs, specs)) if trajs[i] is None}
        lr_table = np.array([t.lr if t else [r.lr] * (E * S) for r, t in zip(self.runs, trajs)]).reshape(R, E, S)
        default_mom = self.opt_cfg.betas[0] if self.opt_cfg.name != "sgd" else self.opt_cfg.momentum
        mom_table = np.array([t.momentum if t else [default_mom] * (E * S) for t in trajs]).reshape(R, E, S)
        optimizer = _BatchedOptimizer(self.opt_cfg, self.theta, self.run_of)
        hists = [RunHistory.empty(E, S) for _ in range(R)]
        alive = np.ones(R, dtype=bool)
        d = self.data
        ones = lambda X: torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)  # noqa: E731
        Xtr1, Xte1 = ones(d.X_train), ones(d.X_test)  # (N, in + 1)
        with torch.no_grad():
            for epoch in range(E):
                if cancel is not None and cancel():
                    raise Cancelled()
                lr_e = torch.from_numpy(lr_table[:, epoch] * alive[:, None])  # (R, S); 0 for diverged runs
                mom_e = torch.from_numpy(mom_table[:, epoch])
                X_e, y_e = Xtr1[self.order[:, epoch]], d.y_train[self.order[:, epoch]]  # this epoch's order
                for b in range(S):
                    batch = slice(b * bs, (b + 1) * bs)
                    saved: list = []
                    pred = self.forward(X_e[:, batch], training=True, saved=saved)  # (R, B, 1)
                    # d MSE_r / d pred: each run its own mean loss, as MSELoss's backward gives
                    g = (pred - y_e[:, batch]).mul_(2.0 / pred.shape[1])
                    optimizer.step(self.backward(g, saved), lr_e[:, b], mom_e[:, b])
                train_l, test_l = self._eval_losses(Xtr1, d.y_train), self._eval_losses(Xte1, d.y_test)
                for r in np.flatnonzero(alive):
                    h = hists[r]
                    h.train[epoch], h.test[epoch] = train_l[r], test_l[r]
                    h.step_lr[epoch], h.step_momentum[epoch] = lr_table[r, epoch], mom_table[r, epoch]
                    if not (math.isfinite(train_l[r]) and math.isfinite(test_l[r])):
                        h.diverged_epoch = epoch + 1
                        alive[r] = False
                        tick(E - epoch)
                    elif r in live and epoch + 1 < E:
                        sched = live[r]
                        sched.step(train_l[r] if specs[r].get("monitor") == "train" else test_l[r])
                        lr_table[r, epoch + 1:] = sched.optimizer.param_groups[0]["lr"]
                if not alive.all():
                    self._quarantine(~alive, optimizer)
                tick(int(alive.sum()))
        return hists

    def _quarantine(self, dead: np.ndarray, optimizer: "_BatchedOptimizer") -> None:
        """Zero a diverged run's weights and state so its NaNs stay out of every later step."""
        mask = torch.from_numpy(dead)
        elements = mask[self.run_of]
        self.theta[elements] = 0
        for mean, var in zip(self.running_mean, self.running_var):
            mean[mask] = 0
            var[mask] = 1
        optimizer.reset(elements)


class _BatchedOptimizer:
    """torch.optim's SGD / Adam / AdamW update rules on theta, with a learning rate (and momentum)
    per run: the per-run values are spread to every element of that run's parameters."""

    def __init__(self, cfg: OptimizerConfig, theta: torch.Tensor, run_of: torch.Tensor):
        self.cfg, self.theta, self.run_of = cfg, theta, run_of
        self.dtype = theta.dtype
        self.wd = cfg.decay
        self.step_count = 0
        self.buf: torch.Tensor | None = None  # SGD momentum buffer / Adam exp_avg
        self.sq = torch.zeros_like(theta) if cfg.name != "sgd" else None  # Adam exp_avg_sq
        self.has_buf: torch.Tensor | None = None  # (R,) SGD: torch creates a run's buffer on first use

    def reset(self, elements: torch.Tensor) -> None:
        for t in (self.buf, self.sq):
            if t is not None:
                t[elements] = 0

    def _spread(self, per_run: torch.Tensor) -> torch.Tensor:
        return per_run.to(self.dtype)[self.run_of]  # (R,) → one value per element of theta

    def step(self, grad: torch.Tensor, lr: torch.Tensor, momentum: torch.Tensor) -> None:
        if self.cfg.name == "sgd":
            self._sgd(grad, lr, momentum)
        else:
            self._adam(grad, lr, momentum)

    def _sgd(self, g, lr, momentum):
        p, cfg = self.theta, self.cfg
        if self.wd:
            g = g.add(p, alpha=self.wd)
        use = momentum != 0  # (R,)
        if bool(use.any()):
            if self.buf is None:
                self.buf, self.has_buf = torch.zeros_like(p), torch.zeros(len(use), dtype=torch.bool)
            m, use_e, fresh = self._spread(momentum), use[self.run_of], (use & ~self.has_buf)[self.run_of]
            new = torch.where(fresh, g, self.buf * m + (1 - cfg.dampening) * g)  # first use: buf = grad
            self.buf.copy_(torch.where(use_e, new, self.buf))
            direction = g + m * self.buf if cfg.nesterov else self.buf
            g = torch.where(use_e, direction, g)
            self.has_buf |= use
        p.sub_(self._spread(lr) * g)

    def _adam(self, g, lr, beta1):
        p, cfg = self.theta, self.cfg
        self.step_count += 1
        t = self.step_count
        beta2, eps = cfg.betas[1], cfg.eps
        if self.buf is None:
            self.buf = torch.zeros_like(p)
        if self.wd:
            if cfg.name == "adamw":
                p.mul_(self._spread(1 - lr * self.wd))
            else:
                g = g.add(p, alpha=self.wd)
        self.buf.lerp_(g, self._spread(1 - beta1))
        self.sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = self._spread(lr / (1 - beta1 ** t))  # computed in float64, as torch does in Python
        denom = (self.sq.sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)
        p.sub_(step_size * (self.buf / denom))
