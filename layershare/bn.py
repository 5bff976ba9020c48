"""Re-estimate batch-norm statistics for one member of an implicit ensemble.

Batch-norm running statistics are accumulated during training over the mix
of members the scheme draws, so they fit the full network (or the average
member) rather than any single member. The activations of a member run alone
have other statistics, most of all in deep layers after dropped branches.
:func:`recalibrate_bn` re-estimates the statistics with that member's own
forward passes, a common fix for subnetworks taken out of a network trained
with random depth or width.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["recalibrate_bn"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    member: Any,
    data: Tensor | Dataset | Iterable,
    *,
    batches: int | None = None,
    batch_size: int = 256,
) -> nn.Module:
    """Re-estimate every batch-norm layer's running statistics for one member.

    Each batch-norm layer's statistics are reset and then accumulated as a
    cumulative (equal-weight) average over the batches, by running the layers
    in training mode with ``momentum=None``. Every other module runs in eval
    mode, so dropout and zoneout stay at their inference rule. No parameter
    changes: every weight stays bit-identical. Afterwards each module's
    training mode and each batch-norm layer's momentum are restored.

    The batches are taken in order (never shuffled), so recalibrating for
    member A, then B, then A again gives A the same statistics both times.

    Args:
        model: A :class:`~layershare.nn.GatedModel`.
        member: The member to run, as accepted by ``model(x, member=...)``,
            or ``None`` for the model's eval network (the scheme's inference
            rule).
        data: Inputs ``[N, *]``, a dataset whose items are ``(input, label)``
            pairs or inputs, or an iterable of such batches (a
            ``DataLoader``).
        batches: Number of batches to use, or ``None`` for all
            (default: ``None``).
        batch_size: Batch size when ``data`` is a tensor or a dataset
            (default: 256).

    Returns:
        The model, with new batch-norm statistics.

    Raises:
        ValueError: When ``batches`` or ``batch_size`` is not a positive int,
            or ``data`` yields no samples.

    Example:
        >>> recalibrate_bn(model, member, split.train, batches=4)  # doctest: +SKIP
    """
    if batches is not None and (
        isinstance(batches, bool) or not isinstance(batches, int) or batches < 1
    ):
        raise ValueError(f"batches must be a positive int or None, but got {batches!r}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, but got {batch_size!r}")
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    if not norms:
        logger.info("%s has no batch-norm layers to recalibrate", type(model).__name__)
        return model

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    modes = {module: module.training for module in model.modules()}
    momenta = {norm: norm.momentum for norm in norms}
    try:
        model.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        seen = 0
        for x in islice(_batches(data, batch_size), batches):
            model(x.to(device), member=member)
            seen += 1
        if seen == 0:
            raise ValueError("data yielded no samples; pass at least one sample")
    finally:
        for norm, momentum in momenta.items():
            norm.momentum = momentum
        for module, training in modes.items():
            module.training = training
    logger.debug("recalibrated %d batch-norm layers on %d batches", len(norms), seen)
    return model


def _batches(data: Tensor | Dataset | Iterable, batch_size: int) -> Iterable[Tensor]:
    """Yield the non-empty input batches of a tensor, dataset or iterable."""
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    batches = data.split(batch_size) if isinstance(data, Tensor) else data
    for batch in batches:
        x = batch[0] if isinstance(batch, list | tuple) else batch

        # An empty batch would put NaN statistics into the average.
        if len(x):
            yield x
