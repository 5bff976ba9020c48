"""Low-rank passthrough nets: the low-rank map, highway layers, GRU, counts."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.models import (
    LowRankGRUCell,
    LowRankGRUClassifier,
    LowRankHighwayNet,
    LowRankLinear,
)


@pytest.mark.parametrize("rank", [1, 3])
def test_low_rank_weight_has_rank(rank):
    torch.manual_seed(0)
    layer = LowRankLinear(8, 6, rank)

    assert torch.linalg.matrix_rank(layer.weight).item() == rank


def test_low_rank_forward_by_hand():
    torch.manual_seed(0)
    layer = LowRankLinear(5, 5, 2, diagonal=True)
    with torch.no_grad():
        layer.d.uniform_(-1, 1)
    x = torch.randn(3, 5)
    matrix = layer.u @ layer.v + torch.diag(layer.d)

    torch.testing.assert_close(layer(x), x @ matrix.T + layer.bias)


def test_low_rank_counts_by_hand():
    layer = LowRankLinear(64, 64, rank=4, diagonal=True)

    # U and V: 4 * (64 + 64); diagonal 64; bias 64.
    assert layer.num_parameters == 512 + 64 + 64
    assert layer.full_rank_parameters == 64 * 64 + 64


def test_diagonal_needs_square_map():
    with pytest.raises(ValueError, match="square map"):
        LowRankLinear(4, 5, 2, diagonal=True)


def test_rank_above_width_rejected():
    with pytest.raises(ValueError, match="rank must be at most"):
        LowRankLinear(4, 5, 5)


def test_highway_layer_by_hand():
    torch.manual_seed(0)
    model = LowRankHighwayNet(in_features=3, width=4, ranks=(2,)).eval()
    x = torch.randn(5, 3)
    h = torch.relu(model.stem(x))
    branch = model.branches[0]
    transform = torch.relu(branch.transform(h))
    gate = torch.sigmoid(branch.gate(h))

    # y = T * H + (1 - T) * x, the highway layer.
    expected = model.head(gate * transform + (1 - gate) * h)
    torch.testing.assert_close(model(x), expected)


def test_highway_dropped_layer_is_identity():
    torch.manual_seed(0)
    model = LowRankHighwayNet(in_features=3, width=4, ranks=(2, 2)).eval()
    x = torch.randn(5, 3)
    member = ls.Members.from_codes([0b00], 2)[0]

    expected = model.head(torch.relu(model.stem(x)))
    torch.testing.assert_close(model(x, member=member), expected)


def test_highway_counts_per_layer():
    model = LowRankHighwayNet(in_features=3, width=16, ranks=(2, 4))
    counts = model.parameter_counts()

    # Two maps per layer, each r * (16 + 16) + diagonal 16 + bias 16.
    assert [c["rank"] for c in counts] == [2, 4]
    assert [c["parameters"] for c in counts] == [2 * (64 + 32), 2 * (128 + 32)]
    assert [c["full_rank_parameters"] for c in counts] == [2 * (256 + 16)] * 2


def test_gru_cell_by_hand():
    torch.manual_seed(0)
    cell = LowRankGRUCell(3, 4, rank=2, diagonal=False)
    x, h = torch.randn(5, 3), torch.randn(5, 4)
    x_z, x_r, x_h = (x @ cell.inputs.weight.T + cell.inputs.bias).chunk(3, dim=1)
    z = torch.sigmoid(x_z + h @ cell.update.weight.T)
    r = torch.sigmoid(x_r + h @ cell.reset.weight.T)
    candidate = torch.tanh(x_h + (r * h) @ cell.candidate.weight.T)

    torch.testing.assert_close(cell(x, h), (1 - z) * h + z * candidate)


def test_gru_counts_per_layer():
    model = LowRankGRUClassifier(input_size=1, hidden_size=8, ranks=(2, 4))
    counts = model.parameter_counts()

    # Layer inputs: full map to 3 * 8 with bias. Transitions: three maps,
    # each r * (8 + 8) + diagonal 8, no bias. Full rank: 3 * 64.
    first_inputs, second_inputs = 1 * 24 + 24, 8 * 24 + 24
    assert [c["parameters"] for c in counts] == [
        first_inputs + 3 * (32 + 8),
        second_inputs + 3 * (64 + 8),
    ]
    assert [c["full_rank_parameters"] for c in counts] == [
        first_inputs + 3 * 64,
        second_inputs + 3 * 64,
    ]


def test_gru_rank_above_width_rejected():
    with pytest.raises(ValueError, match="cannot exceed the state width 8"):
        LowRankGRUClassifier(hidden_size=8, ranks=(9,))
