"""Graph: validation, gates, and export to networkx and torch_geometric."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
from bruteforce import fractal_graph
from torch import nn

import layershare as ls
from layershare.graph import Edge, Graph, Node
from layershare.nn import GatedModel, Join


class TiedChain(GatedModel):
    """Two residual blocks that share one branch (an unrolled recurrence)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = nn.Linear(3, 3)
        self.first = Join(2, "sum")
        self.second = Join(2, "sum")

    def forward(self, x):
        h = self.first(x, self.branch(x))
        return self.second(h, self.branch(h))


class IdentityBranch(GatedModel):
    """A residual join whose branch is the identity: two parallel edges."""

    def __init__(self) -> None:
        super().__init__()
        self.join = Join(2, "sum")

    def forward(self, x):
        return self.join(x, x)


def _graphs():
    return {
        "chain": Graph.chain(4),
        "fractal": fractal_graph(4, 2),
        "mlp": ls.models.ResidualMLP(in_features=4, width=4, blocks=3).graph,
        "tied": TiedChain().graph,
        "parallel": IdentityBranch().graph,
    }


# ------------------------------------------------------------- validation


def test_cycle_names_its_nodes():
    nodes = [Node("in", "input"), Node("a"), Node("b"), Node("out", "output")]
    edges = [Edge("in", "a"), Edge("a", "b"), Edge("b", "a"), Edge("b", "out")]
    with pytest.raises(ls.GraphError, match="a -> b -> a") as info:
        Graph(nodes, edges)
    assert info.value.nodes == ("a", "b", "a")


def test_cycle_with_node_downstream():
    # "a" sorts first but lies after the cycle x -> y -> x.
    nodes = [
        Node("in", "input"),
        Node("x"),
        Node("y"),
        Node("a"),
        Node("out", "output"),
    ]
    edges = [
        Edge("in", "x"),
        Edge("x", "y"),
        Edge("y", "x"),
        Edge("y", "a"),
        Edge("a", "out"),
    ]
    with pytest.raises(ls.GraphError, match="cycle") as info:
        Graph(nodes, edges)
    assert set(info.value.nodes) == {"x", "y"}


def test_unreached_node():
    nodes = [Node("in", "input"), Node("lost"), Node("out", "output")]
    edges = [Edge("in", "out"), Edge("lost", "out")]
    with pytest.raises(ls.GraphError, match="'lost' is not reached from any input"):
        Graph(nodes, edges)


def test_node_reaching_no_output():
    nodes = [Node("in", "input"), Node("dead"), Node("out", "output")]
    edges = [Edge("in", "out"), Edge("in", "dead")]
    with pytest.raises(ls.GraphError, match="'dead' does not reach any output"):
        Graph(nodes, edges)


def test_join_single_input():
    nodes = [Node("in", "input"), Node("j", "join", rule="sum"), Node("out", "output")]
    edges = [Edge("in", "j", role="branch"), Edge("j", "out")]
    with pytest.raises(ls.GraphError, match="join 'j' has 1 input"):
        Graph(nodes, edges)


def test_gate_missing_edge_index():
    graph = Graph.chain(1)
    with pytest.raises(ls.GraphError, match="gate on edge 9"):
        Graph(graph.nodes, graph.edges, gated=[9])


def test_gate_missing_edge_pair():
    graph = Graph.chain(1)
    with pytest.raises(ls.GraphError, match="no such edge"):
        Graph(graph.nodes, graph.edges, gated=[("block0", "output")])


def test_gate_on_non_join():
    graph = Graph.chain(1)
    with pytest.raises(ls.GraphError, match="not a join"):
        Graph(graph.nodes, graph.edges, gated=[("input", "block0")])


def test_gate_by_pair():
    graph = Graph.chain(2)
    regated = Graph(graph.nodes, graph.edges, gated=[("block1", "join1")])
    assert regated.num_gates == 1
    assert (regated.gate_edge(0).src, regated.gate_edge(0).dst) == ("block1", "join1")


def test_gate_ambiguous_pair():
    graph = IdentityBranch().graph
    join = graph.joins[0]
    source = graph.edges[graph.in_edges(join)[0]].src
    with pytest.raises(ls.GraphError, match="2 edges"):
        Graph(graph.nodes, graph.edges, gated=[(source, join)])


def test_missing_node():
    with pytest.raises(ls.GraphError, match="'ghost'"):
        Graph([Node("in", "input"), Node("out", "output")], [Edge("ghost", "out")])


def test_gate_ids_topological():
    graph = fractal_graph(3, 1)
    order = [graph.position(graph.gate_edge(g).dst) for g in range(graph.num_gates)]
    assert order == sorted(order)


def test_fractal_join_arities():
    graph = fractal_graph(4, 1)
    assert [len(graph.in_edges(j)) for j in graph.joins] == [2, 3, 2, 4]


def test_optional_nodes_by_hand():
    graph = fractal_graph(2, 2)
    assert "pool1" not in graph.optional_nodes()
    assert len(graph.optional_nodes()) == 6


# ------------------------------------------------------------- networkx


@pytest.mark.parametrize("name", ["chain", "fractal", "mlp", "tied", "parallel"])
def test_networkx_dag(name):
    graph = _graphs()[name]
    assert nx.is_directed_acyclic_graph(graph.to_networkx())


def test_networkx_attributes():
    graph = _graphs()["tied"]
    exported = graph.to_networkx()
    assert set(exported.nodes) == {n.name for n in graph.nodes}
    for node in graph.nodes:
        assert exported.nodes[node.name]["kind"] == node.kind
        assert exported.nodes[node.name]["tie"] == node.tie
        assert exported.nodes[node.name]["num_params"] == node.num_params


def test_networkx_parallel_edges():
    graph = _graphs()["parallel"]
    exported = graph.to_networkx()
    join = graph.joins[0]
    source = graph.edges[graph.in_edges(join)[0]].src
    assert exported.edges[source, join]["edges"] == graph.in_edges(join)


# ---------------------------------------------------------------- pyg


@pytest.mark.parametrize("name", ["chain", "fractal", "mlp", "tied", "parallel"])
def test_pyg_topological_edges(name):
    graph = _graphs()[name]
    data = graph.to_pyg()
    src, dst = data.edge_index.tolist()
    assert all(s < d for s, d in zip(src, dst, strict=True))
    assert dst == sorted(dst)
    assert data.num_nodes == len(graph.nodes)


def test_pyg_features():
    graph = _graphs()["tied"]
    data = graph.to_pyg()
    kinds = ["input", "output", "op", "join:sum", "join:mean"]
    for i, node in enumerate(graph.nodes):
        key = f"join:{node.rule}" if node.kind == "join" else node.kind
        assert data.x[i, kinds.index(key)] == 1
        assert data.x[i, 5].item() == pytest.approx(math.log1p(node.num_params))
        assert data.x[i, 6].item() == (-1.0 if node.tie is None else 0.0)


def test_pyg_tie_group():
    graph = _graphs()["tied"]
    tied = [n.name for n in graph.nodes if n.tie is not None]
    assert len(tied) == 2
    assert graph.ties() == {"branch": tied}


def test_pyg_member_keeps_isolated_node():
    graph = Graph.chain(3)
    member = ls.Members.from_codes([0b101], 3)[0]
    data = graph.to_pyg(member=member)
    degree = torch.zeros(data.num_nodes, dtype=torch.long)
    degree.index_add_(
        0,
        data.edge_index.flatten(),
        torch.ones(data.edge_index.numel(), dtype=torch.long),
    )
    isolated = [data.node_names[i] for i in range(data.num_nodes) if degree[i] == 0]
    assert data.num_nodes == len(graph.nodes)
    assert isolated == ["block1"]
    # Three skips, two kept branches with their inputs, and the output edge.
    assert data.edge_index.shape[1] == 3 + 2 * 2 + 1


def test_pyg_member_wrong_graph():
    with pytest.raises(ls.MemberError, match="3 gates"):
        Graph.chain(3).to_pyg(member=ls.Member(1, 2))


def test_pyg_member_fractal_column():
    graph = fractal_graph(3, 1)
    shallow = ls.Sampler(graph, ls.DropPath()).columns()[0]
    data = graph.to_pyg(member=shallow)
    # input -> conv -> join -> output.
    assert data.edge_index.shape[1] == 3
    assert data.num_nodes == len(graph.nodes)


def test_summary():
    assert Graph.chain(2).summary() == (
        "Graph(6 nodes, 7 edges, 2 gates, 2 joins, 0 tie groups)"
    )
