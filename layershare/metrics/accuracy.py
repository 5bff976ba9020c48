"""Accuracy of members and of their ensemble.

The ensemble of a set of members is the mean of their softmax
probabilities, the rule ``ls.evaluate(..., reduce="mean")`` streams. A
predicted label is the argmax over classes, and a tie goes to the first
maximal class (``torch.argmax``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from layershare.metrics._checks import (
    as_logits,
    as_tensor,
    member_predictions,
    predictions_and_labels,
)

__all__ = ["accuracy", "ensemble_probabilities", "majority_vote"]


def accuracy(outputs: Any, labels: Any) -> Tensor:
    """Compute the fraction of samples whose predicted label equals the label.

    ``accuracy = (1 / N) * sum_j [argmax_c outputs[j, c] == labels[j]]``.
    Leading dimensions are kept, so member outputs ``[M, N, C]`` give one
    accuracy per member.

    Args:
        outputs: Logits or probabilities ``[..., N, C]`` (floating point) or
            predicted labels ``[..., N]`` (integer). A tie between classes goes
            to the first maximal class.
        labels: Class indices ``[N]``.

    Returns:
        Accuracy ``[...]`` as float64: ``[M]`` for ``[M, N, C]``, a 0-d tensor
        for ``[N, C]``.

    Raises:
        ValueError: When outputs and labels have different sample counts, a
            label exceeds the class count, or the logits hold NaN.

    Example:
        >>> accuracy(torch.tensor([[0, 1, 1], [0, 0, 1]]), torch.tensor([0, 1, 1]))
        tensor([1.0000, 0.6667], dtype=torch.float64)
    """
    predictions, labels = predictions_and_labels(outputs, labels)
    labels = labels.to(predictions.device)
    correct = (predictions == labels).sum(-1, dtype=torch.int64)
    return correct.double() / labels.shape[0]


def ensemble_probabilities(logits: Any) -> Tensor:
    """Average the members' softmax probabilities into the ensemble's.

    ``p_ens[j, c] = (1 / M) * sum_m softmax(logits[m, j])[c]``, computed in
    float64.

    Args:
        logits: Member logits ``[M, N, C]``.

    Returns:
        Ensemble probabilities ``[N, C]`` (float64).
    """
    x = as_logits(logits, "logits")
    if x.dim() != 3:
        raise ValueError(
            f"logits must have shape [members, samples, classes], but got shape "
            f"{tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("logits hold no members")
    return torch.softmax(x, dim=-1).mean(0)


def majority_vote(outputs: Any, labels: Any | None = None) -> Tensor:
    """Return each sample's most frequent predicted label over the members.

    A tie between classes with the same number of votes goes to the smallest
    class index, the first maximal index of the vote counts.

    Args:
        outputs: Member logits ``[M, N, C]`` or predicted labels ``[M, N]``.
        labels: Class indices ``[N]``, used only to check the sample count
            (default: ``None``).

    Returns:
        Voted labels ``[N]`` (int64).
    """
    x = as_tensor(outputs, "outputs")
    predictions, _ = member_predictions(x, labels, "majority_vote", needed=1)
    num_classes = x.shape[-1] if x.is_floating_point() else int(predictions.max()) + 1
    votes = torch.nn.functional.one_hot(predictions, num_classes).sum(0)
    return votes.argmax(-1)
