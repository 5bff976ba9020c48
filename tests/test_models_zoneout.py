"""Zoneout cells, the functional op, the scheme and the sequence classifier."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.models import ZoneoutClassifier, ZoneoutGRUCell, ZoneoutLSTMCell
from layershare.nn.zoneout import zoneout


def lstm_by_hand(cell: ZoneoutLSTMCell, x, h, c):
    """Return the plain LSTM step ``(h~, c~)`` from the cell's weights."""
    inner = cell.cell
    gates = x @ inner.weight_ih.T + inner.bias_ih + h @ inner.weight_hh.T
    gates = gates + inner.bias_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def gru_by_hand(cell: ZoneoutGRUCell, x, h):
    """Return the plain GRU step from the cell's weights."""
    inner = cell.cell
    xr, xz, xn = (x @ inner.weight_ih.T + inner.bias_ih).chunk(3, dim=1)
    hr, hz, hn = (h @ inner.weight_hh.T + inner.bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


@pytest.fixture
def sequence() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(6, 4, 3)


@pytest.mark.parametrize("training", [True, False])
def test_lstm_z1_keeps_initial_state(sequence, training):
    cell = ZoneoutLSTMCell(3, 5, z_cell=1.0, z_hidden=1.0).train(training)
    h0, c0 = torch.randn(4, 5), torch.randn(4, 5)
    state = (h0, c0)
    for x in sequence:
        state = cell(x, state)
        assert torch.equal(state[0], h0)
        assert torch.equal(state[1], c0)


@pytest.mark.parametrize("training", [True, False])
def test_gru_z1_keeps_initial_state(sequence, training):
    cell = ZoneoutGRUCell(3, 5, z_hidden=1.0).train(training)
    h0 = torch.randn(4, 5)
    h = h0
    for x in sequence:
        h = cell(x, h)
        assert torch.equal(h, h0)


def test_lstm_z0_is_plain_cell(sequence):
    torch.manual_seed(1)
    cell = ZoneoutLSTMCell(3, 5, z_cell=0.0, z_hidden=0.0).train()
    h, c = torch.zeros(4, 5), torch.zeros(4, 5)
    expected_h, expected_c = h, c
    for x in sequence:
        h, c = cell(x, (h, c))
        expected_h, expected_c = lstm_by_hand(cell, x, expected_h, expected_c)
        torch.testing.assert_close(h, expected_h)
        torch.testing.assert_close(c, expected_c)


def test_gru_z0_is_plain_cell(sequence):
    torch.manual_seed(1)
    cell = ZoneoutGRUCell(3, 5, z_hidden=0.0).train()
    h = expected = torch.zeros(4, 5)
    for x in sequence:
        h = cell(x, h)
        expected = gru_by_hand(cell, x, expected)
        torch.testing.assert_close(h, expected)


def test_lstm_eval_uses_expectation():
    torch.manual_seed(2)
    cell = ZoneoutLSTMCell(3, 5, z_cell=0.4, z_hidden=0.3).eval()
    x, h, c = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    h_new, c_new = lstm_by_hand(cell, x, h, c)
    h_out, c_out = cell(x, (h, c))

    # The hidden candidate uses the un-zoned cell candidate.
    torch.testing.assert_close(c_out, 0.4 * c + 0.6 * c_new)
    torch.testing.assert_close(h_out, 0.3 * h + 0.7 * h_new)


def test_lstm_training_masks_per_unit():
    torch.manual_seed(3)
    cell = ZoneoutLSTMCell(3, 64, z_cell=0.5, z_hidden=0.5).train()
    x, h, c = torch.randn(256, 3), torch.randn(256, 64), torch.randn(256, 64)
    h_new, c_new = lstm_by_hand(cell, x, h, c)
    h_out, c_out = cell(x, (h, c))
    kept_h = h_out == h
    kept_c = c_out == c

    # Every unit is exactly its previous or its new value.
    assert torch.all(kept_h | torch.isclose(h_out, h_new, atol=1e-6))
    assert torch.all(kept_c | torch.isclose(c_out, c_new, atol=1e-6))
    # Half the units keep their value, with separate masks for h and c.
    assert abs(kept_h.float().mean().item() - 0.5) < 0.02
    assert abs(kept_c.float().mean().item() - 0.5) < 0.02
    assert not torch.equal(kept_h, kept_c)


def test_zoneout_op_values():
    previous, new = torch.zeros(2, 3), torch.ones(2, 3)

    assert torch.equal(zoneout(previous, new, 0.25, training=False), 0.75 * new)
    assert torch.equal(zoneout(previous, new, 0.0), new)
    assert torch.equal(zoneout(previous, new, 1.0), previous)


def test_zoneout_op_rejects_bad_rate():
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        zoneout(torch.zeros(1), torch.zeros(1), 1.5, training=False)


def test_zoneout_op_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="one shape"):
        zoneout(torch.zeros(2), torch.zeros(3), 0.5)


def test_cell_rejects_bad_rate():
    with pytest.raises(ValueError, match="z_cell must be between 0 and 1"):
        ZoneoutLSTMCell(3, 5, z_cell=-0.1)


def test_classifier_scheme_sets_rates():
    model = ZoneoutClassifier("lstm", hidden_size=4, scheme=ls.Zoneout(0.5, 0.05))
    cell = model.recurrence.cell

    assert (cell.z_cell, cell.z_hidden) == (0.5, 0.05)
    model.scheme = None
    assert (cell.z_cell, cell.z_hidden) == (0.0, 0.0)


def test_classifier_gru_takes_hidden_rate():
    model = ZoneoutClassifier("gru", hidden_size=4, scheme=ls.Zoneout(0.5, 0.2))

    assert model.recurrence.cell.z_hidden == 0.2


def test_classifier_output_is_last_state(sequence):
    torch.manual_seed(4)
    model = ZoneoutClassifier("lstm", 3, hidden_size=5, scheme=ls.Zoneout(0.3, 0.2))
    model.eval()
    batch = sequence.transpose(0, 1)
    state = None
    for t in range(batch.shape[1]):
        state = model.recurrence.cell(batch[:, t], state)

    torch.testing.assert_close(model(batch), model.head(state[0]))


def test_classifier_has_one_member():
    model = ZoneoutClassifier("gru", hidden_size=4)
    sampler = ls.Sampler(model, ls.Zoneout(0.5, 0.05))

    assert model.graph.num_gates == 0
    assert sampler.count() == 1


def test_classifier_evaluate_matches_call(sequence):
    model = ZoneoutClassifier("gru", 3, hidden_size=4, scheme=ls.Zoneout(0.5, 0.1))
    model.eval()
    batch = sequence.transpose(0, 1)
    members = ls.Sampler(model, model.scheme).enumerate()

    torch.testing.assert_close(ls.evaluate(model, members, batch)[0], model(batch))


def test_classifier_rejects_other_scheme():
    model = ZoneoutClassifier("gru", hidden_size=4)
    with pytest.raises(TypeError, match="Zoneout scheme or None"):
        model.scheme = ls.StochasticDepth(0.5)


def test_zoneout_masks_differ_by_sample_and_step():
    torch.manual_seed(0)
    previous, new = torch.zeros(64, 32), torch.ones(64, 32)
    first = zoneout(previous, new, 0.5) == 0
    second = zoneout(previous, new, 0.5) == 0
    # Rows are samples: with independent masks no two rows coincide.
    assert len(torch.unique(first, dim=0)) == 64
    # A second step draws a new mask.
    assert not torch.equal(first, second)
