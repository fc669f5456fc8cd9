"""bnlr: how the learning rate shapes training, with and without BatchNorm, and what schedules do.

Pure torch; never imports Streamlit. The public surface:

- configs: ``DataConfig``, ``ModelConfig``, ``OptimizerConfig``, ``RunConfig``, ``Experiment``, ``Grid``
- ``train(experiment, engine="batched"|"reference")`` → ``Result`` (tidy pandas tables)
- schedules: ``parse_schedule``, ``build_scheduler``, ``trajectory``, ``make_optimizer``
- metrics: ``run_metrics``, ``lr_sensitivity``
"""

from .config import DataConfig, Experiment, Grid, ModelConfig, OptimizerConfig, RunConfig, log_grid
from .history import Cancelled
from .schedules import FAMILIES, build_scheduler, make_optimizer, parse_schedule, trajectory
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
