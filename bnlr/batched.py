"""The batched engine: every run that shares a network shape trains at once.

Runs are grouped by (model, optimizer settings). A group of R runs keeps each Linear as one
stacked tensor (R, in, out) and trains with one forward/backward for all R (``bmm``);
each run keeps its own initial weights, batch order, lr, optimizer state and schedule.
BatchNorm treats every (run, feature) pair as one channel of ``F.batch_norm`` over a
(B, R·F) view, so batch statistics, affine parameters and running statistics are exactly
``nn.BatchNorm1d``'s, per run. The lr and momentum of every step come from the real torch
scheduler (``schedules.trajectory``); ``ReduceLROnPlateau`` runs live per run on its own loss.
The update rules are torch.optim's SGD / Adam / AdamW with per-run tensors for lr and momentum.
Tested against ``bnlr.reference`` in ``tests/test_engines.py``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .config import Experiment, OptimizerConfig, RunConfig
from .data import Dataset, batch_order
from .history import Cancelled, RunHistory
from .models import ACTIVATION_FNS, initial_parameters
from .schedules import build_scheduler, make_optimizer, parse_schedule, trajectory

BN_EPS = 1e-5  # nn.BatchNorm1d's default


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
        # All of a run's parameters live in one row of theta (R, P), so that the optimizer
        # update is a few whole-tensor ops; layers are views into it, rebuilt each step.
        blocks, self.layout = [], []
        for l in range(len(inits[0])):
            # weights stored transposed, (in, out), so the forward is a plain bmm on contiguous blocks
            blocks += [torch.stack([layers[l][0].t().reshape(-1) for layers in inits]),
                       torch.stack([layers[l][1] for layers in inits])]
            self.layout += [inits[0][l][0].t().shape, (1, inits[0][l][1].shape[0])]
        widths = self.model.widths if self.model.bn != "none" else ()
        for w in widths:  # BatchNorm1d's affine weight (ones) and bias (zeros)
            blocks += [torch.ones(R, w, dtype=self.dtype), torch.zeros(R, w, dtype=self.dtype)]
            self.layout += [(w,), (w,)]
        self.theta = torch.cat(blocks, dim=1).requires_grad_()  # (R, P)
        self.sizes = [b.shape[1] for b in blocks]
        self.running_mean = [torch.zeros(R, w, dtype=self.dtype) for w in widths]  # (R, F)
        self.running_var = [torch.ones(R, w, dtype=self.dtype) for w in widths]
        self.act = ACTIVATION_FNS[self.model.activation]

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.theta]

    def _views(self):
        parts = [p.view(self.R, *shape) for p, shape in zip(self.theta.split(self.sizes, dim=1), self.layout)]
        n = 2 * (self.model.depth + 1)
        return parts[0:n:2], parts[1:n:2], parts[n::2], parts[n + 1::2]  # W, b, gamma, beta

    def _bn(self, z: torch.Tensor, l: int, gamma, beta, training: bool) -> torch.Tensor:
        R, B, W = z.shape
        flat = z.transpose(0, 1).reshape(B, R * W)  # (B, R·F): one BN channel per (run, feature)
        flat = F.batch_norm(flat, self.running_mean[l].view(-1), self.running_var[l].view(-1),
                            gamma.reshape(-1), beta.reshape(-1),
                            training=training, momentum=self.model.bn_momentum, eps=BN_EPS)
        return flat.reshape(B, R, W).transpose(0, 1)  # (R, B, F)

    def forward(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """x (R, B, in) → predictions (R, B, 1)."""
        weights, biases, gammas, betas = self._views()
        last = len(weights) - 1
        for l, (w, b) in enumerate(zip(weights, biases)):
            x = torch.bmm(x, w) + b  # (R, B, out); baddbmm is several times slower at these sizes
            if l == last:
                return x
            if self.model.bn == "pre":
                x = self._bn(x, l, gammas[l], betas[l], training)
            x = self.act(x)
            if self.model.bn == "post":
                x = self._bn(x, l, gammas[l], betas[l], training)
        raise AssertionError

    def _eval_losses(self, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            pred = self.forward(X.expand(self.R, *X.shape), training=False)  # (R, N, 1)
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
        optimizer = _BatchedOptimizer(self.opt_cfg, self.params, self.dtype)
        hists = [RunHistory.empty(E, S) for _ in range(R)]
        alive = np.ones(R, dtype=bool)
        Xtr, ytr, d = self.data.X_train, self.data.y_train, self.data
        for epoch in range(E):
            if cancel is not None and cancel():
                raise Cancelled()
            lr_e = torch.from_numpy(lr_table[:, epoch] * alive[:, None])  # (R, S); 0 for diverged runs
            mom_e = torch.from_numpy(mom_table[:, epoch])
            X_e, y_e = Xtr[self.order[:, epoch]], ytr[self.order[:, epoch]]  # (R, N, in), (R, N, 1): this epoch's order
            for b in range(S):
                batch = slice(b * bs, (b + 1) * bs)
                pred = self.forward(X_e[:, batch], training=True)  # (R, B, 1)
                loss = ((pred - y_e[:, batch]) ** 2).mean(dim=(1, 2)).sum()  # Σ_r MSE_r: each run its own gradient
                grads = torch.autograd.grad(loss, self.params)
                optimizer.step(self.params, grads, lr_e[:, b], mom_e[:, b])
            train_l, test_l = self._eval_losses(Xtr, ytr), self._eval_losses(d.X_test, d.y_test)
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
        with torch.no_grad():
            for p in self.params:
                p.view(self.R, -1)[mask] = 0
            for mean, var in zip(self.running_mean, self.running_var):
                mean.view(self.R, -1)[mask] = 0
                var.view(self.R, -1)[mask] = 1
        optimizer.reset(mask)


class _BatchedOptimizer:
    """torch.optim's SGD / Adam / AdamW update rules with a learning rate (and momentum) per run."""

    def __init__(self, cfg: OptimizerConfig, params: list[torch.Tensor], dtype: torch.dtype):
        self.cfg, self.dtype = cfg, dtype
        self.wd = cfg.decay
        self.step_count = 0
        self.buffers: list[torch.Tensor | None] = [None] * len(params)  # SGD momentum / Adam exp_avg
        self.squares = [torch.zeros_like(p) for p in params] if cfg.name != "sgd" else []
        self.has_buffer: torch.Tensor | None = None  # (R,) SGD: torch creates a buffer on first use

    def reset(self, mask: torch.Tensor) -> None:
        for t in [*self.buffers, *self.squares]:
            if t is not None:
                t.view(len(mask), -1)[mask] = 0

    def step(self, params, grads, lr: torch.Tensor, momentum: torch.Tensor) -> None:
        with torch.no_grad():
            if self.cfg.name == "sgd":
                self._sgd(params, grads, lr, momentum)
            else:
                self._adam(params, grads, lr, momentum)

    def _sgd(self, params, grads, lr, momentum):
        R = len(lr)
        use = momentum != 0  # (R,)
        any_momentum = bool(use.any())
        if any_momentum and self.has_buffer is None:
            self.has_buffer = torch.zeros(R, dtype=torch.bool)
        for i, (p, g) in enumerate(zip(params, grads)):
            shape = (R,) + (1,) * (p.dim() - 1)
            if self.wd:
                g = g.add(p, alpha=self.wd)
            if any_momentum:
                m = momentum.to(self.dtype).view(shape)
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = torch.zeros_like(p)
                fresh = (use & ~self.has_buffer).view(shape)
                new = torch.where(fresh, g, buf * m + (1 - self.cfg.dampening) * g)
                buf.copy_(torch.where(use.view(shape), new, buf))
                direction = g + m * buf if self.cfg.nesterov else buf
                g = torch.where(use.view(shape), direction, g)
            p.sub_(lr.to(self.dtype).view(shape) * g)
        if any_momentum:
            self.has_buffer |= use

    def _adam(self, params, grads, lr, beta1):
        R = len(lr)
        self.step_count += 1
        t = self.step_count
        beta2, eps = self.cfg.betas[1], self.cfg.eps
        step_size = (lr / (1 - beta1 ** t)).to(self.dtype)  # (R,), computed in float64 as torch does
        bc2_sqrt = math.sqrt(1 - beta2 ** t)
        decay = (1 - lr * self.wd).to(self.dtype)
        for i, (p, g) in enumerate(zip(params, grads)):
            shape = (R,) + (1,) * (p.dim() - 1)
            if self.wd:
                if self.cfg.name == "adamw":
                    p.mul_(decay.view(shape))
                else:
                    g = g.add(p, alpha=self.wd)
            if self.buffers[i] is None:
                self.buffers[i] = torch.zeros_like(p)
            exp_avg, exp_avg_sq = self.buffers[i], self.squares[i]
            exp_avg.lerp_(g, (1 - beta1).to(self.dtype).view(shape).expand_as(g))
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
            p.sub_(step_size.view(shape) * (exp_avg / denom))
