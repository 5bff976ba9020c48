"""The model's DAG: nodes, edges, gates and tied nodes.

A :class:`Graph` is derived from a model by tracing its forward with
``torch.fx`` (see :func:`trace_graph`): layershare joins and blocks are leaves,
so the graph is block-level. Graphs can also be built by hand from nodes and
edges, which is how tests and analyses describe architectures without a model.

Gates live on edges that enter a join with a gateable role (``"branch"`` or
``"column"``). Gate ids follow the topological order of the joins and, within
a join, the order of its inputs, so gate ``g`` has weight ``2**g`` in a
member's integer code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from layershare.errors import GraphError, MemberError

__all__ = ["GATED_ROLES", "KINDS", "Edge", "Graph", "Node"]

KINDS = ("input", "output", "op", "join")
GATED_ROLES = ("branch", "column")


@dataclass(frozen=True)
class Node:
    """One computation of the graph.

    Attributes:
        name: Unique name (the ``torch.fx`` node name for traced graphs).
        kind: ``"input"``, ``"output"``, ``"op"`` or ``"join"``.
        rule: Combining rule of a join (``"sum"`` or ``"mean"``), else ``None``.
        target: Module path or function name the node runs, for display.
        tie: Tie-group name: nodes with the same ``tie`` share parameters.
        num_params: Number of parameters of the node's module.
    """

    name: str
    kind: str = "op"
    rule: str | None = None
    target: str = ""
    tie: str | None = None
    num_params: int = 0


@dataclass(frozen=True)
class Edge:
    """A tensor passed from ``src`` to ``dst``.

    Attributes:
        src: Name of the producing node.
        dst: Name of the consuming node.
        role: Role at a join (``"skip"``, ``"branch"``, ``"column"``) or ``None``.
        column: Column index for column-structured graphs, else ``None``.
        gate: Gate id when the edge is gated, else ``None``.
    """

    src: str
    dst: str
    role: str | None = None
    column: int | None = None
    gate: int | None = None


@dataclass
class Graph:
    """A validated DAG with gates, in topological order.

    Args:
        nodes: The nodes. Their order is kept when it is topological;
            otherwise a topological order is computed.
        edges: The edges. Edges into a join are its inputs, in order.
        gated: The edges to gate, each named by its index in ``edges`` or by
            its ``(src, dst)`` pair. ``None`` gates every edge into a join whose
            role is ``"branch"`` or ``"column"`` (default: ``None``).

    Raises:
        GraphError: For a cycle (naming the nodes on it), a node that no input
            reaches or that reaches no output, a join with fewer than two
            inputs, an edge naming a missing node, or a gate on an edge that
            does not exist.

    Example:
        >>> g = Graph.chain(3)
        >>> g.num_gates
        3
    """

    nodes: list[Node]
    edges: list[Edge]
    gated: Sequence[int] | None = None
    fx_graph: torch.fx.Graph | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.nodes = list(self.nodes)
        self.edges = list(self.edges)
        self._index = {}
        for node in self.nodes:
            if node.kind not in KINDS:
                raise GraphError(
                    f"node {node.name!r} has kind {node.kind!r}; expected one of "
                    f"{KINDS}",
                    (node.name,),
                )
            if node.name in self._index:
                raise GraphError(f"duplicate node name {node.name!r}", (node.name,))
            self._index[node.name] = len(self._index)
        for edge in self.edges:
            for end in (edge.src, edge.dst):
                if end not in self._index:
                    raise GraphError(
                        f"edge {edge.src!r} -> {edge.dst!r} names node {end!r}, "
                        f"which is not in the graph",
                        (end,),
                    )
        self._sort()
        self._assign_gates()
        self._validate()

    # ------------------------------------------------------------------ build

    @classmethod
    def chain(cls, blocks: int) -> Graph:
        """Build the graph of a chain of residual blocks ``x + F_l(x)``."""
        if blocks < 1:
            raise ValueError(f"blocks must be at least 1, but got {blocks}")
        nodes = [Node("input", "input")]
        edges = []
        previous = "input"
        for layer in range(blocks):
            branch, join = f"block{layer}", f"join{layer}"
            nodes += [Node(branch, "op"), Node(join, "join", rule="sum")]
            edges += [
                Edge(previous, branch),
                Edge(previous, join, role="skip"),
                Edge(branch, join, role="branch"),
            ]
            previous = join
        nodes.append(Node("output", "output"))
        edges.append(Edge(previous, "output"))
        return cls(nodes, edges)

    def _sort(self) -> None:
        """Order nodes topologically (keeping a given valid order) or report a cycle."""
        position = {n.name: i for i, n in enumerate(self.nodes)}
        if all(position[e.src] < position[e.dst] for e in self.edges):
            return
        indegree = {n.name: 0 for n in self.nodes}
        successors: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for e in self.edges:
            indegree[e.dst] += 1
            successors[e.src].append(e.dst)
        ready = [n.name for n in self.nodes if indegree[n.name] == 0]
        order = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for nxt in successors[name]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) < len(self.nodes):
            left = {n for n, d in indegree.items() if d}
            cycle = self._find_cycle(self.edges, left)
            raise GraphError(
                f"the graph has a cycle: {' -> '.join(cycle)}; a layershare graph "
                f"must be acyclic (unroll recurrences over time steps)",
                tuple(cycle),
            )
        by_name = {n.name: n for n in self.nodes}
        self.nodes = [by_name[name] for name in order]
        self._index = {name: i for i, name in enumerate(order)}

    @staticmethod
    def _find_cycle(edges: list[Edge], left: set[str]) -> list[str]:
        """Return the nodes of one cycle among ``left``, first node repeated.

        ``left`` contains the nodes that Kahn's algorithm could not order. Each
        has a predecessor in ``left`` (a node downstream of a cycle may have
        no successor there), so walking predecessors must revisit a node.
        """
        predecessor = {}
        for e in edges:
            if e.src in left and e.dst in left:
                predecessor.setdefault(e.dst, e.src)
        start = sorted(left)[0]
        path, seen = [start], {start: 0}
        while True:
            prev = predecessor[path[-1]]
            if prev in seen:
                cycle = path[seen[prev] :] + [prev]
                return cycle[::-1]
            seen[prev] = len(path)
            path.append(prev)

    def _assign_gates(self) -> None:
        """Number the gated edges in topological order of their joins."""
        order = sorted(
            range(len(self.edges)),
            key=lambda i: (self._index[self.edges[i].dst], i),
        )
        self.edges = [self.edges[i] for i in order]
        remap = {old: new for new, old in enumerate(order)}
        if self.gated is None:
            chosen = {
                i
                for i, e in enumerate(self.edges)
                if e.role in GATED_ROLES and self.node(e.dst).kind == "join"
            }
        else:
            chosen = {remap[self._edge_index(i, order)] for i in self.gated}
        gate = 0
        for i, e in enumerate(self.edges):
            if i in chosen:
                if self.node(e.dst).kind != "join":
                    raise GraphError(
                        f"gate on edge {e.src!r} -> {e.dst!r}, but {e.dst!r} is not "
                        f"a join; only inputs of joins can be gated",
                        (e.src, e.dst),
                    )
                self.edges[i] = Edge(e.src, e.dst, e.role, e.column, gate)
                gate += 1
            elif e.gate is not None:
                self.edges[i] = Edge(e.src, e.dst, e.role, e.column, None)
        self.gated = [i for i, e in enumerate(self.edges) if e.gate is not None]
        self._in = {n.name: [] for n in self.nodes}
        self._out = {n.name: [] for n in self.nodes}
        for i, e in enumerate(self.edges):
            self._in[e.dst].append(i)
            self._out[e.src].append(i)

    def _edge_index(self, item: int | tuple[str, str], order: list[int]) -> int:
        """Return the original index of a gated edge named by index or by ends."""
        if isinstance(item, tuple) and len(item) == 2:
            matches = [
                old
                for new, old in enumerate(order)
                if (self.edges[new].src, self.edges[new].dst) == item
            ]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise GraphError(
                    f"{len(matches)} edges go from {item[0]!r} to {item[1]!r}; name "
                    f"the gated one by its index, one of {sorted(matches)}",
                    tuple(item),
                )
            raise GraphError(
                f"gate on edge {item[0]!r} -> {item[1]!r}, but the graph has no "
                f"such edge; gate an existing edge",
                tuple(str(end) for end in item),
            )
        if isinstance(item, bool) or not isinstance(item, int):
            raise GraphError(
                f"gate on edge {item!r}; name a gated edge by its index or by its "
                f"(src, dst) pair"
            )
        if not 0 <= item < len(order):
            raise GraphError(
                f"gate on edge {item}, but the graph has edges 0.."
                f"{len(order) - 1}; gate an existing edge"
            )
        return item

    def _validate(self) -> None:
        """Check reachability and join arity."""
        inputs = [n.name for n in self.nodes if n.kind == "input"]
        outputs = [n.name for n in self.nodes if n.kind == "output"]
        if not inputs or not outputs:
            raise GraphError(
                "a graph needs at least one input node and one output node"
            )
        for n in self.nodes:
            arity = len(self._in[n.name])
            if n.kind == "join" and arity < 2:
                raise GraphError(
                    f"join {n.name!r} has {arity} input(s); a join needs at least 2 "
                    f"(use an op node for a single input)",
                    (n.name,),
                )
            if n.kind == "input" and arity:
                raise GraphError(f"input node {n.name!r} has incoming edges", (n.name,))
        forward = self._reach(inputs, self._out, "dst")
        backward = self._reach(outputs, self._in, "src")
        for n in self.nodes:
            if n.name not in forward:
                raise GraphError(
                    f"node {n.name!r} is not reached from any input; connect it "
                    f"or remove it",
                    (n.name,),
                )
            if n.name not in backward:
                raise GraphError(
                    f"node {n.name!r} does not reach any output; its result would "
                    f"be unused, so connect it or remove it",
                    (n.name,),
                )

    def _reach(self, start: Iterable[str], adjacency: dict, end: str) -> set[str]:
        seen = set(start)
        stack = list(seen)
        while stack:
            name = stack.pop()
            for i in adjacency[name]:
                nxt = getattr(self.edges[i], end)
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    # ----------------------------------------------------------------- access

    def node(self, name: str) -> Node:
        """Return the node called ``name``."""
        return self.nodes[self._index[name]]

    def position(self, name: str) -> int:
        """Return the topological position of a node."""
        return self._index[name]

    def in_edges(self, name: str) -> list[int]:
        """Return the indices of the edges entering a node, in input order."""
        return self._in[name]

    def out_edges(self, name: str) -> list[int]:
        """Return the indices of the edges leaving a node."""
        return self._out[name]

    @property
    def num_gates(self) -> int:
        """Number of edge gates."""
        return len(self.gated)

    @property
    def joins(self) -> list[str]:
        """Names of the join nodes, in topological order."""
        return [n.name for n in self.nodes if n.kind == "join"]

    @property
    def inputs(self) -> list[str]:
        """Names of the input nodes."""
        return [n.name for n in self.nodes if n.kind == "input"]

    @property
    def outputs(self) -> list[str]:
        """Names of the output nodes."""
        return [n.name for n in self.nodes if n.kind == "output"]

    def gate_edge(self, gate: int) -> Edge:
        """Return the edge that carries gate ``gate``."""
        return self.edges[self.gated[gate]]

    def join_gates(self, name: str) -> list[int]:
        """Return the gate ids on the inputs of a join, in input order."""
        return [
            self.edges[i].gate for i in self._in[name] if self.edges[i].gate is not None
        ]

    def columns(self) -> list[int]:
        """Return the sorted column indices that label gated edges."""
        return sorted({self.edges[i].column for i in self.gated} - {None})

    def ties(self) -> dict[str, list[str]]:
        """Return the tie groups with more than one node, by tie name."""
        groups: dict[str, list[str]] = {}
        for n in self.nodes:
            if n.tie is not None:
                groups.setdefault(n.tie, []).append(n.name)
        return {k: v for k, v in groups.items() if len(v) > 1}

    def optional_nodes(self) -> list[str]:
        """Return the op nodes that some input-to-output path avoids.

        These are the nodes a member can leave out (residual branches,
        FractalNet convolutions); nodes on every path (stem, pooling between
        blocks, classifier) are in every member. A member's path length counts
        optional nodes.
        """
        if not hasattr(self, "_optional"):
            import networkx as nx

            # A node is on every input-to-output path exactly when it
            # dominates a sink fed by every output, in the flow graph from a
            # source that feeds every input.
            source, sink = ("source",), ("sink",)
            flow = nx.DiGraph()
            flow.add_edges_from((e.src, e.dst) for e in self.edges)
            flow.add_edges_from((source, name) for name in self.inputs)
            flow.add_edges_from((name, sink) for name in self.outputs)
            dominators = nx.immediate_dominators(flow, source)
            on_every_path, node = set(), sink
            while node != source:
                node = dominators[node]
                on_every_path.add(node)
            self._optional = [
                n.name
                for n in self.nodes
                if n.kind == "op" and n.name not in on_every_path
            ]
        return list(self._optional)

    def _reach_avoiding(self, start: set[str], avoid: str) -> set[str]:
        seen = set(start)
        stack = list(seen)
        while stack:
            name = stack.pop()
            for i in self._out[name]:
                nxt = self.edges[i].dst
                if nxt != avoid and nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def active_edges(self, bits: torch.Tensor) -> torch.Tensor:
        """Return which edges each member uses, ``[M, num_edges]`` boolean.

        Raises:
            MemberError: When a member drops every input of a join it uses.
        """
        g = self
        bits = bits.to(torch.bool)
        m = bits.shape[0]
        node_active = {n.name: torch.zeros(m, dtype=torch.bool) for n in g.nodes}
        for name in g.outputs:
            node_active[name][:] = True
        edge_active = torch.zeros(m, len(g.edges), dtype=torch.bool)
        for n in reversed(g.nodes):
            here = node_active[n.name]
            if not here.any():
                continue
            any_kept = torch.zeros(m, dtype=torch.bool)
            for i in g.in_edges(n.name):
                e = g.edges[i]
                kept = (
                    torch.ones(m, dtype=torch.bool)
                    if e.gate is None
                    else bits[:, e.gate]
                )
                edge_active[:, i] = here & kept
                node_active[e.src] |= here & kept
                any_kept |= kept
            if n.kind == "join":
                broken = here & ~any_kept
                if broken.any():
                    row = int(broken.nonzero()[0])
                    raise MemberError(
                        f"member {row} drops every input of join {n.name!r}; a member "
                        f"must keep at least one input of each join it uses"
                    )
        return edge_active

    # ---------------------------------------------------------------- export

    def to_networkx(self):
        """Return the graph as a ``networkx.DiGraph``.

        See :func:`layershare.export.to_networkx`.
        """
        from layershare.export import to_networkx

        return to_networkx(self)

    def to_pyg(self, member=None):
        """Return the graph as a ``torch_geometric.data.Data``.

        See :func:`layershare.export.to_pyg`: ``member`` keeps only the edges
        that member uses, and every node.
        """
        from layershare.export import to_pyg

        return to_pyg(self, member)

    def summary(self) -> str:
        """Return a short text description: node, edge, gate and tie counts."""
        return (
            f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges, "
            f"{self.num_gates} gates, {len(self.joins)} joins, "
            f"{len(self.ties())} tie groups)"
        )


def count_parameters(module: nn.Module) -> int:
    """Return the number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
