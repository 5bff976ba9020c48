"""HM-RNN: boundary estimator, COPY/UPDATE/FLUSH, boundaries and slope annealing."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.models import HMRNN, HMLSTMCell
from layershare.models.hmrnn import binary_boundary, hard_sigmoid
from layershare.train import fit


def test_hard_sigmoid_values():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0])

    expected = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    assert torch.equal(hard_sigmoid(x, slope=1.0), expected)
    assert torch.equal(hard_sigmoid(x, slope=2.0), torch.tensor([0, 0, 0.5, 1, 1.0]))


def test_boundary_forward_is_binary():
    x = torch.tensor([-0.3, -0.01, 0.01, 0.3])

    assert torch.equal(binary_boundary(x), torch.tensor([0.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("slope", [1.0, 3.0])
def test_boundary_gradient_straight_through(slope):
    # d/dx of the hard sigmoid is slope / 2 where |slope * x| < 1, else 0.
    x = torch.tensor([-0.2, 0.1, 0.9, -2.0], requires_grad=True)
    binary_boundary(x, slope).sum().backward()

    inside = (slope * x.detach()).abs() < 1
    expected = torch.where(inside, torch.tensor(slope / 2), torch.tensor(0.0))
    assert torch.equal(x.grad, expected)


@pytest.fixture
def cell() -> HMLSTMCell:
    torch.manual_seed(0)
    return HMLSTMCell(3, 4, above_size=5)


def gates_by_hand(cell, below, z_below, h, z, above):
    """Return f, i, o, g and the boundary pre-activation from the weights."""
    s = h @ cell.recurrent.weight.T
    s = s + z_below * (below @ cell.bottom_up.weight.T + cell.bottom_up.bias)
    s = s + z * (above @ cell.top_down.weight.T)
    f, i, o, g = (s[:, k * 4 : (k + 1) * 4] for k in range(4))
    return (
        torch.sigmoid(f),
        torch.sigmoid(i),
        torch.sigmoid(o),
        torch.tanh(g),
        s[:, 16:],
    )


@pytest.fixture
def inputs():
    torch.manual_seed(1)
    return torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 5)


def test_copy_keeps_state(cell, inputs):
    below, h, c, above = inputs
    zeros = torch.zeros(2, 1)
    h_new, c_new, _ = cell(below, zeros, (h, c, zeros), above, 1.0)

    assert torch.equal(h_new, h)
    assert torch.equal(c_new, c)


def test_update_by_hand(cell, inputs):
    below, h, c, above = inputs
    ones, zeros = torch.ones(2, 1), torch.zeros(2, 1)
    h_new, c_new, z_new = cell(below, ones, (h, c, zeros), above, 1.0)
    f, i, o, g, s = gates_by_hand(cell, below, ones, h, zeros, above)

    torch.testing.assert_close(c_new, f * c + i * g)
    torch.testing.assert_close(h_new, o * torch.tanh(f * c + i * g))
    assert torch.equal(z_new, (s > 0).float())


def test_flush_by_hand(cell, inputs):
    below, h, c, above = inputs
    ones = torch.ones(2, 1)
    h_new, c_new, _ = cell(below, ones, (h, c, ones), above, 1.0)
    f, i, o, g, _ = gates_by_hand(cell, below, ones, h, ones, above)

    torch.testing.assert_close(c_new, i * g)
    torch.testing.assert_close(h_new, o * torch.tanh(i * g))


def test_flush_ignores_bottom_boundary(cell, inputs):
    below, h, c, above = inputs
    ones, zeros = torch.ones(2, 1), torch.zeros(2, 1)
    h_new, c_new, _ = cell(below, zeros, (h, c, ones), above, 1.0)
    f, i, o, g, _ = gates_by_hand(cell, below, zeros, h, ones, above)

    torch.testing.assert_close(c_new, i * g)
    torch.testing.assert_close(h_new, o * torch.tanh(i * g))


def test_boundaries_shape_and_values():
    torch.manual_seed(0)
    model = HMRNN(hidden_sizes=(4, 4, 4))
    boundaries = model.boundaries(torch.randn(3, 10, 1))

    assert boundaries.shape == (3, 10, 2)
    assert torch.all((boundaries == 0) | (boundaries == 1))


def test_boundaries_drive_top_layer():
    # With the lower layer never ending a segment, the top layer only copies,
    # so its state stays at zero.
    torch.manual_seed(0)
    model = HMRNN(hidden_sizes=(4, 4))
    with torch.no_grad():
        model.rnn.cells[0].bottom_up.bias[-1] = -100.0
    hidden, boundaries = model.rnn(torch.randn(3, 10, 1))

    assert torch.all(boundaries == 0)
    assert torch.all(hidden[:, 4:] == 0)


def test_set_epoch_anneals_slope():
    model = HMRNN(hidden_sizes=(4, 4), slope_rate=0.5, max_slope=3.0)
    slopes = []
    for epoch in (0, 2, 10):
        model.set_epoch(epoch)
        slopes.append(model.slope)

    assert slopes == [1.0, 2.0, 3.0]


def test_fit_anneals_slope():
    model = HMRNN(hidden_sizes=(4, 4), slope_rate=0.25)
    data = torch.utils.data.TensorDataset(torch.randn(8, 5, 1), torch.arange(8) % 2)
    fit(model, None, data, epochs=3, batch_size=8, progress=False)

    # The last epoch is epoch 2.
    assert model.slope == 1.5


def test_graph_is_coarse():
    model = HMRNN(hidden_sizes=(4, 4))

    assert model.graph.num_gates == 0
    assert ls.Sampler(model, ls.StochasticDepth(0.5)).count() == 1


def test_one_layer_rejected():
    with pytest.raises(ValueError, match="at least 2 layers"):
        HMRNN(hidden_sizes=(4,))
