"""Time the sampler's exact enumeration against brute force, in one run.

Run with ``python benchmarks/sampler.py [blocks]`` (default: 20 blocks). It
prints, for a chain of residual blocks:

* ``Sampler.enumerate()``: the frontier dynamic programming, materialized
  with numpy;
* brute force: every gate assignment, canonicalized with
  ``Graph.active_edges`` in batches and reduced to distinct rows, which is
  what enumeration costs without the dynamic programming.

It also times ``count()`` on FractalNet-like blocks too large to enumerate.
The figures depend on the machine and its load; compare the two columns of
one run, not runs on different machines.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

import layershare as ls
from layershare.graph import Edge, Graph, Node


def brute_force(graph: Graph, batch: int = 1 << 16) -> int:
    """Enumerate all gate assignments and count distinct active subgraphs."""
    gates = graph.num_gates
    distinct = set()
    codes = np.arange(2**gates, dtype=np.int64)
    for start in range(0, len(codes), batch):
        rows = codes[start : start + batch, None] >> np.arange(gates) & 1
        active = graph.active_edges(torch.from_numpy(rows.astype(bool)))
        packed = np.packbits(active.numpy(), axis=1)
        distinct.update(row.tobytes() for row in packed)
    return len(distinct)


def fractal_graph(columns: int, blocks: int) -> Graph:
    """Build FractalNet blocks (see ``tests/bruteforce.py`` for the rule)."""
    nodes = [Node("input", "input")]
    edges: list[Edge] = []
    counter = itertools.count()

    def conv(src: str, column: int) -> tuple[str, int]:
        name = f"conv{next(counter)}"
        nodes.append(Node(name))
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
            nodes.append(Node(f"pool{block}"))
            edges.append(Edge(previous, f"pool{block}"))
            previous = f"pool{block}"
        previous = close(expand(columns, previous, 0))
    nodes.append(Node("output", "output"))
    edges.append(Edge(previous, "output"))
    return Graph(nodes, edges)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blocks", type=int, nargs="?", default=20)
    args = parser.parse_args()

    graph = Graph.chain(args.blocks)
    sampler = ls.Sampler(graph, ls.StochasticDepth(), max_members=2**args.blocks)
    members, fast = timed(sampler.enumerate)
    count, slow = timed(lambda: brute_force(graph))
    print(f"chain of {args.blocks} residual blocks, {len(members)} members")
    print(f"  Sampler.enumerate()   {fast:8.2f} s")
    print(f"  brute force           {slow:8.2f} s  ({count} distinct)")

    for columns, blocks in ((4, 3), (5, 4)):
        big = fractal_graph(columns, blocks)
        total, seconds = timed(ls.Sampler(big, ls.DropPath()).count)
        print(
            f"fractal {columns} columns x {blocks} blocks: count() = {total} "
            f"in {seconds:.3f} s ({big.num_gates} gates, 2**{big.num_gates} "
            f"assignments)"
        )


if __name__ == "__main__":
    main()
