"""Lesion members: the full network with one or more gated edges removed.

Veit, Wilber and Belongie 2016 (arXiv 1605.06431) delete residual blocks from
a trained network at test time and measure how accuracy degrades. Here a
lesion is a member: every gate kept except the removed ones. Evaluate them
with ``ls.evaluate(model, members, x, rule="inference")`` so the untouched
branches keep the eval model's weights.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import torch

from layershare.graph import Graph
from layershare.members import Members

__all__ = ["lesion_members"]


def lesion_members(
    graph: Graph,
    k: int = 1,
    *,
    max_sets: int | None = None,
    seed: int = 0,
) -> tuple[Members, list[tuple[int, ...]]]:
    """Build the members that remove ``k`` gated edges from the full network.

    Args:
        graph: The model's graph (``model.graph``).
        k: Number of gates removed at once (default: 1).
        max_sets: Largest number of removal sets. When there are more subsets
            of size ``k``, a uniform sample of this many is drawn without
            replacement (default: ``None``, every subset).
        seed: Seed of that sample (default: 0).

    Returns:
        The members, and for each the sorted tuple of removed gate ids, in
        lexicographic order of the tuples.

    Raises:
        ValueError: When ``k`` is not between 0 and the number of gates.

    Example:
        >>> members, removed = lesion_members(Graph.chain(3))
        >>> removed
        [(0,), (1,), (2,)]
    """
    gates = graph.num_gates
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= gates:
        raise ValueError(
            f"k must be an int between 0 and {gates} (the gate count), but got {k!r}"
        )
    total = math.comb(gates, k)
    if max_sets is not None and max_sets < total:
        if max_sets < 1:
            raise ValueError(f"max_sets must be positive, but got {max_sets}")
        removed = _sample_subsets(gates, k, max_sets, seed)
    else:
        removed = list(combinations(range(gates), k))
    bits = torch.ones(len(removed), gates, dtype=torch.bool)
    for row, subset in enumerate(removed):
        bits[row, list(subset)] = False
    return Members(bits), removed


def _sample_subsets(n: int, k: int, count: int, seed: int) -> list[tuple[int, ...]]:
    """Draw ``count`` distinct k-subsets of ``range(n)`` uniformly, sorted."""
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < count:
        chosen.add(tuple(sorted(rng.choice(n, size=k, replace=False).tolist())))
    return sorted(chosen)
