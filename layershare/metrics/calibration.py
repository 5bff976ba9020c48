"""Calibration: negative log-likelihood, Brier score and expected calibration error.

Each measure takes logits ``[..., N, C]`` or, with ``probs=True``,
probabilities that sum to 1 over the classes (such as the ensemble mean from
``ls.evaluate(..., reduce="mean")``), and keeps the leading dimensions:
member outputs ``[M, N, C]`` give one value per member.

:class:`CalibrationCounts` accumulates the sums behind all three over
batches of samples. The sums are float64 and every term is finite (log
probabilities of zero are clipped, see :func:`nll`), so any number of
batches gives finite results.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import Tensor

from layershare.metrics._checks import as_labels, as_probabilities

__all__ = [
    "CalibrationCounts",
    "brier_score",
    "expected_calibration_error",
    "nll",
    "reliability_table",
]

# Smallest positive normal float64. Probabilities are clipped to it before the
# log, so the NLL of one sample is at most about 708.
_MIN_PROB = torch.finfo(torch.float64).tiny


class CalibrationCounts:
    """Per-bin and per-sample sums for calibration, accumulated over batches.

    Args:
        bins: Number of equal-width confidence bins on ``[0, 1]``
            (default: 15).

    Attributes:
        samples: Number of samples seen.
        nll_sum: Sum of ``-log p_y`` ``[...]``.
        brier_sum: Sum of ``sum_c (p_c - y_c)^2`` ``[...]``.
        bin_counts: Samples per bin ``[..., bins]``.
        bin_confidence: Sum of top-class probabilities per bin ``[..., bins]``.
        bin_correct: Samples whose top class is the label, per bin
            ``[..., bins]``.
    """

    def __init__(self, bins: int = 15) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive int, but got {bins!r}")
        self.bins = bins
        self.samples = 0
        self.nll_sum: Tensor | None = None
        self.brier_sum: Tensor | None = None
        self.bin_counts: Tensor | None = None
        self.bin_confidence: Tensor | None = None
        self.bin_correct: Tensor | None = None

    def update(
        self, outputs: Any, labels: Any, *, probs: bool = False
    ) -> CalibrationCounts:
        """Add one batch of outputs ``[..., N, C]`` and labels ``[N]``.

        Returns:
            ``self``, so calls can be chained.
        """
        p = as_probabilities(outputs, probs=probs)
        y = as_labels(labels, p.shape[-2], p.shape[-1]).to(p.device)
        if self.nll_sum is not None and p.shape[:-2] != self.nll_sum.shape:
            raise ValueError(
                f"this batch has leading shape {tuple(p.shape[:-2])} but earlier "
                f"batches had {tuple(self.nll_sum.shape)}"
            )

        # Per-sample NLL and Brier terms.
        label_p = p.gather(-1, y.expand(*p.shape[:-1])[..., None])[..., 0]
        nll_sum = -label_p.clamp_min(_MIN_PROB).log().sum(-1)
        one_hot = torch.nn.functional.one_hot(y, p.shape[-1]).double()
        brier_sum = ((p - one_hot) ** 2).sum(-1).sum(-1)

        # Bin b contains confidences in (b / B, (b + 1) / B], and bin 0 also 0.
        confidence, predicted = p.max(-1)
        index = (torch.ceil(confidence * self.bins).long() - 1).clamp(0, self.bins - 1)
        correct = (predicted == y).double()
        shape = (*p.shape[:-2], self.bins)
        counts = p.new_zeros(shape).scatter_add_(-1, index, torch.ones_like(correct))
        conf_sums = p.new_zeros(shape).scatter_add_(-1, index, confidence)
        correct_sums = p.new_zeros(shape).scatter_add_(-1, index, correct)

        if self.nll_sum is None:
            self.nll_sum, self.brier_sum = nll_sum, brier_sum
            self.bin_counts, self.bin_confidence = counts, conf_sums
            self.bin_correct = correct_sums
        else:
            self.nll_sum += nll_sum
            self.brier_sum += brier_sum
            self.bin_counts += counts
            self.bin_confidence += conf_sums
            self.bin_correct += correct_sums
        self.samples += p.shape[-2]
        return self

    def _check(self) -> None:
        if self.nll_sum is None:
            raise ValueError("no samples counted; call update() with outputs first")

    def nll(self) -> Tensor:
        """Return the mean negative log-likelihood of the label."""
        self._check()
        return self.nll_sum / self.samples

    def brier_score(self) -> Tensor:
        """Return the mean multi-class Brier score."""
        self._check()
        return self.brier_sum / self.samples

    def expected_calibration_error(self) -> Tensor:
        """Return ``sum_b (n_b / N) |accuracy_b - confidence_b|``."""
        self._check()
        gap = (self.bin_correct - self.bin_confidence).abs()
        return gap.sum(-1) / self.samples

    def reliability_table(self) -> pd.DataFrame:
        """Return one row per bin with its bounds, count, accuracy and confidence.

        Only for a single network's outputs (no leading dimensions). Empty
        bins have accuracy and confidence 0 and count 0.
        """
        self._check()
        if self.bin_counts.dim() != 1:
            raise ValueError(
                f"reliability_table needs the outputs of one network [samples, "
                f"classes], but the counts have leading shape "
                f"{tuple(self.bin_counts.shape[:-1])}"
            )
        counts = self.bin_counts
        safe = counts.clamp_min(1)
        edges = torch.arange(self.bins + 1, dtype=torch.float64) / self.bins
        return pd.DataFrame(
            {
                "bin_low": edges[:-1].numpy(),
                "bin_high": edges[1:].numpy(),
                "count": counts.long().cpu().numpy(),
                "accuracy": (self.bin_correct / safe).cpu().numpy(),
                "confidence": (self.bin_confidence / safe).cpu().numpy(),
            }
        )

    def __repr__(self) -> str:
        return f"CalibrationCounts(bins={self.bins}, samples={self.samples})"


def nll(outputs: Any, labels: Any, *, probs: bool = False) -> Tensor:
    """Compute the mean negative log-likelihood of the labels.

    ``NLL = -(1 / N) * sum_j log p(labels[j] | x_j)``. A probability of 0 is
    clipped to the smallest positive normal float64 (``-log`` of it is about 708),
    so the result is finite.

    Args:
        outputs: Logits ``[..., N, C]``, or probabilities with ``probs=True``.
        labels: Class indices ``[N]``.
        probs: Read ``outputs`` as probabilities (default: ``False``).

    Returns:
        NLL ``[...]`` in nats (float64).

    Raises:
        ValueError: With ``probs=True``, when a row does not sum to 1 or a
            value lies outside ``[0, 1]``.
    """
    return CalibrationCounts(1).update(outputs, labels, probs=probs).nll()


def brier_score(outputs: Any, labels: Any, *, probs: bool = False) -> Tensor:
    """Compute the multi-class Brier score (Brier 1950).

    ``BS = (1 / N) * sum_j sum_c (p_jc - [c == labels[j]])^2``, in ``[0, 2]``.
    For two classes it is twice the binary Brier score ``(p_1 - y_1)^2``,
    which scores only the positive class.

    Args:
        outputs: Logits ``[..., N, C]``, or probabilities with ``probs=True``.
        labels: Class indices ``[N]``.
        probs: Read ``outputs`` as probabilities (default: ``False``).

    Returns:
        Brier score ``[...]`` (float64).
    """
    return CalibrationCounts(1).update(outputs, labels, probs=probs).brier_score()


def expected_calibration_error(
    outputs: Any, labels: Any, *, bins: int = 15, probs: bool = False
) -> Tensor:
    """Compute the expected calibration error with equal-width bins.

    The top-class probability (confidence) of each sample falls in one of
    ``bins`` equal-width bins, ``(b / B, (b + 1) / B]``, and the first also
    contains 0. Then ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` with ``acc_b``
    the accuracy and ``conf_b`` the mean confidence of bin ``b`` (Naeini,
    Cooper and Hauskrecht 2015; Guo et al. 2017, arXiv 1706.04599, who use
    15 bins). The predicted class is the first maximal one.

    Args:
        outputs: Logits ``[..., N, C]``, or probabilities with ``probs=True``.
        labels: Class indices ``[N]``.
        bins: Number of bins (default: 15).
        probs: Read ``outputs`` as probabilities (default: ``False``).

    Returns:
        ECE ``[...]`` in ``[0, 1]`` (float64).
    """
    counts = CalibrationCounts(bins).update(outputs, labels, probs=probs)
    return counts.expected_calibration_error()


def reliability_table(
    outputs: Any, labels: Any, *, bins: int = 15, probs: bool = False
) -> pd.DataFrame:
    """Tabulate accuracy against confidence per bin, for a reliability diagram.

    Args:
        outputs: Logits ``[N, C]``, or probabilities with ``probs=True``.
        labels: Class indices ``[N]``.
        bins: Number of equal-width bins (default: 15).
        probs: Read ``outputs`` as probabilities (default: ``False``).

    Returns:
        A DataFrame with columns ``bin_low``, ``bin_high``, ``count``,
        ``accuracy`` and ``confidence``, one row per bin.
    """
    counts = CalibrationCounts(bins).update(outputs, labels, probs=probs)
    return counts.reliability_table()
