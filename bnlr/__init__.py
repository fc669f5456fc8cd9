"""bnlr: how the learning rate shapes training, with and without BatchNorm, and what schedules do.

Pure torch; never imports Streamlit. The public surface:

- configs: ``DataConfig``, ``ModelConfig``, ``OptimizerConfig``, ``RunConfig``, ``Experiment``,
  ``Grid`` (defaults: the article's setup, ``bnlr.article``)
- ``train(experiment, engine="batched"|"reference")`` → ``Result`` (tidy pandas tables)
- schedules: ``FAMILIES`` (``bnlr.families``), ``parse_schedule``, ``build_scheduler``,
  ``trajectory``; optimizers: ``make_optimizer`` (``bnlr.optimizers``)
- analysis: ``bnlr.metrics`` (per run), ``bnlr.analysis`` (over seeds, per page)
"""

from .config import DataConfig, Experiment, Grid, ModelConfig, RunConfig, log_grid
from .families import FAMILIES
from .history import Cancelled
from .optimizers import OptimizerConfig, make_optimizer
from .schedules import build_scheduler, parse_schedule, trajectory
from .train import Result, train

__all__ = [
    "FAMILIES",
    "Cancelled",
    "DataConfig",
    "Experiment",
    "Grid",
    "ModelConfig",
    "OptimizerConfig",
    "Result",
    "RunConfig",
    "build_scheduler",
    "log_grid",
    "make_optimizer",
    "parse_schedule",
    "train",
    "trajectory",
]
