import pytest
import torch

from layershare import metrics

# Members right on samples: l = [2, 1, 0, 1] of L = 2.
PREDICTIONS = torch.tensor([[0, 1, 0, 0], [0, 2, 0, 1]])
LABELS = torch.tensor([0, 1, 2, 0])


def _votes(predictions, num_classes):
    table = torch.zeros(predictions.shape[1], num_classes)
    for row in predictions:
        for j, c in enumerate(row.tolist()):
            table[j, c] += 1
    return table


def test_entropy_hand_example():
    # min(l, L - l) = [0, 1, 0, 1], divided by L - ceil(L / 2) = 1.
    assert metrics.entropy_measure(PREDICTIONS, LABELS).item() == pytest.approx(0.5)


def test_entropy_three_members():
    # l = [0, 1, 2, 3]: min(l, 3 - l) = [0, 1, 1, 0], divided by 3 - 2 = 1.
    predictions = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
    labels = torch.tensor([0, 0, 0, 0])
    assert metrics.entropy_measure(predictions, labels).item() == pytest.approx(0.5)


def test_kw_variance_hand_example():
    # sum l (L - l) = 2, divided by N L^2 = 16.
    assert metrics.kw_variance(PREDICTIONS, LABELS).item() == pytest.approx(0.125)


def test_interrater_kappa_hand_example():
    # p = 4/8; (1/L) sum l (L - l) = 1; N (L - 1) p (1 - p) = 1.
    assert metrics.interrater_kappa(PREDICTIONS, LABELS).item() == pytest.approx(0.0)


def test_interrater_kappa_three_members():
    # l = [3, 3, 0, 1]: p = 7/12, (1/3) * 2 = 2/3, N (L - 1) p (1 - p) = 280/144.
    predictions = torch.tensor([[0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    labels = torch.tensor([0, 0, 0, 0])
    expected = 1 - (2 / 3) / (280 / 144)
    result = metrics.interrater_kappa(predictions, labels)
    assert result.item() == pytest.approx(expected)


def test_interrater_kappa_all_right():
    predictions = torch.tensor([[0, 1], [0, 1], [0, 1]])
    assert metrics.interrater_kappa(predictions, torch.tensor([0, 1])).item() == 1.0


def test_kw_matches_disagreement():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.randint(0, 4, (7, 90), generator=generator)
    labels = torch.randint(0, 4, (90,), generator=generator)
    kw = metrics.kw_variance(predictions, labels).item()
    dis = metrics.disagreement(predictions, labels).item()
    assert kw == pytest.approx((7 - 1) / (2 * 7) * dis)


def test_kappa_matches_kw():
    # kappa = 1 - L KW / ((L - 1) p (1 - p)), p the mean member accuracy.
    generator = torch.Generator().manual_seed(1)
    predictions = torch.randint(0, 3, (5, 60), generator=generator)
    labels = torch.randint(0, 3, (60,), generator=generator)
    kw = metrics.kw_variance(predictions, labels).item()
    p = metrics.accuracy(predictions, labels).mean().item()
    expected = 1 - 5 * kw / (4 * p * (1 - p))
    result = metrics.interrater_kappa(predictions, labels)
    assert result.item() == pytest.approx(expected)


def test_label_disagreement_hand_example():
    # The labels differ on samples 1 and 3.
    assert metrics.label_disagreement(PREDICTIONS).item() == pytest.approx(0.5)


def test_label_differs_from_oracle():
    # Both members are wrong with different labels.
    predictions = torch.tensor([[1], [2]])
    labels = torch.tensor([0])
    assert metrics.label_disagreement(predictions, labels).item() == 1.0
    assert metrics.disagreement(predictions, labels).item() == 0.0


def test_label_disagreement_brute_force():
    generator = torch.Generator().manual_seed(2)
    predictions = torch.randint(0, 3, (4, 30), generator=generator)
    fractions = [
        (predictions[i] != predictions[j]).double().mean().item()
        for i in range(4)
        for j in range(i + 1, 4)
    ]
    expected = sum(fractions) / len(fractions)
    assert metrics.label_disagreement(predictions).item() == pytest.approx(expected)


def test_votes_hand_example():
    votes = _votes(PREDICTIONS, 3)
    assert metrics.entropy_measure(votes, LABELS, votes=True).item() == 0.5
    assert metrics.kw_variance(votes, LABELS, votes=True).item() == 0.125
    assert metrics.label_disagreement(votes, votes=True).item() == 0.5
    assert metrics.disagreement(votes, LABELS, votes=True).item() == 0.5
    assert metrics.double_fault(votes, LABELS, votes=True).item() == 0.25


def test_votes_many_members():
    generator = torch.Generator().manual_seed(3)
    predictions = torch.randint(0, 4, (9, 50), generator=generator)
    labels = torch.randint(0, 4, (50,), generator=generator)
    votes = _votes(predictions, 4)
    pairwise = metrics.double_fault(predictions, labels).item()
    streamed = metrics.double_fault(votes, labels, votes=True).item()
    assert streamed == pytest.approx(pairwise)


def test_votes_uneven_rows_rejected():
    votes = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="range from 1 to 2"):
        metrics.kw_variance(votes, torch.tensor([0, 0]), votes=True)


def test_votes_matrix_rejected():
    votes = _votes(PREDICTIONS, 3)
    with pytest.raises(ValueError, match="matrix=True"):
        metrics.disagreement(votes, LABELS, votes=True, matrix=True)


def test_one_member_rejected():
    with pytest.raises(ValueError, match="at least 2, but got 1"):
        metrics.entropy_measure(torch.tensor([[0, 1]]), torch.tensor([0, 1]))
