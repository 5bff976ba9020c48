import math

import pytest
import torch

from layershare import metrics

PROBS = torch.tensor([[0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
LABELS = torch.tensor([0, 0])


def test_nll_hand_example():
    expected = -(math.log(0.6) + math.log(0.3)) / 2
    assert metrics.nll(PROBS, LABELS, probs=True).item() == pytest.approx(expected)


def test_nll_logits_match_probabilities():
    logits = PROBS.log() + 3.0
    expected = -(math.log(0.6) + math.log(0.3)) / 2
    assert metrics.nll(logits, LABELS).item() == pytest.approx(expected)


def test_nll_zero_probability_finite():
    probs = torch.tensor([[0.0, 1.0]])
    result = metrics.nll(probs, torch.tensor([0]), probs=True)
    assert math.isfinite(result.item())
    assert result.item() == pytest.approx(-math.log(torch.finfo(torch.float64).tiny))


def test_brier_hand_example():
    # (0.4^2 + 0.4^2 + 0.7^2 + 0.7^2) / 2
    result = metrics.brier_score(PROBS, LABELS, probs=True)
    assert result.item() == pytest.approx(0.65)


def test_ece_hand_example():
    # Bins of width 0.25: (0.5, 0.75] holds 0.6 (right) and 0.7 (wrong),
    # (0.75, 1] holds 0.9 and 0.8 (both right): 0.5 * 0.15 + 0.5 * 0.15.
    probs = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    labels = torch.tensor([0, 0, 0, 1])
    result = metrics.expected_calibration_error(probs, labels, bins=4, probs=True)
    assert result.item() == pytest.approx(0.15)


def test_ece_perfect_calibration():
    # Ten samples at confidence 0.7, seven of them right.
    probs = torch.tensor([[0.7, 0.3]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 7 + [1] * 3)
    result = metrics.expected_calibration_error(probs, labels, probs=True)
    assert result.item() == pytest.approx(0.0)


def test_bins_right_closed():
    probs = torch.tensor([[0.5, 0.5], [0.75, 0.25]])
    table = metrics.reliability_table(probs, torch.tensor([0, 0]), bins=2, probs=True)
    assert table["count"].tolist() == [1, 1]
    assert table["confidence"].tolist() == pytest.approx([0.5, 0.75])
    assert table["bin_high"].tolist() == [0.5, 1.0]


def test_leading_dims_kept():
    probs = torch.stack([PROBS, PROBS.flip(-1)])
    result = metrics.brier_score(probs, LABELS, probs=True)
    assert result.shape == (2,)
    # Flipped: (0.6^2 * 2 + 0.3^2 * 2) / 2 = 0.45
    assert result[1].item() == pytest.approx(0.45)


def test_probabilities_not_summing_rejected():
    probs = torch.tensor([[0.6, 0.6]])
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.nll(probs, torch.tensor([0]), probs=True)


def test_probabilities_out_of_range_rejected():
    probs = torch.tensor([[1.5, -0.5]])
    with pytest.raises(ValueError, match="values from -0.5 to 1.5"):
        metrics.brier_score(probs, torch.tensor([0]), probs=True)


def test_counts_hundreds_of_batches():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 5, generator=generator) * 40
    labels = torch.randint(0, 5, (1000,), generator=generator)
    counts = metrics.CalibrationCounts(bins=10)
    for start in range(0, 1000, 5):
        counts.update(logits[start : start + 5], labels[start : start + 5])
    log_p = torch.log_softmax(logits.double(), -1)
    expected_nll = -log_p[torch.arange(1000), labels].mean().item()
    assert counts.samples == 1000
    assert math.isfinite(counts.nll().item())
    assert counts.nll().item() == pytest.approx(expected_nll)
    assert math.isfinite(counts.expected_calibration_error().item())
