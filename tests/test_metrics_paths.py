import math

import pytest
import torch
from scipy import stats

import layershare as ls
from layershare import metrics


def test_length_distribution_counts():
    table = metrics.length_distribution(torch.tensor([0, 1, 1, 3]))
    assert table["length"].tolist() == [0, 1, 2, 3]
    assert table["members"].tolist() == [1, 2, 0, 1]
    assert table["fraction"].tolist() == pytest.approx([0.25, 0.5, 0.0, 0.25])


def test_length_distribution_weighted():
    table = metrics.length_distribution([0, 1, 1], weights=[0.5, 0.25, 0.25])
    assert table["fraction"].tolist() == pytest.approx([0.5, 0.5])


def test_all_members_binomial():
    # Every member of a 6-block residual chain: lengths are Binomial(6, 1/2).
    sampler = ls.Sampler(ls.Graph.chain(6), ls.StochasticDepth(p_last=0.5))
    lengths = sampler.lengths(sampler.enumerate())
    table = metrics.length_distribution(lengths)
    expected = stats.binom.pmf(range(7), 6, 0.5)
    assert table["fraction"].tolist() == pytest.approx(expected.tolist())


def test_accuracy_by_length():
    predictions = torch.tensor([[0, 0], [0, 1], [1, 1]])
    labels = torch.tensor([0, 1])
    table = metrics.accuracy_by_length(predictions, labels, [2, 2, 5])
    assert table["length"].tolist() == [2, 5]
    assert table["members"].tolist() == [2, 1]
    assert table["mean"].tolist() == pytest.approx([0.75, 0.5])
    assert table["std"].tolist() == pytest.approx([0.25, 0.0])


def test_path_gradient_table_totals():
    table = metrics.path_gradient_table([4.0, 2.0, 1.0, 3.0], [0, 1, 1, 2], blocks=3)
    assert table["sampled"].tolist() == [1, 2, 1]
    assert table["mean"].tolist() == pytest.approx([4.0, 1.5, 3.0])
    assert table["paths"].tolist() == [1, 3, 3]
    assert table["total"].tolist() == pytest.approx([4.0, 4.5, 9.0])


def test_path_gradient_table_length_too_long():
    with pytest.raises(ValueError, match="length 4 but the network has only 3"):
        metrics.path_gradient_table([1.0], [4], blocks=3)


def test_lengths_shape_mismatch():
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        metrics.accuracy_by_length(torch.zeros(2, 3, dtype=torch.long), [0, 0, 0], [1])


def test_binomial_count_of_paths():
    table = metrics.path_gradient_table([1.0] * 3, [0, 2, 5], blocks=5)
    assert table["paths"].tolist() == [1, math.comb(5, 2), 1]
