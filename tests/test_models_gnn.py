"""TiedGCN: tied GCN layers with gated residual joins on the karate club graph."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.data import karate_club
from layershare.models import TiedGCN


@pytest.fixture(scope="module")
def graph():
    return karate_club()


def by_hand(model: TiedGCN, x, edge_index, weights: list[float]) -> torch.Tensor:
    """Run the blocks directly, branch k scaled by weights[k]."""
    conv = model.branch.conv
    h = model.stem(x)
    for w in weights:
        h = h + w * conv(h.relu(), edge_index)
    return model.head(h)


def test_tied_layers_form_one_tie_group():
    model = TiedGCN(layers=3)

    assert model.graph.ties() == {"branch": ["branch", "branch_1", "branch_2"]}
    assert model.graph.inputs == ["x", "edge_index"]


def test_untied_layers_have_no_tie_group():
    model = TiedGCN(layers=3, tie_weights=False)

    assert model.graph.ties() == {}
    assert sum(p.numel() for p in model.parameters()) > sum(
        p.numel() for p in TiedGCN(layers=3).parameters()
    )


def test_member_matches_hand_computation(graph):
    torch.manual_seed(0)
    model = TiedGCN(layers=3).eval()
    member = ls.Members.from_codes([0b101], 3)[0]
    out = model(graph.x, graph.edge_index, member=member)

    expected = by_hand(model, graph.x, graph.edge_index, [1.0, 0.0, 1.0])
    torch.testing.assert_close(out, expected)


def test_batched_copies_match_single_graph(graph):
    torch.manual_seed(0)
    model = TiedGCN(layers=2).eval()
    x = torch.stack([graph.x, 2 * graph.x])
    out = model(x, graph.edge_index)

    torch.testing.assert_close(out[0], model(graph.x, graph.edge_index))
    torch.testing.assert_close(out[1], model(2 * graph.x, graph.edge_index))


def test_evaluate_matches_member_calls(graph):
    torch.manual_seed(0)
    model = TiedGCN(layers=3, scheme=ls.DropPath(0.2, 0.0)).eval()
    members = ls.Sampler(model, model.scheme).enumerate()
    out = ls.evaluate(model, members, graph.x[None], extra_inputs=(graph.edge_index,))

    assert out.shape == (8, 1, 34, 4)
    for i, member in enumerate(members):
        expected = model(graph.x, graph.edge_index, member=member)
        torch.testing.assert_close(out[i, 0], expected)
