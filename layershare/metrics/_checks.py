"""Argument checks and conversions shared by the metrics.

Every public measure calls these once at its top, so the same bad input
raises the same error everywhere. Conventions checked here:

- member outputs are predicted labels ``[..., N]`` (an integer tensor) or
  logits ``[..., N, C]`` (a floating-point tensor), where ``N`` is the number
  of samples;
- labels are an integer tensor ``[N]`` of class indices;
- a predicted label is ``argmax`` over the class dimension, and a tie goes to
  the first maximal index (the rule ``torch.argmax`` documents).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "as_labels",
    "as_logits",
    "as_predictions",
    "as_probabilities",
    "as_tensor",
    "check_member_count",
    "check_votes",
    "correct_counts",
    "member_predictions",
    "predictions_and_labels",
    "PROBABILITY_TOLERANCE",
]

PROBABILITY_TOLERANCE = 1e-4


def as_tensor(value: Any, name: str) -> Tensor:
    """Return ``value`` as a tensor, accepting NumPy arrays and sequences."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (np.ndarray, Sequence)) and not isinstance(value, str):
        return torch.as_tensor(np.array(value))
    raise TypeError(
        f"{name} must be a tensor or an array, but got {type(value).__name__}"
    )


def _check_finite(x: Tensor, name: str) -> None:
    """Raise when a floating-point tensor contains NaN or infinity."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} contains {bad} NaN or infinite values; check the model's "
            f"outputs before measuring them"
        )


def as_predictions(outputs: Any, name: str = "outputs") -> Tensor:
    """Return predicted labels ``[..., N]`` from logits ``[..., N, C]`` or labels.

    A floating-point tensor is read as logits (or probabilities, which have the
    same argmax) and reduced with ``argmax`` over its last dimension, so a tie
    goes to the first maximal class. An integer tensor is read as predicted
    labels and returned unchanged.
    """
    x = as_tensor(outputs, name)
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(
            f"{name} must be integer labels or floating-point logits, but got "
            f"dtype {x.dtype}"
        )
    if x.is_floating_point():
        if x.dim() < 2:
            raise ValueError(
                f"{name} as logits must have shape [..., samples, classes], but got "
                f"shape {tuple(x.shape)}"
            )
        _check_finite(x, name)
        return x.argmax(-1)
    if x.dim() < 1:
        raise ValueError(
            f"{name} as labels must have shape [..., samples], but got a scalar"
        )
    if bool((x < 0).any()):
        raise ValueError(
            f"{name} as labels must be class indices >= 0, but got {int(x.min())}"
        )
    return x.long()


def as_labels(labels: Any, samples: int, num_classes: int | None = None) -> Tensor:
    """Return ``labels`` as a long tensor ``[samples]`` of valid class indices."""
    y = as_tensor(labels, "labels")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"labels must be integer class indices, but got {y.dtype}")
    if y.dim() != 1:
        raise ValueError(
            f"labels must have shape [samples], but got shape {tuple(y.shape)}"
        )
    if y.shape[0] != samples:
        raise ValueError(
            f"outputs have {samples} samples but labels have {y.shape[0]}; pass "
            f"the labels of the samples the outputs were computed on"
        )
    if samples == 0:
        raise ValueError("outputs and labels have no samples")
    if bool((y < 0).any()):
        raise ValueError(f"labels must be >= 0, but got {int(y.min())}")
    if num_classes is not None and bool((y >= num_classes).any()):
        raise ValueError(
            f"labels go up to {int(y.max())} but the outputs have {num_classes} classes"
        )
    return y.long()


def as_logits(outputs: Any, name: str = "outputs") -> Tensor:
    """Return floating-point logits ``[..., N, C]`` as float64."""
    x = as_tensor(outputs, name)
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be floating-point logits [..., samples, classes], but "
            f"got dtype {x.dtype}; predicted labels carry no probabilities"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{name} must have shape [..., samples, classes], but got shape "
            f"{tuple(x.shape)}"
        )
    _check_finite(x, name)
    return x.double()


def as_probabilities(outputs: Any, *, probs: bool, name: str = "outputs") -> Tensor:
    """Return class probabilities ``[..., N, C]`` as float64.

    With ``probs=False`` the outputs are logits and go through softmax. With
    ``probs=True`` they must already be probabilities: within
    ``[0, 1]`` and summing to 1 over the class dimension up to
    :data:`PROBABILITY_TOLERANCE`.
    """
    x = as_logits(outputs, name)
    if not probs:
        return torch.softmax(x, dim=-1)
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} must be probabilities in [0, 1], but got values from {low:.4g} "
            f"to {high:.4g}; pass probs=False for logits"
        )
    error = float((x.sum(-1) - 1).abs().max())
    if error > PROBABILITY_TOLERANCE:
        raise ValueError(
            f"{name} must be probabilities that sum to 1 over the classes, but a "
            f"row sums to 1 +- {error:.4g}; pass probs=False for logits"
        )
    return x


def predictions_and_labels(outputs: Any, labels: Any) -> tuple[Tensor, Tensor | None]:
    """Return predictions ``[..., N]`` and checked labels ``[N]`` (or ``None``)."""
    x = as_tensor(outputs, "outputs")
    predictions = as_predictions(x)
    if labels is None:
        return predictions, None
    num_classes = x.shape[-1] if x.is_floating_point() else None
    return predictions, as_labels(labels, predictions.shape[-1], num_classes)


def member_predictions(
    outputs: Any, labels: Any, measure: str, needed: int = 2
) -> tuple[Tensor, Tensor | None]:
    """Return predictions ``[M, N]`` and labels ``[N]`` for a measure over members.

    ``labels`` may be ``None`` for measures that compare members only.

    Raises:
        ValueError: When the outputs are not ``[members, samples(, classes)]``
            or hold fewer than ``needed`` members.
    """
    predictions, labels = predictions_and_labels(outputs, labels)
    if predictions.dim() != 2:
        raise ValueError(
            f"{measure} needs outputs [members, samples] or [members, samples, "
            f"classes], but got predictions of shape {tuple(predictions.shape)}"
        )
    check_member_count(predictions.shape[0], needed, measure)
    return predictions, labels


def check_member_count(members: int, needed: int, measure: str) -> None:
    """Raise when a measure over members gets fewer than ``needed`` of them."""
    if members < needed:
        raise ValueError(
            f"{measure} compares members, so it needs at least {needed}, but got "
            f"{members}; pass the outputs of several members"
        )


def correct_counts(
    outputs: Any, labels: Any, *, votes: bool, measure: str
) -> tuple[Tensor, int]:
    """Return the members right on each sample ``[N]`` (float64) and ``M``.

    With ``votes=False`` the outputs are member outputs ``[M, N(, C)]``. With
    ``votes=True`` they are per-sample class counts ``[N, C]``, such as
    ``ls.evaluate(..., reduce="votes")`` returns: ``outputs[j, c]`` members
    predict class ``c`` for sample ``j``, and every row sums to ``M``.
    """
    if not votes:
        predictions, checked = member_predictions(outputs, labels, measure)
        if checked is None:
            raise TypeError(f"{measure} needs labels [samples], but got None")
        right = (predictions == checked.to(predictions.device)).sum(0)
        return right.double().cpu(), predictions.shape[0]

    table = check_votes(outputs, measure)
    checked = as_labels(labels, table.shape[0], table.shape[1]).to(table.device)
    members = int(table[0].sum())
    right = table.gather(1, checked[:, None])[:, 0]
    return right.cpu(), members


def check_votes(votes: Any, measure: str) -> Tensor:
    """Return a vote table ``[N, C]`` as float64 after checking its counts.

    Raises:
        ValueError: When the table is not 2-d, holds negative or fractional
            counts, rows with different sums, or fewer than 2 members.
    """
    table = as_tensor(votes, "votes").double()
    if table.dim() != 2 or table.shape[0] == 0:
        raise ValueError(
            f"votes must be per-sample class counts [samples, classes], but got "
            f"shape {tuple(table.shape)}"
        )
    _check_finite(table, "votes")
    if bool((table < 0).any()) or not bool((table == table.round()).all()):
        raise ValueError(
            "votes must be non-negative whole counts of members per class, as "
            'ls.evaluate(..., reduce="votes") returns'
        )
    totals = table.sum(1)
    if bool((totals != totals[0]).any()):
        raise ValueError(
            f"every sample must have the same number of votes, but the row sums "
            f"range from {int(totals.min())} to {int(totals.max())}; add vote "
            f"tables of the same members only"
        )
    check_member_count(int(totals[0]), 2, measure)
    return table
