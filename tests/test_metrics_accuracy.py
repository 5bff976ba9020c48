import pytest
import torch

from layershare import metrics


def test_accuracy_labels_per_member():
    predictions = torch.tensor([[0, 1, 0, 0], [0, 2, 0, 1]])
    labels = torch.tensor([0, 1, 2, 0])
    result = metrics.accuracy(predictions, labels)
    assert result.shape == (2,)
    assert result[0].item() == pytest.approx(3 / 4)
    assert result[1].item() == pytest.approx(1 / 4)


def test_accuracy_logits_single_network():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    result = metrics.accuracy(logits, torch.tensor([0, 0, 0]))
    assert result.dim() == 0
    assert result.item() == pytest.approx(2 / 3)


def test_accuracy_keeps_leading_dims():
    logits = torch.zeros(2, 3, 5, 4)
    logits[..., 1] = 1.0
    labels = torch.tensor([1, 1, 0, 1, 2])
    result = metrics.accuracy(logits, labels)
    assert result.shape == (2, 3)
    assert torch.allclose(result, torch.full((2, 3), 0.6, dtype=torch.float64))


def test_accuracy_tie_goes_to_first_class():
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert metrics.accuracy(logits, torch.tensor([0, 1])).item() == 1.0
    assert metrics.accuracy(logits, torch.tensor([1, 2])).item() == 0.0


def test_accuracy_numpy_inputs():
    result = metrics.accuracy([[0, 1], [1, 1]], [0, 0])
    assert result.tolist() == [0.5, 0.0]


def test_accuracy_length_mismatch():
    with pytest.raises(ValueError, match="3 samples but labels have 2"):
        metrics.accuracy(torch.zeros(3, 4), torch.tensor([0, 1]))


def test_accuracy_label_beyond_classes():
    with pytest.raises(ValueError, match="labels go up to 4"):
        metrics.accuracy(torch.zeros(2, 4), torch.tensor([0, 4]))


def test_accuracy_nan_logits():
    logits = torch.tensor([[0.0, float("nan")], [1.0, 0.0]])
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        metrics.accuracy(logits, torch.tensor([0, 0]))


def test_accuracy_float_labels():
    with pytest.raises(TypeError, match="integer class indices"):
        metrics.accuracy(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))


def test_ensemble_probabilities_mean():
    probs_a = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    probs_b = torch.tensor([[0.3, 0.7], [0.4, 0.6]])
    logits = torch.stack([probs_a, probs_b]).log()
    result = metrics.ensemble_probabilities(logits)
    expected = torch.tensor([[0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    assert torch.allclose(result, expected)


def test_majority_vote_tie_smallest_class():
    predictions = torch.tensor([[2, 0, 1], [1, 0, 1], [2, 3, 0], [1, 3, 0]])
    result = metrics.majority_vote(predictions)
    assert result.tolist() == [1, 0, 0]
