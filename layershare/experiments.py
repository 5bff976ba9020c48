"""Experiments behind the report notebooks: build, train, enumerate, evaluate.

The notebooks stay reports: they call :func:`run_implicit_ensemble` with their
parameters and plot what it returns. Everything here uses the public API
(models, schemes, :class:`~layershare.Sampler`, :func:`~layershare.evaluate`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from layershare import models
from layershare.data import DataSplit, digits
from layershare.engine import evaluate
from layershare.lesion import lesion_members
from layershare.members import Members
from layershare.sampler import Sampler
from layershare.schemes import DropPath, Scheme, StochasticDepth
from layershare.train import History, fit

__all__ = [
    "MODELS",
    "SCHEMES",
    "EnsembleRun",
    "build_model",
    "build_scheme",
    "load_data",
    "run_implicit_ensemble",
]

logger = logging.getLogger(__name__)

#: Model name -> (digits kind, constructor taking the parameters and the data).
MODELS: dict[str, tuple[str, Callable[[Mapping[str, Any], DataSplit], nn.Module]]] = {
    "ResNet": (
        "images",
        lambda p, d: models.ResNet(
            blocks=p["blocks"],
            width=p["width"],
            in_channels=d.input_shape[0],
            num_classes=d.num_classes,
        ),
    ),
    "ResidualMLP": (
        "flat",
        lambda p, d: models.ResidualMLP(
            in_features=d.input_shape[0],
            width=p["width"],
            blocks=p["blocks"],
            num_classes=d.num_classes,
        ),
    ),
}

#: Scheme name -> constructor taking the parameters.
SCHEMES: dict[str, Callable[[Mapping[str, Any]], Scheme | None]] = {
    "stochastic_depth": lambda p: StochasticDepth(
        p_last=p.get("p_last", 0.5),
        rule=p.get("rule", "linear"),
        scale=p.get("scale", "test"),
        granularity=p.get("granularity", "batch"),
    ),
    "drop_path": lambda p: DropPath(
        local=p.get("local", 0.15),
        global_ratio=p.get("global_ratio", 0.0),
        granularity=p.get("granularity", "batch"),
    ),
    "none": lambda p: None,
}


def _lookup(table: Mapping[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(table)}")
    return table[name]


def load_data(params: Mapping[str, Any]) -> DataSplit:
    """Load the digits split the parameters' model needs."""
    kind, _ = _lookup(MODELS, "model", params["model"])
    return digits(
        kind, test_fraction=params.get("test_fraction", 0.2), seed=params.get("seed", 0)
    )


def build_model(params: Mapping[str, Any], data: DataSplit) -> nn.Module:
    """Build the model named by ``params["model"]`` for ``data``."""
    _, make = _lookup(MODELS, "model", params["model"])
    torch.manual_seed(params.get("seed", 0))
    return make(params, data)


def build_scheme(params: Mapping[str, Any]) -> Scheme | None:
    """Build the scheme named by ``params["scheme"]``."""
    return _lookup(SCHEMES, "scheme", params.get("scheme", "none"))(params)


@dataclass
class EnsembleRun:
    """Everything the implicit-ensemble report shows, computed in one run.

    Attributes:
        model: The trained model, in eval mode.
        sampler: Its sampler under the training scheme.
        history: The training history.
        count: Exact number of distinct members.
        enumerated: Whether ``members`` is the whole ensemble (else a sample).
        members: The evaluated members.
        logits: Test logits of every member ``[M, N, C]``.
        labels: Test labels ``[N]``.
        lengths: Path length of every member ``[M]``.
        full_logits: Test logits of the eval model (the scheme's inference rule).
        lesion_logits: Test logits with each single gate removed ``[G, N, C]``.
        lesion_removed: The removed gate of each lesion, as 1-tuples.
    """

    model: nn.Module
    sampler: Sampler
    history: History
    count: int
    enumerated: bool
    members: Members
    logits: Tensor
    labels: Tensor
    lengths: Tensor
    full_logits: Tensor
    lesion_logits: Tensor
    lesion_removed: list[tuple[int, ...]]


def run_implicit_ensemble(
    params: Mapping[str, Any],
    *,
    max_members: int = 4096,
    progress: bool = True,
) -> EnsembleRun:
    """Train a gated model and evaluate its implicit ensemble on the test split.

    Every member is evaluated when the ensemble has at most ``max_members``;
    otherwise ``max_members`` distinct members are sampled with the run's seed.

    Args:
        params: Report parameters: ``model``, ``blocks``, ``width``, ``scheme``
            and its rates, ``epochs``, ``batch_size``, ``lr``,
            ``weight_decay``, ``seed``, ``test_fraction``, and
            ``recalibrate_bn`` (re-estimate each member's batch-norm
            statistics on ``bn_batches`` batches of 256 training digits
            before evaluating it).
        max_members: Largest ensemble evaluated whole (default: 4096).
        progress: Show progress bars (default: ``True``).

    Returns:
        An :class:`EnsembleRun`.
    """
    data = load_data(params)
    model = build_model(params, data)
    scheme = build_scheme(params)
    history = fit(
        model,
        scheme,
        data.train,
        test=data.test,
        epochs=params["epochs"],
        batch_size=params.get("batch_size", 64),
        lr=params.get("lr", 0.05),
        weight_decay=params.get("weight_decay", 5e-4),
        seed=params.get("seed", 0),
        progress=progress,
    )
    model.eval()
    # A plain network (no scheme) still has its unraveled paths as members;
    # the sampler then only needs a scheme for counting and enumerating.
    sampler = Sampler(model, scheme if scheme is not None else StochasticDepth(1.0))
    count = sampler.count()
    enumerated = count <= max_members
    if enumerated:
        members = sampler.enumerate()
    else:
        members = sampler.sample(max_members, seed=params.get("seed", 0), unique=True)
    x, labels = data.test.tensors
    bn_data = None
    if params.get("recalibrate_bn", False):
        bn_data = data.train.tensors[0]
    logits = evaluate(
        model,
        members,
        x,
        bn_data=bn_data,
        bn_batches=params.get("bn_batches"),
        progress=progress,
    )
    with torch.no_grad():
        full_logits = model(x)
    lesions, removed = lesion_members(model.graph, 1)
    lesion_logits = evaluate(model, lesions, x, rule="inference")
    logger.info("evaluated %d of %d members", len(members), count)
    return EnsembleRun(
        model=model,
        sampler=sampler,
        history=history,
        count=count,
        enumerated=enumerated,
        members=members,
        logits=logits,
        labels=labels,
        lengths=sampler.lengths(members),
        full_logits=full_logits,
        lesion_logits=lesion_logits,
        lesion_removed=removed,
    )
