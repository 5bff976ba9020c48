import itertools

import pytest
import torch

from layershare import metrics

# Labels [0, 1, 2, 0] against members [0, 1, 0, 0] and [0, 2, 0, 1]:
# member 0 is right on samples 0, 1, 3; member 1 only on sample 0, so
# N11 = 1, N10 = 2, N01 = 0, N00 = 1.
PREDICTIONS = torch.tensor([[0, 1, 0, 0], [0, 2, 0, 1]])
LABELS = torch.tensor([0, 1, 2, 0])


def test_disagreement_hand_example():
    assert metrics.disagreement(PREDICTIONS, LABELS).item() == pytest.approx(0.5)


def test_double_fault_hand_example():
    assert metrics.double_fault(PREDICTIONS, LABELS).item() == pytest.approx(0.25)


def test_q_statistic_hand_example():
    # (1 * 1 - 0 * 2) / (1 * 1 + 0 * 2)
    assert metrics.q_statistic(PREDICTIONS, LABELS).item() == pytest.approx(1.0)


def test_correlation_hand_example():
    # (1 * 1 - 0 * 2) / sqrt(3 * 1 * 1 * 3)
    assert metrics.correlation(PREDICTIONS, LABELS).item() == pytest.approx(1 / 3)


def test_kappa_hand_example():
    # p_o = 2/4; p_e = 0.75 * 0.5 + 0.25 * 0.25 = 0.4375
    expected = (0.5 - 0.4375) / (1 - 0.4375)
    assert metrics.pairwise_kappa(PREDICTIONS).item() == pytest.approx(expected)


def test_disagreement_matrix_zero_diagonal():
    result = metrics.disagreement(PREDICTIONS, LABELS, matrix=True)
    assert result.shape == (2, 2)
    assert result[0, 0].item() == 0.0
    assert result[1, 1].item() == 0.0
    assert result[0, 1].item() == pytest.approx(0.5)
    assert result[1, 0].item() == pytest.approx(0.5)


def test_double_fault_diagonal_error_rate():
    result = metrics.double_fault(PREDICTIONS, LABELS, matrix=True)
    assert result[0, 0].item() == pytest.approx(0.25)
    assert result[1, 1].item() == pytest.approx(0.75)


def _brute_force(correct_i, correct_j):
    n11 = sum(a and b for a, b in zip(correct_i, correct_j, strict=True))
    n10 = sum(a and not b for a, b in zip(correct_i, correct_j, strict=True))
    n01 = sum(b and not a for a, b in zip(correct_i, correct_j, strict=True))
    n00 = sum(not a and not b for a, b in zip(correct_i, correct_j, strict=True))
    return n11, n10, n01, n00


def test_pairwise_means_brute_force():
    generator = torch.Generator().manual_seed(3)
    predictions = torch.randint(0, 3, (5, 40), generator=generator)
    labels = torch.randint(0, 3, (40,), generator=generator)
    correct = (predictions == labels).tolist()
    dis, df, q = [], [], []
    for i, j in itertools.combinations(range(5), 2):
        n11, n10, n01, n00 = _brute_force(correct[i], correct[j])
        dis.append((n01 + n10) / 40)
        df.append(n00 / 40)
        q.append((n11 * n00 - n01 * n10) / (n11 * n00 + n01 * n10))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    assert metrics.disagreement(predictions, labels).item() == pytest.approx(mean(dis))
    assert metrics.double_fault(predictions, labels).item() == pytest.approx(mean(df))
    assert metrics.q_statistic(predictions, labels).item() == pytest.approx(mean(q))


def test_correlation_equals_pearson():
    generator = torch.Generator().manual_seed(4)
    predictions = torch.randint(0, 2, (2, 50), generator=generator)
    labels = torch.randint(0, 2, (50,), generator=generator)
    correct = (predictions == labels).double()
    pearson = torch.corrcoef(correct)[0, 1].item()
    assert metrics.correlation(predictions, labels).item() == pytest.approx(pearson)


def test_kappa_two_classes_formula():
    # Binary kappa from the 2x2 table: 2 (ad - bc) / ((a+b)(b+d) + (a+c)(c+d)).
    first = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    second = torch.tensor([0, 1, 0, 1, 0, 1, 1, 1])
    a, b, c, d = 2, 2, 1, 3  # (0,0), (0,1), (1,0), (1,1)
    expected = 2 * (a * d - b * c) / ((a + b) * (b + d) + (a + c) * (c + d))
    result = metrics.pairwise_kappa(torch.stack([first, second]))
    assert result.item() == pytest.approx(expected)


def test_identical_members_agree_fully():
    predictions = torch.tensor([[0, 0, 0], [0, 0, 0]])
    labels = torch.tensor([0, 0, 0])
    assert metrics.q_statistic(predictions, labels).item() == 1.0
    assert metrics.correlation(predictions, labels).item() == 1.0
    assert metrics.pairwise_kappa(predictions).item() == 1.0


def test_constant_member_correlation_zero():
    # Member 0 is always right, so rho and Q divide by zero.
    predictions = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 1]])
    labels = torch.tensor([0, 1, 0, 1])
    assert metrics.correlation(predictions, labels).item() == 0.0
    assert metrics.q_statistic(predictions, labels).item() == 0.0


def test_logits_tie_first_class():
    logits = torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]]])
    labels = torch.tensor([0])
    assert metrics.disagreement(logits, labels).item() == 1.0


def test_one_member_rejected():
    with pytest.raises(ValueError, match="at least 2, but got 1"):
        metrics.disagreement(torch.tensor([[0, 1]]), torch.tensor([0, 1]))


def test_length_mismatch_rejected():
    with pytest.raises(ValueError, match="4 samples but labels have 3"):
        metrics.double_fault(PREDICTIONS, torch.tensor([0, 1, 2]))


def test_counts_accumulate_batches():
    generator = torch.Generator().manual_seed(5)
    predictions = torch.randint(0, 4, (3, 600), generator=generator)
    labels = torch.randint(0, 4, (600,), generator=generator)
    counts = metrics.PairwiseCounts()
    for start in range(0, 600, 3):
        counts.update(predictions[:, start : start + 3], labels[start : start + 3])
    whole = metrics.PairwiseCounts.from_outputs(predictions, labels)
    assert counts.samples == 600
    assert torch.equal(counts.n00, whole.n00)
    assert torch.equal(counts.agree, whole.agree)
    assert torch.equal(counts.class_counts, whole.class_counts)
    assert not torch.isnan(counts.correlation(matrix=True)).any()


def test_pairwise_matrices_brute_force():
    generator = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 3, (40,), generator=generator)
    predictions = torch.randint(0, 3, (5, 40), generator=generator)
    right = (predictions == labels).tolist()
    disagree = metrics.disagreement(predictions, labels, matrix=True)
    fault = metrics.double_fault(predictions, labels, matrix=True)
    for i in range(5):
        for j in range(5):
            pairs = list(zip(right[i], right[j], strict=True))
            expected_disagree = sum(a != b for a, b in pairs) / 40
            expected_fault = sum(not a and not b for a, b in pairs) / 40
            assert disagree[i, j].item() == pytest.approx(expected_disagree)
            assert fault[i, j].item() == pytest.approx(expected_fault)
