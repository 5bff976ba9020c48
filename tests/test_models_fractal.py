"""FractalNet: join arities, column depths, columns as members and alone."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.models import FractalNet


def block_arities(model: FractalNet, block: int) -> list[int]:
    """Return the input counts of one block's joins, read off the graph."""
    graph = model.graph
    prefix = f"blocks_{block}_"
    return [len(graph.in_edges(j)) for j in graph.joins if j.startswith(prefix)]


def longest_unit_path(model: FractalNet) -> int:
    """Count conv units on the graph's longest input-to-output path."""
    graph = model.graph
    depth = {}
    for node in graph.nodes:
        before = [depth[graph.edges[i].src] for i in graph.in_edges(node.name)]
        own = 1 if ".units." in node.target else 0
        depth[node.name] = max(before, default=0) + own
    return depth[graph.outputs[0]]


@pytest.mark.parametrize(
    ("columns", "arities"),
    [(2, [2]), (3, [2, 3]), (4, [2, 3, 2, 4])],
)
def test_join_arities(columns, arities):
    model = FractalNet(columns=columns, blocks=2, width=4)

    assert block_arities(model, 0) == arities
    assert block_arities(model, 1) == arities


@pytest.mark.parametrize("columns", [1, 2, 3, 4])
def test_deepest_column_depth(columns):
    model = FractalNet(columns=columns, blocks=2, width=4)

    assert len(model.blocks[0].units[columns - 1]) == 2 ** (columns - 1)
    assert longest_unit_path(model) == 2 * 2 ** (columns - 1)


def test_column_labels_follow_units():
    model = FractalNet(columns=3, blocks=1, width=4)
    graph = model.graph
    for gate in range(graph.num_gates):
        edge = graph.gate_edge(gate)
        # The unit feeding the join is blocks.0.units.<column>.<k>.
        column = int(graph.node(edge.src).target.split(".")[3])
        assert edge.column == column


def test_count_one_block_by_hand():
    # Top join: any non-empty subset of columns {0, 1, 2}. If it keeps column
    # 1 or 2, the inner join (columns 1, 2) is used too: 3 choices there.
    # {0} alone gives 1 member, the other 6 subsets 3 each: 19.
    model = FractalNet(columns=3, blocks=1, width=4)

    assert ls.Sampler(model, ls.DropPath(0.15, 0.5)).count() == 19


def test_count_two_blocks_multiplies():
    model = FractalNet(columns=3, blocks=2, width=4)

    assert ls.Sampler(model, ls.DropPath(0.15, 0.5)).count() == 19 * 19


def test_mean_join_by_hand():
    torch.manual_seed(0)
    model = FractalNet(columns=2, blocks=1, width=4).eval()
    x = torch.randn(3, 1, 8, 8)
    units = model.blocks[0].units
    shallow = units[0][0](x)
    deep = units[1][1](units[1][0](x))
    members = ls.Members.from_codes([0b01, 0b10, 0b11], 2)

    torch.testing.assert_close(model(x, member=members[0]), model.head(shallow))
    torch.testing.assert_close(model(x, member=members[1]), model.head(deep))
    both = model.head((shallow + deep) / 2)
    torch.testing.assert_close(model(x, member=members[2]), both)


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_column_matches_member(columns):
    torch.manual_seed(0)
    model = FractalNet(columns=columns, blocks=2, width=4).eval()
    x = torch.randn(5, 1, 8, 8)
    members = ls.Sampler(model, ls.DropPath(0.15, 0.5)).columns()

    assert len(members) == columns
    for c in range(columns):
        expected = model(x, member=members[c])
        torch.testing.assert_close(model.column(c).eval()(x), expected)


def test_column_member_keeps_one_column():
    model = FractalNet(columns=3, blocks=2, width=4)
    graph = model.graph
    members = ls.Sampler(model, ls.DropPath(0.15, 0.5)).columns()
    for c in range(3):
        kept = members.bits[c].nonzero().flatten().tolist()
        assert {graph.gate_edge(g).column for g in kept} == {c}


def test_column_is_a_copy():
    model = FractalNet(columns=2, blocks=1, width=4)
    column = model.column(1)
    with torch.no_grad():
        column[0].conv.weight.zero_()

    assert model.blocks[0].units[1][0].conv.weight.abs().sum() > 0


def test_column_out_of_range():
    model = FractalNet(columns=2, blocks=1, width=4)
    with pytest.raises(IndexError, match="columns 0..1"):
        model.column(2)


def test_bad_columns_rejected():
    with pytest.raises(ValueError, match="columns must be a positive int"):
        FractalNet(columns=0)
