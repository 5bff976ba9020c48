import itertools

import pytest
import torch

from layershare import metrics


def _random(rows, cols, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=generator, dtype=torch.float64)


def _hsic_u_brute_force(x, y):
    # U-statistic over ordered 4-tuples of distinct samples (Song et al. 2012):
    # mean of K_ij L_ij + K_ij L_qr - 2 K_ij L_iq.
    k = x @ x.T
    l_ = y @ y.T
    n = x.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l_[i, j] + k[i, j] * l_[q, r] - 2 * k[i, j] * l_[i, q]
        count += 1
    return total / count


def test_cka_self_is_one():
    x = _random(12, 5, 0)
    assert metrics.cka(x, x).item() == pytest.approx(1.0)
    assert metrics.cka(x, x, unbiased=True).item() == pytest.approx(1.0)


def test_cka_one_feature_squared_correlation():
    # With one feature, linear CKA is the squared Pearson correlation: 0.5^2.
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [3.0], [2.0]])
    assert metrics.cka(x, y).item() == pytest.approx(0.25)


def test_cka_invariances():
    x, y = _random(15, 4, 1), _random(15, 6, 2)
    rotation, _ = torch.linalg.qr(_random(6, 6, 3))
    base = metrics.cka(x, y).item()
    assert metrics.cka(3.0 * x, y).item() == pytest.approx(base)
    assert metrics.cka(x, y + 7.0).item() == pytest.approx(base)
    assert metrics.cka(x, y @ rotation).item() == pytest.approx(base)


def test_unbiased_invariances():
    x, y = _random(9, 3, 4), _random(9, 5, 5)
    base = metrics.cka(x, y, unbiased=True).item()
    assert metrics.cka(0.5 * x, y, unbiased=True).item() == pytest.approx(base)
    assert metrics.cka(x - 4.0, y, unbiased=True).item() == pytest.approx(base)


def test_unbiased_hsic_brute_force():
    x, y = _random(6, 2, 6), _random(6, 3, 7)
    expected = _hsic_u_brute_force(x, y).item()
    result = metrics.hsic(x, y, unbiased=True)
    assert result.item() == pytest.approx(expected)


def test_unbiased_hsic_uncentered_brute_force():
    # The U-statistic does not change when features are translated.
    x, y = _random(6, 2, 8) + 3.0, _random(6, 2, 9) - 1.0
    expected = _hsic_u_brute_force(x, y).item()
    result = metrics.hsic(x, y, unbiased=True)
    assert result.item() == pytest.approx(expected)


def test_biased_hsic_formula():
    # tr(K H L H) / (N - 1)^2 with the centering matrix H.
    x, y = _random(7, 3, 10), _random(7, 2, 11)
    h = torch.eye(7, dtype=torch.float64) - 1.0 / 7
    expected = torch.trace(x @ x.T @ h @ y @ y.T @ h).item() / 36
    assert metrics.hsic(x, y).item() == pytest.approx(expected)


def test_cka_flattens_trailing_dims():
    x = _random(8, 12, 12).reshape(8, 3, 2, 2)
    assert metrics.cka(x, x.reshape(8, 12)).item() == pytest.approx(1.0)


def test_cka_matrix_values():
    x, y = _random(10, 3, 13), _random(10, 4, 14)
    result = metrics.cka_matrix([x, y, 2 * x])
    assert result.shape == (3, 3)
    assert result[0, 2].item() == pytest.approx(1.0)
    assert result[0, 1].item() == pytest.approx(metrics.cka(x, y).item())
    assert result[1, 0].item() == pytest.approx(result[0, 1].item())


def test_unbiased_needs_four_samples():
    x = _random(3, 2, 15)
    with pytest.raises(ValueError, match="at least 4 samples, but got 3"):
        metrics.cka(x, x, unbiased=True)


def test_constant_features_rejected():
    x = torch.ones(5, 2)
    with pytest.raises(ValueError, match="do not vary"):
        metrics.cka(x, _random(5, 2, 16))


def test_sample_mismatch_rejected():
    with pytest.raises(ValueError, match="x has 5 samples but y has 4"):
        metrics.cka(_random(5, 2, 17), _random(4, 2, 18))
