"""The implicit-ensemble experiment: train, enumerate or sample, evaluate, lesion."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from layershare.engine import evaluate
from layershare.experiments.registry import (
    build_model,
    build_scheme,
    load_task,
    train_model,
)
from layershare.lesion import lesion_members
from layershare.members import Members
from layershare.sampler import Sampler
from layershare.schemes import StochasticDepth
from layershare.train import History

__all__ = ["EnsembleRun", "run_implicit_ensemble"]

logger = logging.getLogger(__name__)


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
        lesion_logits: Test logits of the eval network with each single gate
            removed, keeping the trained batch-norm statistics ``[G, N, C]``.
        lesion_member_logits: Test logits of the members that keep every gate
            but one, run like ``logits`` (with re-estimated batch-norm
            statistics when ``recalibrate_bn`` is set) ``[G, N, C]``.
        lesion_removed: The removed gate of each lesion, as 1-tuples.
        column_members: For column-structured models (FractalNet), the member
            that keeps each column alone; else ``None``.
        column_logits: Their test logits ``[K, N, C]``, run like ``logits``.
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
    lesion_member_logits: Tensor
    lesion_removed: list[tuple[int, ...]]
    column_members: Members | None = None
    column_logits: Tensor | None = None


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
    task = load_task(params)
    model = build_model(params, task)
    scheme = build_scheme(params)
    history = train_model(model, scheme, task, params, progress=progress)
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

    recalibrate = params.get("recalibrate_bn", False) and task.bn_data is not None
    options = {"extra_inputs": task.extra_inputs, "progress": progress}
    logits = evaluate(
        model,
        members,
        task.inputs,
        bn_data=task.bn_data if recalibrate else None,
        bn_batches=params.get("bn_batches"),
        **options,
    )
    if model.graph.num_gates:
        lesions, removed = lesion_members(model.graph, 1)
        lesion_logits = task.select(
            evaluate(model, lesions, task.inputs, rule="inference", **options)
        )
        lesion_member_logits = task.select(
            evaluate(
                model,
                lesions,
                task.inputs,
                bn_data=task.bn_data if recalibrate else None,
                bn_batches=params.get("bn_batches"),
                **options,
            )
        )
    else:
        removed, lesion_logits = [], task.select(logits)[:0]
        lesion_member_logits = lesion_logits
    column_members = sampler.columns() if model.graph.columns() else None
    column_logits = None
    if column_members is not None:
        column_logits = task.select(
            evaluate(
                model,
                column_members,
                task.inputs,
                bn_data=task.bn_data if recalibrate else None,
                bn_batches=params.get("bn_batches"),
                **options,
            )
        )
    logger.info("evaluated %d of %d members", len(members), count)
    return EnsembleRun(
        model=model,
        sampler=sampler,
        history=history,
        count=count,
        enumerated=enumerated,
        members=members,
        logits=task.select(logits),
        labels=task.labels,
        lengths=sampler.lengths(members),
        full_logits=task.full_logits(model),
        lesion_logits=lesion_logits,
        lesion_member_logits=lesion_member_logits,
        lesion_removed=removed,
        column_members=column_members,
        column_logits=column_logits,
    )
