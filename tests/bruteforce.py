"""Hand-built graphs and brute-force references for the sampler tests.

Everything here is written from the definitions, without the sampler's
dynamic programming: gate assignments are enumerated one by one, joins that
drop every input are rejected, and the active subgraph is found by walking
back from the outputs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from layershare.graph import Edge, Graph, Node


def fractal_graph(columns: int, blocks: int) -> Graph:
    """Build FractalNet blocks with convolutions as op nodes.

    The expansion rule is ``f_1(z) = conv(z)`` and
    ``f_{C+1}(z) = join(f_C(f_C(z)), conv(z))``, with consecutive joins merged
    into one. Column 0 is the shallowest (one convolution), column
    ``columns - 1`` the deepest. Each join input is labelled with the column
    of the convolution that feeds it. Blocks are chained through a pool op.
    """
    nodes = [Node("input", "input")]
    edges: list[Edge] = []
    counter = itertools.count()

    def conv(src: str, column: int) -> tuple[str, int]:
        name = f"conv{next(counter)}"
        nodes.append(Node(name, "op", num_params=9))
        edges.append(Edge(src, name))
        return name, column

    def close(pending: list[tuple[str, int]]) -> str:
        if len(pending) == 1:
            return pending[0][0]
        name = f"join{next(counter)}"
        nodes.append(Node(name, "join", rule="mean"))
        edges.extend(Edge(src, name, "column", column) for src, column in pending)
        return name

    def expand(depth: int, src: str, column: int) -> list[tuple[str, int]]:
        if depth == 1:
            return [conv(src, column)]
        inner = close(expand(depth - 1, src, column + 1))
        return expand(depth - 1, inner, column + 1) + [conv(src, column)]

    previous = "input"
    for block in range(blocks):
        if block:
            pool = f"pool{block}"
            nodes.append(Node(pool, "op"))
            edges.append(Edge(previous, pool))
            previous = pool
        previous = close(expand(columns, previous, 0))
    nodes.append(Node("output", "output"))
    edges.append(Edge(previous, "output"))
    return Graph(nodes, edges)


def active_edges(graph: Graph, kept: list[bool]) -> frozenset[int] | None:
    """Return the edges an assignment uses, or ``None`` if it breaks a join."""
    active_nodes = set(graph.outputs)
    used = set()
    for node in reversed(graph.nodes):
        if node.name not in active_nodes:
            continue
        incoming = graph.in_edges(node.name)
        alive = [
            i
            for i in incoming
            if graph.edges[i].gate is None or kept[graph.edges[i].gate]
        ]
        if node.kind == "join" and not alive:
            return None
        for i in alive:
            used.add(i)
            active_nodes.add(graph.edges[i].src)
    return frozenset(used)


def assignments(graph: Graph):
    """Yield every gate assignment as a list of booleans, gate ``g`` at index ``g``."""
    for bits in itertools.product((False, True), repeat=graph.num_gates):
        yield list(reversed(bits))


def distinct_members(graph: Graph) -> dict[frozenset[int], list[list[bool]]]:
    """Group the valid assignments by the active edge set they produce."""
    groups: dict[frozenset[int], list[list[bool]]] = {}
    for kept in assignments(graph):
        used = active_edges(graph, kept)
        if used is not None:
            groups.setdefault(used, []).append(kept)
    return groups


def droppath_local_probability(graph: Graph, kept: list[bool], p: float) -> float:
    """Probability of a full assignment under conditioned local drop-path.

    Each join's gates are dropped independently with probability ``p``,
    conditioned on a survivor when the join has no ungated input.
    """
    prob = 1.0
    for join in graph.joins:
        gates = graph.join_gates(join)
        if not gates:
            continue
        s = sum(kept[g] for g in gates)
        k = len(gates)
        ungated = len(graph.in_edges(join)) > k
        if not ungated and s == 0:
            return 0.0
        mass = (1 - p) ** s * p ** (k - s)
        prob *= mass if ungated else mass / (1 - p**k)
    return prob


def longest_path(graph: Graph, used: frozenset[int]) -> int:
    """Return the number of optional op nodes on the longest path through ``used``.

    Optional nodes are computed here from the definition: op nodes that some
    input-to-output path of the full graph avoids.
    """
    optional = set()
    for node in graph.nodes:
        if node.kind != "op":
            continue
        seen, stack = set(graph.inputs), list(graph.inputs)
        while stack:
            name = stack.pop()
            for i in graph.out_edges(name):
                nxt = graph.edges[i].dst
                if nxt != node.name and nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        if seen & set(graph.outputs):
            optional.add(node.name)
    depth = {name: 0 for name in graph.inputs}
    for node in graph.nodes:
        sources = [graph.edges[i].src for i in graph.in_edges(node.name) if i in used]
        reached = [depth[s] for s in sources if s in depth]
        if reached:
            depth[node.name] = max(reached) + (node.name in optional)
    return max(depth[o] for o in graph.outputs)


def poisson_binomial(rates: list[float]) -> np.ndarray:
    """Distribution of the number of successes of independent Bernoulli trials."""
    probs = np.array([1.0])
    for r in rates:
        probs = np.convolve(probs, [1 - r, r])
    return probs


def swapout_key(pairs: list[list[tuple[bool, bool]]]) -> tuple:
    """Return the unit-level member of one swapout assignment.

    ``pairs[l][u]`` is ``(Θ1, Θ2)`` of unit ``u`` in block ``l`` of a residual
    chain with dense branches. The unit graph has an edge into unit ``u`` of
    block ``l`` from unit ``u`` of its input when ``Θ1``, and from the branch
    node when ``Θ2``. The branch node reads every unit of its input, and the
    head reads every unit of the last block. The member is the gates of the
    units that reach the head, block by block.
    """
    blocks, units = len(pairs), len(pairs[0])
    reach = [set() for _ in range(blocks)]
    reach[-1] = set(range(units))
    for block in range(blocks - 1, 0, -1):
        branch_used = any(pairs[block][u][1] for u in reach[block])
        for u in range(units):
            skip_used = u in reach[block] and pairs[block][u][0]
            if branch_used or skip_used:
                reach[block - 1].add(u)
    return tuple(
        tuple((u, pairs[block][u]) for u in sorted(reach[block]))
        for block in range(blocks)
    )


def swapout_unit_members(
    units: int, patterns: list[list[tuple[tuple[bool, bool], float]]]
) -> dict[tuple, float]:
    """Enumerate the unit-level swapout members of a residual chain.

    Args:
        units: Units per block.
        patterns: Per block, the allowed ``(Θ1, Θ2)`` pairs with their
            probabilities.

    Returns:
        Each member (see :func:`swapout_key`) with its total probability.
    """
    members: dict[tuple, float] = {}
    per_block = [list(itertools.product(p, repeat=units)) for p in patterns]
    for choice in itertools.product(*per_block):
        key = swapout_key([[pair for pair, _ in block] for block in choice])
        prob = math.prod(p for block in choice for _, p in block)
        members[key] = members.get(key, 0.0) + prob
    return members
