"""The MLP family of the article and the initial weights every engine shares.

``MLP`` is the plain ``nn.Module`` of the reference engine. BatchNorm placements follow the
article: ``pre`` = Linear → BatchNorm1d → activation, ``post`` = Linear → activation →
BatchNorm1d (the BN output feeds the next Linear). ``initial_parameters`` draws the weights
with nn.Linear's default init (kaiming_uniform_(a=√5), bias U(±1/√fan_in)) from the run's own
generator, so runs that differ only in lr or schedule start from the same point.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

ACTIVATION_FNS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "leaky_relu": F.leaky_relu,
}


def initial_parameters(
    config: ModelConfig,
    in_features: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Returns [(weight (out, in), bias (out,)), ...] for each Linear, hidden layers then output."""
    sizes = [in_features, *config.widths, 1]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = torch.empty(fan_out, fan_in, dtype=torch.float64)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in)
        b = torch.empty(fan_out, dtype=torch.float64)
        nn.init.uniform_(b, -bound, bound, generator=generator)
        layers.append((w.to(dtype), b.to(dtype)))
    return layers


class MLP(nn.Module):
    """Hidden Linear layers (BatchNorm1d ``pre`` or ``post`` the activation), then Linear(·, 1)."""

    def __init__(self, config: ModelConfig, in_features: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        sizes = [in_features, *config.widths]
        # skip_init: nn.Linear's own init would draw from the global RNG; we load our weights.
        self.linears = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, a, b, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.bns = (
            nn.ModuleList(
                nn.BatchNorm1d(w, momentum=config.bn_momentum, dtype=dtype) for w in config.widths
            )
            if config.bn != "none"
            else nn.ModuleList()
        )
        self.out = nn.utils.skip_init(nn.Linear, sizes[-1], 1, dtype=dtype)
        self.act = ACTIVATION_FNS[config.activation]
        self.bn = config.bn

    def load_initial(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> MLP:
        with torch.no_grad():
            for lin, (w, b) in zip([*self.linears, self.out], layers, strict=True):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, linear in enumerate(self.linears):
            z = linear(x)
            if self.bn == "pre":
                z = self.bns[i](z)
            x = self.act(z)
            if self.bn == "post":
                x = self.bns[i](x)
        return self.out(x)


def layout(model: ModelConfig, in_features: int) -> list[tuple[str, tuple[int, ...]]]:
    """Returns [(MLP parameter name, shape), ...] in the flat order every per-run parameter vector
    of bnlr uses: per hidden layer its weight (row-major), bias, then BN gamma and beta (if any);
    last the output layer's weight and bias."""
    sizes = [in_features, *model.widths]
    blocks = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        blocks += [(f"linears.{k}.weight", (b, a)), (f"linears.{k}.bias", (b,))]
        if model.bn != "none":
            blocks += [(f"bns.{k}.weight", (b,)), (f"bns.{k}.bias", (b,))]
    return [*blocks, ("out.weight", (1, sizes[-1])), ("out.bias", (1,))]
