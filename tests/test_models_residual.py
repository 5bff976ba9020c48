"""ResNet and ResidualMLP: one gate per branch, schemes, and their specs."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.models import ResidualMLP, ResNet


@pytest.mark.parametrize("blocks", [1, 3, 5])
def test_one_gate_per_block(blocks):
    model = ResNet(blocks=blocks, width=4)

    assert model.graph.num_gates == blocks
    assert ls.Sampler(model, ls.StochasticDepth(0.5)).count() == 2**blocks


def test_gates_sit_on_branches():
    graph = ResidualMLP(in_features=4, width=4, blocks=3).graph
    for gate in range(graph.num_gates):
        edge = graph.gate_edge(gate)
        assert edge.role == "branch"
        assert graph.node(edge.src).target == f"branches.{gate}"


def test_swapout_trains_residual_mlp():
    torch.manual_seed(0)
    model = ResidualMLP(in_features=4, width=6, blocks=2)
    model.scheme = ls.Swapout(0.9, 0.7)
    x = torch.randn(5, 4)
    first, second = model(x), model(x)

    # Swapout draws fresh per-unit masks at each training call.
    assert not torch.equal(first, second)
    model.eval()
    assert torch.equal(model(x), model(x))
