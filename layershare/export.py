"""Export a graph to networkx and torch_geometric, for graph tools and GNNs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import networkx as nx
import torch

from layershare.errors import MemberError
from layershare.graph import Graph
from layershare.members import Member, Members

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["to_networkx", "to_pyg"]


def to_networkx(graph: Graph) -> nx.DiGraph:
    """Return the graph as a ``networkx.DiGraph`` with node and edge attributes.

    Parallel edges between the same two nodes (a skip and a branch that is a
    bare identity) are kept as one edge whose ``edges`` attribute lists
    their positions.
    """
    exported = nx.DiGraph()
    for n in graph.nodes:
        exported.add_node(
            n.name,
            kind=n.kind,
            rule=n.rule,
            target=n.target,
            tie=n.tie,
            num_params=n.num_params,
        )
    for i, e in enumerate(graph.edges):
        if exported.has_edge(e.src, e.dst):
            exported.edges[e.src, e.dst]["edges"].append(i)
            continue
        exported.add_edge(
            e.src, e.dst, role=e.role, column=e.column, gate=e.gate, edges=[i]
        )
    return exported


def to_pyg(graph: Graph, member: Member | Members | None = None) -> Data:
    """Return the graph as a ``torch_geometric.data.Data``.

    Node features ``x`` (float, one row per node in topological order) are
    a one-hot of the kind (input, output, op, sum join, mean join), then
    ``log1p`` of the parameter count, then the tie-group index (``-1`` when
    untied). ``edge_index`` lists edges in topological order of their
    targets, and ``edge_attr`` contains ``[gated, gate id or -1, column or -1]``.
    ``num_nodes`` is always set, so a node without edges is kept.

    Args:
        member: A :class:`~layershare.Member` (or a one-member
            :class:`~layershare.Members`) whose active subgraph to export:
            only the edges it uses are kept, and every node, including
            those left without edges (default: ``None``, every edge).

    Raises:
        MemberError: When the member does not fit the graph or drops every
            input of a join it uses.
    """
    from torch_geometric.data import Data

    index_of = {node.name: i for i, node in enumerate(graph.nodes)}
    edges = list(range(len(graph.edges)))
    if member is not None:
        members = Members.coerce(member)
        if len(members) != 1 or members.num_gates != graph.num_gates:
            raise MemberError(
                f"to_pyg() takes one member of this graph ({graph.num_gates} "
                f"gates), but got {len(members)} with {members.num_gates} gates"
            )
        active = graph.active_edges(members.bits)[0]
        edges = [i for i in edges if bool(active[i])]

    kinds = ["input", "output", "op", "join:sum", "join:mean"]
    tie_names = sorted({n.tie for n in graph.nodes if n.tie is not None})
    rows = []
    for n in graph.nodes:
        key = f"join:{n.rule}" if n.kind == "join" else n.kind
        one_hot = [1.0 if key == k else 0.0 for k in kinds]
        tie = float(tie_names.index(n.tie)) if n.tie is not None else -1.0
        rows.append(one_hot + [math.log1p(n.num_params), tie])
    index = [
        [index_of[graph.edges[i].src], index_of[graph.edges[i].dst]] for i in edges
    ]
    attrs = [
        [
            float(graph.edges[i].gate is not None),
            float(-1 if graph.edges[i].gate is None else graph.edges[i].gate),
            float(-1 if graph.edges[i].column is None else graph.edges[i].column),
        ]
        for i in edges
    ]
    edge_index = torch.tensor(index, dtype=torch.long).t().reshape(2, len(index))
    return Data(
        x=torch.tensor(rows, dtype=torch.float32),
        edge_index=edge_index,
        edge_attr=torch.tensor(attrs, dtype=torch.float32).reshape(len(attrs), 3),
        num_nodes=len(graph.nodes),
        node_names=[n.name for n in graph.nodes],
    )
