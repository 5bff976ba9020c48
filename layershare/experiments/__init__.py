"""Experiments behind the report notebooks: build, train, enumerate, evaluate.

The notebooks stay reports: they call these functions with their parameters
and plot what comes back. Everything here uses the public API (models,
schemes, :class:`~layershare.Sampler`, :func:`~layershare.evaluate`).
"""

from layershare.experiments.ensemble import EnsembleRun, run_implicit_ensemble
from layershare.experiments.recurrent import RecurrentRun, run_recurrent
from layershare.experiments.registry import (
    MODELS,
    PARAMETER_NAMES,
    SCHEMES,
    Task,
    build_model,
    build_scheme,
    collect_parameters,
    load_task,
    train_model,
)

__all__ = [
    "MODELS",
    "PARAMETER_NAMES",
    "SCHEMES",
    "EnsembleRun",
    "RecurrentRun",
    "Task",
    "build_model",
    "build_scheme",
    "collect_parameters",
    "load_task",
    "run_implicit_ensemble",
    "run_recurrent",
    "train_model",
]
