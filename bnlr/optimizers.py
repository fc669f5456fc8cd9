"""Optimizers, one place each: the config, the torch.optim factory and the batched update rule.

An optimizer is a ``Rule`` in ``RULES``: its torch class, the keyword arguments that class takes
from an ``OptimizerConfig``, and the same update written on one flat tensor of many runs'
parameters, with a learning rate (and momentum / beta1) per run. The batched engine uses the
rule; the reference engine, the LR range test and the lr trajectories use ``make_optimizer``,
i.e. torch.optim itself; the generated script prints ``source``. Update rules follow torch.optim
(``torch/optim/sgd.py``, ``adam.py``) operation by operation, so that float64 results agree to
rounding (``tests/test_engines.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OptimizerConfig:
    """A torch.optim optimizer (all but lr), with torch's defaults."""

    name: str = "sgd"  # a key of RULES: sgd | adam | adamw
    momentum: float = 0.0  # SGD only
    dampening: float = 0.0  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float | None = None  # None = torch's default: 0, or 0.01 for AdamW
    betas: tuple[float, float] = (0.9, 0.999)  # Adam / AdamW
    eps: float = 1e-8  # Adam / AdamW

    def __post_init__(self):
        if self.name not in RULES:
            raise ValueError(f"unknown optimizer {self.name!r}; accepted: {', '.join(RULES)}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not (0 <= self.momentum < 1):
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if not (0 <= self.dampening <= 1):
            raise ValueError(f"dampening must lie in [0, 1], got {self.dampening!r}")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                "nesterov needs SGD with momentum > 0 and dampening = 0 (as torch.optim.SGD)"
            )
        wd = self.weight_decay
        if wd is not None and not (math.isfinite(wd) and wd >= 0):
            raise ValueError(f"weight_decay must be a finite number ≥ 0, got {wd!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {self.eps!r}")

    @property
    def rule(self) -> type[Rule]:
        return RULES[self.name]

    @property
    def resolved_weight_decay(self) -> float:
        """The weight decay torch uses: the one given, else the class's default."""
        return float(self.weight_decay if self.weight_decay is not None else self.rule.weight_decay)

    @property
    def label(self) -> str:
        return self.rule.label(self)

    @property
    def momentum_or_beta1(self) -> float:
        """What CyclicLR / OneCycleLR cycle, before any scheduler touches it."""
        return self.momentum if self.name == "sgd" else self.betas[0]


class Rule:
    """One optimizer: its torch class, the arguments it takes, and its batched update.

    A batched rule keeps the state of R runs as flat tensors shaped like ``theta`` (every run's
    parameters, block after block) and steps them all at once; ``lr`` and ``momentum`` arrive
    spread to every element (float64, as torch's Python scalars are).
    """

    torch_class: str
    weight_decay: float = 0.0  # torch's default

    @staticmethod
    def label(cfg: OptimizerConfig) -> str:
        raise NotImplementedError

    @staticmethod
    def kwargs(cfg: OptimizerConfig) -> dict:
        """The torch class's keyword arguments (all but params and lr), in its own order."""
        raise NotImplementedError

    def __init__(self, cfg: OptimizerConfig, theta: torch.Tensor):
        self.cfg, self.theta, self.dtype = cfg, theta, theta.dtype
        self.wd = cfg.resolved_weight_decay

    def step(self, grad, lr, momentum, any_momentum: bool) -> None:
        raise NotImplementedError

    def reset(self, elements: torch.Tensor) -> None:
        """Zeroes the state of ``elements`` (a diverged run's), so its NaNs go no further."""


class SGD(Rule):
    """torch.optim.SGD: weight decay, momentum with dampening, Nesterov."""

    torch_class = "SGD"

    @staticmethod
    def label(cfg):
        momentum = f" m={cfg.momentum:g}" if cfg.momentum else ""
        return "SGD" + momentum + (" nesterov" if cfg.nesterov else "")

    @staticmethod
    def kwargs(cfg):
        return {
            "momentum": cfg.momentum,
            "dampening": cfg.dampening,
            "nesterov": cfg.nesterov,
            "weight_decay": cfg.resolved_weight_decay,
        }

    def __init__(self, cfg, theta):
        super().__init__(cfg, theta)
        self.buf: torch.Tensor | None = None  # the momentum buffer, made on first use
        self.has_buf: torch.Tensor | None = None  # torch creates a run's buffer on its first step

    def reset(self, elements):
        if self.buf is not None:
            self.buf[elements] = 0

    def step(self, grad, lr, momentum, any_momentum):
        p, g = self.theta, grad
        if self.wd:
            g = g.add(p, alpha=self.wd)
        if any_momentum:  # (momentum is only spread when some run has it this epoch)
            if self.buf is None:
                self.buf = torch.zeros_like(p)
                self.has_buf = torch.zeros(p.shape, dtype=torch.bool)
            m, use = momentum.to(self.dtype), momentum != 0
            # first use: buf = grad; after: buf = m · buf + (1 − dampening) · grad
            new = torch.where(use & ~self.has_buf, g, self.buf * m + (1 - self.cfg.dampening) * g)
            self.buf.copy_(torch.where(use, new, self.buf))
            direction = g + m * self.buf if self.cfg.nesterov else self.buf
            g = torch.where(use, direction, g)
            self.has_buf |= use
        p.sub_(lr.to(self.dtype) * g)


class Adam(Rule):
    """torch.optim.Adam: L2 weight decay added to the gradient, bias-corrected moments."""

    torch_class = "Adam"
    decoupled = False

    @staticmethod
    def label(cfg):
        return RULES[cfg.name].torch_class

    @staticmethod
    def kwargs(cfg):
        return {"betas": cfg.betas, "eps": cfg.eps, "weight_decay": cfg.resolved_weight_decay}

    def __init__(self, cfg, theta):
        super().__init__(cfg, theta)
        self.step_count = 0
        self.exp_avg = torch.zeros_like(theta)
        self.exp_avg_sq = torch.zeros_like(theta)

    def reset(self, elements):
        self.exp_avg[elements] = 0
        self.exp_avg_sq[elements] = 0

    def step(self, grad, lr, beta1, any_momentum):
        p, g = self.theta, grad
        self.step_count += 1
        t = self.step_count
        beta2, eps = self.cfg.betas[1], self.cfg.eps
        if self.wd:
            if self.decoupled:
                p.mul_((1 - lr * self.wd).to(self.dtype))
            else:
                g = g.add(p, alpha=self.wd)
        self.exp_avg.lerp_(g, (1 - beta1).to(self.dtype))
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = (lr / (1 - beta1**t)).to(self.dtype)  # in float64, as torch does in Python
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
        p.sub_(step_size * (self.exp_avg / denom))


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p ← p · (1 − lr · wd); default 0.01."""

    torch_class = "AdamW"
    decoupled = True
    weight_decay = 0.01


RULES: dict[str, type[Rule]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(params, config: OptimizerConfig, lr: float) -> torch.optim.Optimizer:
    """Returns the torch.optim optimizer that ``config`` describes, at learning rate ``lr``."""
    cls = getattr(torch.optim, config.rule.torch_class)
    return cls(params, lr=lr, **config.rule.kwargs(config))


def bare_optimizer(config: OptimizerConfig, lr: float) -> torch.optim.Optimizer:
    """Returns an optimizer on one parameter that never moves: a scheduler's lr without training."""
    return make_optimizer([torch.zeros(1, requires_grad=True)], config, lr)


def source(config: OptimizerConfig) -> str:
    """Returns the Python building the optimizer, e.g. ``torch.optim.SGD(params, lr=lr, ...)``."""
    args = ", ".join(f"{k}={v!r}" for k, v in config.rule.kwargs(config).items())
    return f"torch.optim.{config.rule.torch_class}(params, lr=lr, {args})"


def group_momentum(group: dict) -> float:
    """Returns SGD's momentum or Adam's beta1 in a param group: what CyclicLR / OneCycleLR cycle."""
    return group["betas"][0] if "betas" in group else group["momentum"]
