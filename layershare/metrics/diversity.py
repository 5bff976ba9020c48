"""Non-pairwise diversity of ensemble members (Kuncheva and Whitaker 2003).

Kuncheva and Whitaker, "Measures of Diversity in Classifier Ensembles and
Their Relationship with the Ensemble Accuracy", Machine Learning 51, 2003.
With ``L`` members and ``N`` samples, let ``l_j`` be the number of members
right on sample ``j``. The entropy measure, the Kohavi-Wolpert variance and
the interrater agreement depend only on these counts. So each function also
accepts the per-sample class counts ("votes") that
``ls.evaluate(model, members, x, reduce="votes")`` streams, with
``l_j = votes[j, labels[j]]``, and covers millions of members without
holding their outputs.

:func:`label_disagreement` compares predicted labels instead of oracle
outputs. With two classes it equals the oracle disagreement; beyond two,
two wrong members with different labels disagree on labels only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from layershare.metrics._checks import (
    check_votes,
    correct_counts,
    member_predictions,
)

__all__ = [
    "entropy_measure",
    "interrater_kappa",
    "kw_variance",
    "label_disagreement",
]


def entropy_measure(outputs: Any, labels: Any, *, votes: bool = False) -> Tensor:
    """Compute the entropy measure E of the members' oracle outputs.

    ``E = (1 / N) * sum_j min(l_j, L - l_j) / (L - ceil(L / 2))``: 0 when all
    members agree on every sample, 1 when every sample splits the members as
    evenly as possible between right and wrong.

    Args:
        outputs: Member logits ``[L, N, C]``, predicted labels ``[L, N]``, or
            with ``votes=True`` class counts ``[N, C]``.
        labels: Class indices ``[N]``.
        votes: Read ``outputs`` as class counts (default: ``False``).

    Returns:
        A 0-d float64 tensor.

    Raises:
        ValueError: For fewer than 2 members, or outputs and labels of
            different lengths.
    """
    right, members = correct_counts(outputs, labels, votes=votes, measure="entropy")
    spread = torch.minimum(right, members - right)
    return (spread / (members - math.ceil(members / 2))).mean()


def kw_variance(outputs: Any, labels: Any, *, votes: bool = False) -> Tensor:
    """Compute the Kohavi-Wolpert variance of the members' oracle outputs.

    ``KW = (1 / (N L^2)) * sum_j l_j (L - l_j)``, the variance of the
    right-or-wrong outcome over members, averaged over samples. It equals
    ``(L - 1) / (2 L)`` times the mean pairwise oracle disagreement.

    Args:
        outputs: Member logits ``[L, N, C]``, predicted labels ``[L, N]``, or
            with ``votes=True`` class counts ``[N, C]``.
        labels: Class indices ``[N]``.
        votes: Read ``outputs`` as class counts (default: ``False``).

    Returns:
        A 0-d float64 tensor in ``[0, 1/4]``.
    """
    right, members = correct_counts(outputs, labels, votes=votes, measure="kw_variance")
    return (right * (members - right)).mean() / members**2


def interrater_kappa(outputs: Any, labels: Any, *, votes: bool = False) -> Tensor:
    """Compute the interrater agreement kappa of the members' oracle outputs.

    ``kappa = 1 - ((1 / L) * sum_j l_j (L - l_j)) / (N (L - 1) p (1 - p))``
    with ``p = sum_j l_j / (N L)`` the mean member accuracy (Fleiss' kappa
    for two categories, right and wrong). It is 1 when the members agree on
    every sample and falls as they disagree more than chance. When ``p`` is 0
    or 1 every member is wrong or right on every sample, so the members agree
    fully and the result is 1.

    Args:
        outputs: Member logits ``[L, N, C]``, predicted labels ``[L, N]``, or
            with ``votes=True`` class counts ``[N, C]``.
        labels: Class indices ``[N]``.
        votes: Read ``outputs`` as class counts (default: ``False``).

    Returns:
        A 0-d float64 tensor.
    """
    right, members = correct_counts(
        outputs, labels, votes=votes, measure="interrater_kappa"
    )
    samples = right.shape[0]
    mean_accuracy = right.sum() / (samples * members)
    chance = samples * (members - 1) * mean_accuracy * (1 - mean_accuracy)
    if float(chance) == 0.0:
        return torch.tensor(1.0, dtype=torch.float64)
    observed = (right * (members - right)).sum() / members
    return 1 - observed / chance


def label_disagreement(
    outputs: Any, labels: Any | None = None, *, votes: bool = False
) -> Tensor:
    """Compute the fraction of member pairs whose predicted labels differ.

    Per sample, with ``v_c`` members predicting class ``c``, the pairs that
    agree number ``sum_c v_c (v_c - 1) / 2`` out of ``L (L - 1) / 2``, so
    ``D = (1 / N) * sum_j (1 - sum_c v_jc (v_jc - 1) / (L (L - 1)))``. This is
    the mean over pairs of the fraction of samples with different labels. It
    needs no labels; they are only checked when given.

    Args:
        outputs: Member logits ``[L, N, C]``, predicted labels ``[L, N]``, or
            with ``votes=True`` class counts ``[N, C]``.
        labels: Class indices ``[N]`` (default: ``None``).
        votes: Read ``outputs`` as class counts (default: ``False``).

    Returns:
        A 0-d float64 tensor in ``[0, 1]``.

    Example:
        >>> label_disagreement(torch.tensor([[0, 1, 0, 0], [0, 2, 0, 1]]))
        tensor(0.5000, dtype=torch.float64)
    """
    if votes:
        table = check_votes(outputs, "label_disagreement")
        if labels is not None:
            correct_counts(table, labels, votes=True, measure="label_disagreement")
    else:
        predictions, _ = member_predictions(outputs, labels, "label_disagreement")
        table = _vote_table(predictions)
    members = table[0].sum()
    agreeing = (table * (table - 1)).sum(1) / (members * (members - 1))
    return (1 - agreeing).mean()


def _vote_table(predictions: Tensor) -> Tensor:
    """Count the members predicting each class per sample, ``[N, C]`` float64."""
    num_classes = int(predictions.max()) + 1
    one_hot = torch.nn.functional.one_hot(predictions.cpu(), num_classes)
    return one_hot.sum(0).double()
