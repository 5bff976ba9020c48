"""Pairwise diversity of ensemble members (Kuncheva and Whitaker 2003).

Kuncheva and Whitaker, "Measures of Diversity in Classifier Ensembles and
Their Relationship with the Ensemble Accuracy", Machine Learning 51, 2003.
For two members i and j the *oracle outputs* (right or wrong on each sample)
give four counts over the N samples:

- ``N11``: both right, ``N00``: both wrong,
- ``N10``: i right and j wrong, ``N01``: i wrong and j right.

Each measure below is a function of these counts, except Cohen's kappa, which
compares the predicted labels themselves. Every function returns the mean over
the ``M * (M - 1) / 2`` unordered pairs, or the ``[M, M]`` matrix with
``matrix=True``. :class:`PairwiseCounts` accumulates the counts over batches
of samples, so the measures of a large test set need one pass and little
memory.

Undefined values: Yule's Q, the correlation coefficient and kappa divide by a
quantity that can be zero. A pair whose oracle outputs (for kappa, predicted
labels) are identical on every sample gets 1, full agreement. Any other pair
with a zero denominator gets 0, no measurable association, which is the
convention of scikit-learn's ``matthews_corrcoef``. The diagonal of each matrix is
the member compared with itself under these rules: 0 for disagreement, the
member's error rate for double fault and 1 for Q, rho and kappa.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from layershare.metrics._checks import (
    check_member_count,
    correct_counts,
    member_predictions,
)

__all__ = [
    "PairwiseCounts",
    "correlation",
    "disagreement",
    "double_fault",
    "pairwise_kappa",
    "q_statistic",
]


class PairwiseCounts:
    """Oracle and label-agreement counts of every pair of members.

    Counts are exact integers (int64), so accumulating any number of batches
    never produces NaN; the measures are computed from them on request.

    Attributes:
        samples: Number of samples seen.
        n11, n10, n01, n00: Oracle counts ``[M, M]`` (row member i, column j).
        agree: Samples on which members i and j predict the same label
            ``[M, M]``, or ``None`` without label agreement.
        class_counts: Samples on which member i predicts class c ``[M, C]``,
            or ``None`` without label agreement.

    Args:
        label_agreement: Also count label agreement, which Cohen's kappa
            needs and which costs ``C`` times the oracle counts
            (default: ``True``).

    Example:
        >>> counts = PairwiseCounts()
        >>> for logits, y in batches:  # doctest: +SKIP
        ...     counts.update(logits, y)
        >>> counts.disagreement()  # doctest: +SKIP
    """

    def __init__(self, *, label_agreement: bool = True) -> None:
        self.label_agreement = label_agreement
        self.samples = 0
        self.n11: Tensor | None = None
        self.n10: Tensor | None = None
        self.n01: Tensor | None = None
        self.n00: Tensor | None = None
        self.agree: Tensor | None = None
        self.class_counts: Tensor | None = None

    @classmethod
    def from_outputs(
        cls, outputs: Any, labels: Any, *, label_agreement: bool = True
    ) -> PairwiseCounts:
        """Count one batch of member outputs ``[M, N(, C)]`` against labels ``[N]``."""
        return cls(label_agreement=label_agreement).update(outputs, labels)

    def update(self, outputs: Any, labels: Any) -> PairwiseCounts:
        """Add one batch of member outputs ``[M, N(, C)]`` and labels ``[N]``.

        Returns:
            ``self``, so calls can be chained.
        """
        predictions, labels = member_predictions(outputs, labels, "pairwise counts", 1)
        if labels is None:
            raise TypeError("pairwise counts need labels [samples], but got None")
        predictions = predictions.cpu()
        labels = labels.cpu()
        if self.n11 is not None and predictions.shape[0] != self.n11.shape[0]:
            raise ValueError(
                f"this batch has {predictions.shape[0]} members but earlier batches "
                f"had {self.n11.shape[0]}; update with the same members each time"
            )

        # Oracle counts as products of the 0/1 right and wrong matrices; float64
        # products of 0/1 values are exact below 2**53 samples.
        right = (predictions == labels).double()
        wrong = 1.0 - right
        n11 = (right @ right.T).round().long()
        n10 = (right @ wrong.T).round().long()
        n00 = (wrong @ wrong.T).round().long()

        # Label agreement and per-member class counts, for Cohen's kappa. They
        # cost C times the oracle counts, so they can be switched off.
        agree = class_counts = None
        if self.label_agreement:
            num_classes = int(max(predictions.max(), labels.max())) + 1
            one_hot = torch.nn.functional.one_hot(predictions, num_classes).double()
            agree = torch.einsum("inc,jnc->ij", one_hot, one_hot).round().long()
            class_counts = one_hot.sum(1).round().long()

        if self.n11 is None:
            self.n11, self.n10, self.n01, self.n00 = n11, n10, n10.T.clone(), n00
            self.agree, self.class_counts = agree, class_counts
        else:
            self.n11 += n11
            self.n10 += n10
            self.n01 += n10.T
            self.n00 += n00
            if self.label_agreement:
                self.agree += agree
                self.class_counts = _add_padded(self.class_counts, class_counts)
        self.samples += predictions.shape[1]
        return self

    def _check(self, measure: str) -> None:
        if self.n11 is None:
            raise ValueError(
                f"{measure} needs counts; call update() with outputs first"
            )
        check_member_count(self.n11.shape[0], 2, measure)

    def disagreement(self, *, matrix: bool = False) -> Tensor:
        """Return the oracle disagreement ``(N01 + N10) / N``."""
        self._check("disagreement")
        return _reduce((self.n01 + self.n10).double() / self.samples, matrix)

    def double_fault(self, *, matrix: bool = False) -> Tensor:
        """Return the double fault ``N00 / N``."""
        self._check("double_fault")
        return _reduce(self.n00.double() / self.samples, matrix)

    def q_statistic(self, *, matrix: bool = False) -> Tensor:
        """Return Yule's Q ``(N11 N00 - N01 N10) / (N11 N00 + N01 N10)``."""
        self._check("q_statistic")
        n11, n10, n01, n00 = (c.double() for c in self._oracle())
        value = _safe_ratio(n11 * n00 - n01 * n10, n11 * n00 + n01 * n10)
        return _reduce(_identical_to_one(value, n10 + n01 == 0), matrix)

    def correlation(self, *, matrix: bool = False) -> Tensor:
        """Return the correlation coefficient rho of the oracle outputs."""
        self._check("correlation")
        n11, n10, n01, n00 = (c.double() for c in self._oracle())
        spread = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
        value = _safe_ratio(n11 * n00 - n01 * n10, spread.sqrt())
        return _reduce(_identical_to_one(value, n10 + n01 == 0), matrix)

    def pairwise_kappa(self, *, matrix: bool = False) -> Tensor:
        """Return Cohen's kappa ``(p_o - p_e) / (1 - p_e)`` on predicted labels."""
        self._check("pairwise_kappa")
        if not self.label_agreement:
            raise ValueError(
                "these counts were made with label_agreement=False, so they cannot "
                "give kappa; count with PairwiseCounts(label_agreement=True)"
            )
        observed = self.agree.double() / self.samples
        frequencies = self.class_counts.double() / self.samples
        expected = frequencies @ frequencies.T
        value = _safe_ratio(observed - expected, 1.0 - expected)
        return _reduce(_identical_to_one(value, self.agree == self.samples), matrix)

    def _oracle(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.n11, self.n10, self.n01, self.n00

    def __repr__(self) -> str:
        members = 0 if self.n11 is None else self.n11.shape[0]
        return f"PairwiseCounts(members={members}, samples={self.samples})"


def _add_padded(a: Tensor, b: Tensor) -> Tensor:
    """Add two ``[M, C]`` count tables whose class counts C may differ."""
    width = max(a.shape[1], b.shape[1])
    out = a.new_zeros(a.shape[0], width)
    out[:, : a.shape[1]] += a
    out[:, : b.shape[1]] += b
    return out


def _safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Divide elementwise, with 0 where the denominator is 0."""
    zero = denominator == 0
    return torch.where(zero, 0.0, numerator / torch.where(zero, 1.0, denominator))


def _identical_to_one(value: Tensor, identical: Tensor) -> Tensor:
    """Set pairs with identical outputs to 1 (full agreement)."""
    return torch.where(identical, 1.0, value)


def _reduce(values: Tensor, matrix: bool) -> Tensor:
    """Return the ``[M, M]`` matrix or the mean over pairs ``i < j``."""
    if matrix:
        return values
    rows, cols = torch.triu_indices(values.shape[0], values.shape[1], offset=1)
    return values[rows, cols].mean()


def disagreement(
    outputs: Any, labels: Any, *, matrix: bool = False, votes: bool = False
) -> Tensor:
    """Compute the oracle disagreement of members, ``(N01 + N10) / N``.

    The fraction of samples on which exactly one of two members is right
    (Kuncheva and Whitaker 2003). Beyond two classes it
    differs from the fraction of samples on which the predicted labels differ
    (:func:`~layershare.metrics.label_disagreement`): two members that are
    both wrong with different labels disagree on labels, not on the oracle.

    Args:
        outputs: Member logits ``[M, N, C]`` or predicted labels ``[M, N]``,
            ``M >= 2``. A tie in the logits goes to the first maximal class.
        labels: Class indices ``[N]``.
        matrix: Return the ``[M, M]`` matrix (zero diagonal) instead of the
            mean over pairs (default: ``False``).
        votes: Read ``outputs`` as per-sample class counts ``[N, C]`` from
            ``ls.evaluate(..., reduce="votes")``. With ``l_j`` members right
            on sample ``j``, the mean over pairs is
            ``(1 / N) * sum_j 2 l_j (M - l_j) / (M (M - 1))``; the matrix needs
            member outputs (default: ``False``).

    Returns:
        A 0-d float64 tensor, or ``[M, M]`` with ``matrix=True``.

    Raises:
        ValueError: For fewer than 2 members, outputs and labels of different
            lengths, or ``matrix=True`` with ``votes=True``.

    Example:
        >>> predictions = torch.tensor([[0, 1, 0, 0], [0, 2, 0, 1]])
        >>> disagreement(predictions, torch.tensor([0, 1, 2, 0]))
        tensor(0.5000, dtype=torch.float64)
    """
    if matrix:
        if votes:
            _reject_vote_matrix("disagreement")
        counts = PairwiseCounts.from_outputs(outputs, labels, label_agreement=False)
        return counts.disagreement(matrix=True)

    # The mean over pairs needs only the members right per sample, O(M N).
    right, members = correct_counts(
        outputs, labels, votes=votes, measure="disagreement"
    )
    return (2 * right * (members - right)).mean() / (members * (members - 1))


def double_fault(
    outputs: Any, labels: Any, *, matrix: bool = False, votes: bool = False
) -> Tensor:
    """Compute the double fault ``N00 / N``: the fraction both members get wrong.

    As defined in Kuncheva and Whitaker 2003. Lower means
    more diverse errors. The matrix diagonal is each member's error rate.

    Args:
        outputs: Member logits ``[M, N, C]`` or predicted labels ``[M, N]``.
        labels: Class indices ``[N]``.
        matrix: Return the ``[M, M]`` matrix (default: ``False``).
        votes: Read ``outputs`` as per-sample class counts ``[N, C]``. With
            ``w_j`` members wrong on sample ``j``, the mean over pairs is
            ``(1 / N) * sum_j w_j (w_j - 1) / (M (M - 1))`` (default:
            ``False``).

    Returns:
        A 0-d float64 tensor, or ``[M, M]`` with ``matrix=True``.
    """
    if matrix:
        if votes:
            _reject_vote_matrix("double_fault")
        counts = PairwiseCounts.from_outputs(outputs, labels, label_agreement=False)
        return counts.double_fault(matrix=True)

    # The mean over pairs needs only the members wrong per sample, O(M N).
    right, members = correct_counts(
        outputs, labels, votes=votes, measure="double_fault"
    )
    wrong = members - right
    return (wrong * (wrong - 1)).mean() / (members * (members - 1))


def _reject_vote_matrix(measure: str) -> None:
    raise ValueError(
        f"{measure}(..., matrix=True) needs member outputs [members, samples]; "
        f"vote counts only give the mean over pairs"
    )


def q_statistic(outputs: Any, labels: Any, *, matrix: bool = False) -> Tensor:
    """Compute Yule's Q of the oracle outputs.

    ``Q = (N11 N00 - N01 N10) / (N11 N00 + N01 N10)`` (Yule 1900, in Kuncheva
    and Whitaker 2003), in ``[-1, 1]``: 0 for members whose errors are
    statistically independent, negative when they err on different samples.
    Identical oracle outputs give 1; any other zero denominator gives 0.

    Args:
        outputs: Member logits ``[M, N, C]`` or predicted labels ``[M, N]``.
        labels: Class indices ``[N]``.
        matrix: Return the ``[M, M]`` matrix (default: ``False``).

    Returns:
        A 0-d float64 tensor, or ``[M, M]`` with ``matrix=True``.
    """
    counts = PairwiseCounts.from_outputs(outputs, labels, label_agreement=False)
    return counts.q_statistic(matrix=matrix)


def correlation(outputs: Any, labels: Any, *, matrix: bool = False) -> Tensor:
    """Compute the correlation coefficient rho of the oracle outputs.

    ``rho = (N11 N00 - N01 N10) / sqrt((N11 + N10)(N01 + N00)(N11 + N01)(N10 + N00))``
    (Kuncheva and Whitaker 2003), the Pearson correlation of the two
    0/1 right-or-wrong vectors. Identical oracle outputs give 1; any other
    zero denominator (a member right on all or no samples) gives 0.

    Args:
        outputs: Member logits ``[M, N, C]`` or predicted labels ``[M, N]``.
        labels: Class indices ``[N]``.
        matrix: Return the ``[M, M]`` matrix (default: ``False``).

    Returns:
        A 0-d float64 tensor, or ``[M, M]`` with ``matrix=True``.
    """
    counts = PairwiseCounts.from_outputs(outputs, labels, label_agreement=False)
    return counts.correlation(matrix=matrix)


def pairwise_kappa(
    outputs: Any, labels: Any | None = None, *, matrix: bool = False
) -> Tensor:
    """Compute Cohen's kappa between the predicted labels of two members.

    ``kappa = (p_o - p_e) / (1 - p_e)`` (Cohen 1960), where ``p_o`` is the
    fraction of samples with equal predicted labels and
    ``p_e = sum_c f_i(c) f_j(c)`` the agreement expected by chance from each
    member's class frequencies ``f``. Labels are not needed; when given they
    are checked against the outputs. Identical predictions give 1.

    Args:
        outputs: Member logits ``[M, N, C]`` or predicted labels ``[M, N]``.
        labels: Class indices ``[N]`` (default: ``None``).
        matrix: Return the ``[M, M]`` matrix (default: ``False``).

    Returns:
        A 0-d float64 tensor, or ``[M, M]`` with ``matrix=True``.
    """
    predictions, checked = member_predictions(outputs, labels, "pairwise_kappa")
    if checked is None:
        checked = torch.zeros(predictions.shape[1], dtype=torch.long)
    return PairwiseCounts.from_outputs(predictions, checked).pairwise_kappa(
        matrix=matrix
    )
