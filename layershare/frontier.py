"""Frontier dynamic programming: exact counts, enumeration, probabilities, lengths.

A member is fixed by the keep pattern of every join it uses. Starting from
the outputs, the *frontier* is the set of active nodes whose inputs are not
yet decided. Each step takes the topologically last node of the frontier and
replaces it by the predecessors it keeps under one of its patterns. That node
comes after every other frontier node, so all its active successors are
already decided and its pattern is chosen exactly once per member. The gates
of joins that no active path reaches are never visited, which sums them out.
Distinct pattern sequences give distinct active subgraphs, so counting
sequences counts distinct members.

Frontiers repeat (after a residual block, both patterns leave the same
frontier), so memoizing on them keeps the work small for block-structured
graphs (residual chains, FractalNet) whatever their member count. The
frontiers form a DAG, which is explored once, in decreasing order of their
last node, without recursion.

Canonical order: gate ids grow with the topological position of their join,
and the last node's gates are higher than every gate decided after it. So
visiting a node's patterns by increasing code yields members by increasing
integer code.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from layershare.graph import Graph

__all__ = ["Frontiers", "Option"]

Frontier = frozenset


@dataclass(frozen=True)
class Option:
    """One keep pattern of a node.

    Attributes:
        gates: The gates the pattern keeps.
        code: Sum of ``2**g`` over the kept gates.
        prob: Probability of the pattern under the scheme's local rule.
        sources: Topological positions of the kept predecessors that are not
            graph inputs.
        reaches_input: Whether a kept predecessor is a graph input.
    """

    gates: tuple[int, ...]
    code: int
    prob: float
    sources: frozenset[int]
    reaches_input: bool


@contextmanager
def _recursion_limit(limit: int):
    """Raise the recursion limit for a pure-Python recursion of known depth."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class Frontiers:
    """The frontier DAG of a graph whose joins choose among keep patterns.

    Args:
        graph: The graph.
        choices: For each join, its patterns (over its gates in input order)
            with their probabilities, as :meth:`Scheme.join_choices` returns.
    """

    def __init__(self, graph: Graph, choices: dict[str, list]) -> None:
        self.graph = graph
        self.num_gates = graph.num_gates
        inputs = {graph.position(name) for name in graph.inputs}
        self.optional = {graph.position(name) for name in graph.optional_nodes()}
        self.options: list[list[Option]] = []
        self.by_pattern: list[dict[tuple[bool, ...], Option]] = []
        for node in graph.nodes:
            preds = [graph.edges[i] for i in graph.in_edges(node.name)]
            patterns = choices.get(node.name, [((), 1.0)])
            options, by_pattern = [], {}
            for pattern, prob in patterns:
                kept, gates, index = [], [], 0
                for edge in preds:
                    if edge.gate is None:
                        kept.append(graph.position(edge.src))
                        continue
                    if pattern[index]:
                        kept.append(graph.position(edge.src))
                        gates.append(edge.gate)
                    index += 1
                option = Option(
                    gates=tuple(gates),
                    code=sum(1 << g for g in gates),
                    prob=float(prob),
                    sources=frozenset(p for p in kept if p not in inputs),
                    reaches_input=any(p in inputs for p in kept),
                )
                options.append(option)
                by_pattern[tuple(bool(b) for b in pattern)] = option
            options.sort(key=lambda o: o.code)
            self.options.append(options)
            self.by_pattern.append(by_pattern)
        self.start: Frontier = frozenset(graph.position(o) for o in graph.outputs)
        self._order: list[Frontier] | None = None
        self._next: dict[Frontier, list[Frontier]] = {}
        self._completions: dict[bool, dict[Frontier, int]] = {}

    # ------------------------------------------------------------- explore

    def _explore(self) -> list[Frontier]:
        """Visit every reachable frontier once, in decreasing order of last node."""
        if self._order is not None:
            return self._order
        order: list[Frontier] = []
        pending: dict[int, set[Frontier]] = {max(self.start): {self.start}}
        heap = [-max(self.start)]
        while heap:
            last = -heapq.heappop(heap)
            for frontier in pending.pop(last):
                rest = frontier - {last}
                nexts = []
                for option in self.options[last]:
                    nxt = rest | option.sources
                    nexts.append(nxt)
                    if not nxt:
                        continue
                    top = max(nxt)
                    if top not in pending:
                        pending[top] = set()
                        heapq.heappush(heap, -top)
                    pending[top].add(nxt)
                self._next[frontier] = nexts
                order.append(frontier)
        self._order = order
        return order

    def completions(self, positive: bool = False) -> dict[Frontier, int]:
        """Return the number of distinct members below each frontier.

        Args:
            positive: Count only patterns of nonzero probability.
        """
        if positive in self._completions:
            return self._completions[positive]
        below: dict[Frontier, int] = {frozenset(): 1}
        for frontier in reversed(self._explore()):
            last = max(frontier)
            below[frontier] = sum(
                below[nxt]
                for option, nxt in zip(
                    self.options[last], self._next[frontier], strict=True
                )
                if not positive or option.prob > 0
            )
        self._completions[positive] = below
        return below

    def count(self, positive: bool = False) -> int:
        """Return the number of distinct members (all, or of nonzero probability)."""
        return self.completions(positive)[self.start]

    # ----------------------------------------------------------- enumerate

    def chunks(self, chunk_size: int) -> Iterator[np.ndarray]:
        """Yield the members' keep bits by increasing code, ``chunk_size`` at most.

        Subtrees of at most ``chunk_size`` members are built whole with numpy;
        above that, a depth-first walk splits them by the last node's pattern.
        """
        below = self.completions()
        buffer: list[np.ndarray] = []
        size = 0
        stack: list[tuple[Frontier, tuple[int, ...]]] = [(self.start, ())]
        while stack:
            frontier, prefix = stack.pop()
            total = below[frontier]
            if total > chunk_size:
                last = max(frontier)
                pairs = zip(self.options[last], self._next[frontier], strict=True)
                for option, nxt in reversed(list(pairs)):
                    stack.append((nxt, prefix + option.gates))
                continue
            if size + total > chunk_size:
                yield np.concatenate(buffer)
                buffer, size = [], 0
            with _recursion_limit(2 * len(self.options) + 1000):
                block = self._materialize(frontier, {})
            if prefix:
                block = block.copy()
                block[:, list(prefix)] = True
            buffer.append(block)
            size += total
        if buffer:
            yield np.concatenate(buffer)

    def _materialize(self, frontier: Frontier, memo: dict) -> np.ndarray:
        """Return the keep bits of every member below a frontier, by code."""
        if frontier in memo:
            return memo[frontier]
        if not frontier:
            return np.zeros((1, self.num_gates), dtype=bool)
        last = max(frontier)
        rest = frontier - {last}
        blocks = []
        for option in self.options[last]:
            block = self._materialize(rest | option.sources, memo)
            if option.gates:
                block = block.copy()
                block[:, list(option.gates)] = True
            blocks.append(block)
        result = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        memo[frontier] = result
        return result

    # ---------------------------------------------------------- probability

    def probability(self, bits: np.ndarray) -> float:
        """Return the local-rule probability of one canonical member's keep bits."""
        frontier, prob = self.start, 1.0
        while frontier:
            last = max(frontier)
            gates = [
                e.gate
                for e in (
                    self.graph.edges[i]
                    for i in self.graph.in_edges(self.graph.nodes[last].name)
                )
                if e.gate is not None
            ]
            option = self.by_pattern[last].get(tuple(bool(bits[g]) for g in gates))
            if option is None:
                return 0.0
            prob *= option.prob
            frontier = (frontier - {last}) | option.sources
        return prob

    # --------------------------------------------------------- path lengths

    def lengths(
        self, weight: Callable[[Option], float | int]
    ) -> dict[int, float | int]:
        """Return the total weight of members by path length.

        A member's weight is the product of ``weight(option)`` over its
        patterns. Its path length is the number of optional nodes on its
        longest active input-to-output path. With ``weight`` returning 1 the
        result counts members. With the pattern probabilities it is the
        length distribution under the local rule.
        """
        start = (frozenset((p, 0) for p in self.start), 0)
        pending: dict[int, dict] = {max(self.start): {start: 1}}
        heap = [-max(self.start)]
        result: dict[int, float | int] = {}
        while heap:
            last = -heapq.heappop(heap)
            for (items, best), value in pending.pop(last).items():
                depth = dict(items)
                here = depth.pop(last) + (1 if last in self.optional else 0)
                for option in self.options[last]:
                    w = weight(option)
                    if not w:
                        continue
                    nxt = dict(depth)
                    for src in option.sources:
                        nxt[src] = max(nxt.get(src, here), here)
                    reached = max(best, here) if option.reaches_input else best
                    if not nxt:
                        result[reached] = result.get(reached, 0) + value * w
                        continue
                    key = (frozenset(nxt.items()), reached)
                    top = max(nxt)
                    if top not in pending:
                        pending[top] = {}
                        heapq.heappush(heap, -top)
                    pending[top][key] = pending[top].get(key, 0) + value * w
        return result
