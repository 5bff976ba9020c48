"""Diversity of member probabilities and the ambiguity decomposition.

All divergences are in nats (natural logarithm) and computed from
log-probabilities, so members that put zero or tiny probability on a class
give finite results. The ensemble is the mean of the members' probabilities
unless stated otherwise.

Ambiguity decomposition: for the squared error of a mean of predictors,
``(f_ens - y)^2 = mean_m (f_m - y)^2 - mean_m (f_m - f_ens)^2`` (Krogh and
Vedelsby 1995, "Neural Network Ensembles, Cross Validation, and Active
Learning"), so the ensemble's loss is the mean member loss minus a diversity
that does not depend on the label. The log loss has the same form for the
normalized geometric mean of the members' probabilities, with diversity
``mean_m KL(q_ens || q_m)`` (Heskes 1998, "Bias/Variance Decompositions for
Likelihood-Based Estimators"). For the arithmetic mean the difference
between mean member loss and ensemble loss is still non-negative (Jensen's
inequality) but depends on the label.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from layershare.metrics._checks import (
    as_labels,
    as_logits,
    as_probabilities,
    check_member_count,
)

__all__ = [
    "Decomposition",
    "ambiguity_decomposition",
    "js_diversity",
    "kl_diversity",
]

LOSSES = ("squared", "log")
COMBINERS = ("arithmetic", "geometric")


class Decomposition(NamedTuple):
    """Ensemble loss = mean member loss - diversity, each a 0-d float64 tensor."""

    ensemble_loss: Tensor
    member_loss: Tensor
    diversity: Tensor


def _member_log_probs(outputs: Any, probs: bool, measure: str) -> Tensor:
    """Return member log-probabilities ``[M, N, C]`` (float64, ``-inf`` for 0)."""
    if probs:
        log_p = as_probabilities(outputs, probs=True).log()
    else:
        log_p = torch.log_softmax(as_logits(outputs), dim=-1)
    if log_p.dim() != 3:
        raise ValueError(
            f"{measure} needs member outputs [members, samples, classes], but got "
            f"shape {tuple(log_p.shape)}"
        )
    check_member_count(log_p.shape[0], 2, measure)
    return log_p


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Return ``KL(p || q)`` over the last dimension, with ``0 log 0 = 0``."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), 0.0)
    return terms.sum(-1)


def kl_diversity(outputs: Any, *, probs: bool = False) -> Tensor:
    """Compute the mean KL divergence of the members to the ensemble mean.

    ``(1 / (M N)) * sum_m sum_j KL(p_m(x_j) || p_ens(x_j))`` with
    ``p_ens = (1 / M) * sum_m p_m``. It equals the entropy of the ensemble
    minus the mean entropy of the members (the generalized Jensen-Shannon
    divergence with equal weights), and is 0 only when all members agree.

    Args:
        outputs: Member logits ``[M, N, C]``, or probabilities with
            ``probs=True``.
        probs: Read ``outputs`` as probabilities that sum to 1 over classes
            (default: ``False``).

    Returns:
        A 0-d float64 tensor, in nats.
    """
    log_p = _member_log_probs(outputs, probs, "kl_diversity")
    log_ensemble = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    return _kl(log_p, log_ensemble).mean()


def js_diversity(outputs: Any, *, probs: bool = False, matrix: bool = False) -> Tensor:
    """Compute the mean Jensen-Shannon divergence between pairs of members.

    ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``
    (Lin 1991), averaged over samples and then over the ``M (M - 1) / 2``
    pairs. It lies in ``[0, log 2]``.

    Args:
        outputs: Member logits ``[M, N, C]``, or probabilities with
            ``probs=True``.
        probs: Read ``outputs`` as probabilities (default: ``False``).
        matrix: Return the symmetric ``[M, M]`` matrix with zero diagonal
            (default: ``False``).

    Returns:
        A 0-d float64 tensor, or ``[M, M]`` with ``matrix=True``, in nats.
    """
    log_p = _member_log_probs(outputs, probs, "js_diversity")
    members = log_p.shape[0]
    result = log_p.new_zeros(members, members)

    # One row of the matrix at a time keeps memory at M x N x C.
    for i in range(members):
        log_mid = torch.logaddexp(log_p[i], log_p) - math.log(2)
        divergence = (_kl(log_p[i].expand_as(log_p), log_mid) + _kl(log_p, log_mid)) / 2
        result[i] = divergence.mean(-1)
    result.fill_diagonal_(0.0)
    if matrix:
        return result
    rows, cols = torch.triu_indices(members, members, offset=1)
    return result[rows, cols].mean()


def ambiguity_decomposition(
    outputs: Any,
    labels: Any,
    *,
    loss: str = "squared",
    combiner: str = "arithmetic",
    probs: bool = False,
) -> Decomposition:
    """Split the ensemble's loss into mean member loss minus diversity.

    - ``loss="squared"``: squared error of probability vectors against the
      one-hot label, ``sum_c (p_c - y_c)^2`` (the multi-class Brier score),
      with the arithmetic-mean ensemble. Diversity is
      ``mean_m sum_c (p_m,c - p_ens,c)^2``, independent of the label
      (Krogh and Vedelsby 1995).
    - ``loss="log"``, ``combiner="geometric"``: the ensemble is
      ``q_ens ∝ exp(mean_m log p_m)``; diversity is
      ``mean_m KL(q_ens || p_m)``, independent of the label (Heskes 1998).
    - ``loss="log"``, ``combiner="arithmetic"``: the ensemble is the mean of
      the probabilities; diversity is ``log p_ens,y - mean_m log p_m,y``,
      non-negative but label-dependent.

    Each term is averaged over samples, and the identity
    ``ensemble_loss = member_loss - diversity`` holds up to rounding.

    Args:
        outputs: Member logits ``[M, N, C]``, or probabilities with
            ``probs=True``.
        labels: Class indices ``[N]``.
        loss: ``"squared"`` or ``"log"`` (default: ``"squared"``).
        combiner: ``"arithmetic"`` or ``"geometric"``; the squared loss
            takes only ``"arithmetic"`` (default: ``"arithmetic"``).
        probs: Read ``outputs`` as probabilities (default: ``False``).

    Returns:
        A :class:`Decomposition` of 0-d float64 tensors.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, but got {loss!r}")
    if combiner not in COMBINERS:
        raise ValueError(f"combiner must be one of {COMBINERS}, but got {combiner!r}")
    if loss == "squared" and combiner != "arithmetic":
        raise ValueError(
            "the squared-error decomposition holds for the arithmetic mean only; "
            'pass combiner="arithmetic"'
        )
    log_p = _member_log_probs(outputs, probs, "ambiguity_decomposition")
    y = as_labels(labels, log_p.shape[1], log_p.shape[2])
    members = log_p.shape[0]

    if loss == "squared":
        p = log_p.exp()
        one_hot = torch.nn.functional.one_hot(y, p.shape[-1]).double()
        ensemble = p.mean(0)
        member_loss = ((p - one_hot) ** 2).sum(-1).mean()
        ensemble_loss = ((ensemble - one_hot) ** 2).sum(-1).mean()
        diversity = ((p - ensemble) ** 2).sum(-1).mean()
        return Decomposition(ensemble_loss, member_loss, diversity)

    label_log_p = log_p.gather(-1, y.expand(members, -1)[..., None])[..., 0]
    member_loss = -label_log_p.mean()
    if combiner == "arithmetic":
        log_ensemble = torch.logsumexp(label_log_p, dim=0) - math.log(members)
        ensemble_loss = -log_ensemble.mean()
        diversity = (log_ensemble - label_log_p.mean(0)).mean()
        return Decomposition(ensemble_loss, member_loss, diversity)

    if bool(torch.isinf(log_p).any()):
        raise ValueError(
            "the geometric combiner needs every member probability above 0, but "
            "some are 0; pass logits, or use combiner='arithmetic'"
        )
    log_geometric = torch.log_softmax(log_p.mean(0), dim=-1)
    ensemble_loss = -log_geometric.gather(-1, y[:, None]).mean()
    diversity = _kl(log_geometric.expand_as(log_p), log_p).mean()
    return Decomposition(ensemble_loss, member_loss, diversity)
