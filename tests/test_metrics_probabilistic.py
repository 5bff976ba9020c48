import math

import pytest
import torch

from layershare import metrics

# Two members on one sample: [0.5, 0.5] and [1, 0]; their mean is [0.75, 0.25].
HALF_AND_SURE = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]], dtype=torch.float64)
# Two members on one sample of class 0: [0.9, 0.1] and [0.3, 0.7].
PAIR = torch.tensor([[[0.9, 0.1]], [[0.3, 0.7]]], dtype=torch.float64)
LABEL = torch.tensor([0])


def _entropy(p):
    return -sum(x * math.log(x) for x in p if x > 0)


def test_kl_diversity_hand_example():
    first = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    second = math.log(1 / 0.75)
    result = metrics.kl_diversity(HALF_AND_SURE, probs=True)
    assert result.item() == pytest.approx((first + second) / 2)


def test_kl_diversity_entropy_gap():
    expected = _entropy([0.75, 0.25]) - (_entropy([0.5, 0.5]) + 0.0) / 2
    result = metrics.kl_diversity(HALF_AND_SURE, probs=True)
    assert result.item() == pytest.approx(expected)


def test_kl_diversity_logits_entropy_gap():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 3, generator=generator, dtype=torch.float64)
    p = torch.softmax(logits, -1)
    mean = p.mean(0)
    gap = -(mean * mean.log()).sum(-1) + (p * p.log()).sum(-1).mean(0)
    result = metrics.kl_diversity(logits)
    assert result.item() == pytest.approx(gap.mean().item())


def test_js_two_members_equals_kl():
    expected = metrics.kl_diversity(HALF_AND_SURE, probs=True).item()
    result = metrics.js_diversity(HALF_AND_SURE, probs=True)
    assert result.item() == pytest.approx(expected)


def test_js_disjoint_is_log_two():
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    result = metrics.js_diversity(probs, probs=True)
    assert result.item() == pytest.approx(math.log(2))


def test_js_matrix_symmetric_zero_diagonal():
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]]])
    result = metrics.js_diversity(probs, probs=True, matrix=True)
    assert result[0, 0].item() == 0.0
    assert result[0, 2].item() == pytest.approx(0.0)
    assert result[0, 1].item() == pytest.approx(math.log(2))
    assert result[1, 0].item() == pytest.approx(math.log(2))


def test_squared_decomposition_hand_example():
    # Members score 0.02 and 0.98, the mean [0.6, 0.4] scores 0.32, and each
    # member lies 0.18 from the mean.
    result = metrics.ambiguity_decomposition(PAIR, LABEL, probs=True)
    assert result.member_loss.item() == pytest.approx(0.5)
    assert result.ensemble_loss.item() == pytest.approx(0.32)
    assert result.diversity.item() == pytest.approx(0.18)


def test_log_arithmetic_decomposition():
    result = metrics.ambiguity_decomposition(PAIR, LABEL, loss="log", probs=True)
    member = -(math.log(0.9) + math.log(0.3)) / 2
    assert result.member_loss.item() == pytest.approx(member)
    assert result.ensemble_loss.item() == pytest.approx(-math.log(0.6))
    assert result.diversity.item() == pytest.approx(member + math.log(0.6))


def test_log_geometric_decomposition():
    # q = [sqrt(0.27), sqrt(0.07)] / Z; diversity = mean KL(q || p_m) = -log Z.
    normalizer = math.sqrt(0.27) + math.sqrt(0.07)
    q = [math.sqrt(0.27) / normalizer, math.sqrt(0.07) / normalizer]
    kl = [
        sum(qc * math.log(qc / pc) for qc, pc in zip(q, member, strict=True))
        for member in ([0.9, 0.1], [0.3, 0.7])
    ]
    result = metrics.ambiguity_decomposition(
        PAIR, LABEL, loss="log", combiner="geometric", probs=True
    )
    assert result.ensemble_loss.item() == pytest.approx(-math.log(q[0]))
    assert result.diversity.item() == pytest.approx(sum(kl) / 2)
    assert result.diversity.item() == pytest.approx(-math.log(normalizer))


def test_decomposition_identity_logits():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 20, 4, generator=generator)
    labels = torch.randint(0, 4, (20,), generator=generator)
    for loss, combiner in (
        ("squared", "arithmetic"),
        ("log", "arithmetic"),
        ("log", "geometric"),
    ):
        result = metrics.ambiguity_decomposition(
            logits, labels, loss=loss, combiner=combiner
        )
        expected = (result.member_loss - result.diversity).item()
        assert result.ensemble_loss.item() == pytest.approx(expected)


def test_squared_geometric_rejected():
    with pytest.raises(ValueError, match="arithmetic mean only"):
        metrics.ambiguity_decomposition(PAIR, LABEL, combiner="geometric", probs=True)


def test_probabilities_not_summing_rejected():
    probs = torch.tensor([[[0.5, 0.4]], [[0.5, 0.5]]])
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.kl_diversity(probs, probs=True)


def test_one_member_rejected():
    with pytest.raises(ValueError, match="at least 2, but got 1"):
        metrics.js_diversity(torch.zeros(1, 3, 2))
