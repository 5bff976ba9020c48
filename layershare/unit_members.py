"""Exact counts and probabilities of unit-level members (swapout).

With unit gates, join ``l`` computes ``y_l[u] = Θ1[u] x[u] + Θ2[u] F_l(x)[u]``
for every unit ``u``. A gate matters only if its unit reaches the output, so
a member is the restriction of a gate assignment to those units, just as an
edge-gate member ignores gates on dead edges.

Take a chain of such joins with *dense* branches (every output unit of
``F_l`` depends on every unit of its input) and a head that uses every unit
of the last join. The units that reach the output then follow one rule,
applied from the last join down. At join ``l`` with used units ``U``:

* if some ``u`` in ``U`` has ``Θ2[u] = 1``, the branch uses every unit of its
  input, so all units below are used;
* otherwise only the units of ``U`` with ``Θ1[u] = 1`` pass down the skip.

Hence ``N_l(k)``, the number of members below join ``l`` when ``k`` of its
units are used, satisfies ``N_l(0) = 1`` and, for ``k >= 1``, with ``P`` the
per-unit patterns, ``P0`` those with ``Θ2 = 0``, ``n`` the unit count below
and ``[c]`` 1 when ``c`` holds:

    N_l(k) = (|P|**k - |P0|**k) N_{l-1}(n)
             + sum_j C(k, j) [(1, 0) in P]**j [(0, 0) in P]**(k - j) N_{l-1}(j)

summed over the join's edge patterns when its branch also has an edge gate.
When ops (treated as dense) sit between join ``l - 1`` and the skip of join
``l``, ``N_{l-1}(j)`` is replaced by ``N_{l-1}(n)`` for ``j >= 1``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from layershare.errors import MemberError, UnsupportedError
from layershare.graph import Graph
from layershare.schemes import Scheme
from layershare.unit_gates import member_masks

__all__ = ["UnitChain"]

Pair = tuple[bool, bool]

_UNSUPPORTED = (
    "exact unit-level counts and probabilities are supported for a chain of "
    "unit-gated residual joins with dense branches (every output unit of a "
    "branch depends on every unit of its input, as for fully connected branches)"
)


class UnitChain:
    """Unit-level members of a chain of unit-gated residual joins.

    Args:
        graph: The graph.
        scheme: A scheme with unit gates (see :class:`~layershare.Scheme`).

    Raises:
        UnsupportedError: From the counting methods, when the graph is not a
            chain of unit-gated residual joins, the scheme does not declare
            dense branches, or unit counts are missing.
    """

    def __init__(self, graph: Graph, scheme: Scheme) -> None:
        self.graph = graph
        self.scheme = scheme
        self.joins = scheme.unit_joins(graph)
        self.units = scheme.unit_counts(graph)
        self._roles: dict[str, tuple[int, int]] = {}
        self._effective: dict[str, dict[tuple, dict[Pair, float]]] = {}
        self._edge_prob: dict[str, dict[tuple, float]] = {}
        for join in self.joins:
            roles = [graph.edges[i].role for i in graph.in_edges(join)]
            self._roles[join] = (roles.index("skip"), roles.index("branch"))
            self._prepare(join)
        self._structure: list[bool] | str | None = None

    def _prepare(self, join: str) -> None:
        """Tabulate the effective (skip, branch) unit pairs under each edge pattern."""
        skip, branch = self._roles[join]
        edges = [self.graph.edges[i] for i in self.graph.in_edges(join)]
        effective: dict[tuple, dict[Pair, float]] = {}
        edge_prob: dict[tuple, float] = {}
        for edge_pattern, edge_p in self.scheme.join_choices(self.graph, join):
            edge_pattern = tuple(bool(b) for b in edge_pattern)
            edge_prob[edge_pattern] = edge_p
            opened, index = [], 0
            for edge in edges:
                opened.append(True if edge.gate is None else edge_pattern[index])
                index += edge.gate is not None
            pairs: dict[Pair, float] = {}
            for unit_pattern, unit_p in self.scheme.unit_patterns(self.graph, join):
                kept = [
                    bool(u) and o for u, o in zip(unit_pattern, opened, strict=True)
                ]
                pair = (kept[skip], kept[branch])
                pairs[pair] = pairs.get(pair, 0.0) + unit_p
            effective[edge_pattern] = pairs
        self._effective[join] = effective
        self._edge_prob[join] = edge_prob

    # ------------------------------------------------------------- checks

    def _units(self) -> dict[str, int]:
        if self.units is None:
            raise UnsupportedError(
                f"counting unit-level members needs the number of units at each "
                f"join; pass units= to {type(self.scheme).__name__} (the number "
                f"of elements of one sample's tensor at the join)"
            )
        return self.units

    def _chain(self) -> list[bool]:
        """Check that exact unit-level counting applies.

        Returns:
            For each unit-gated join, whether its skip comes straight from the
            previous one, so that their units match one to one.
        """
        if isinstance(self._structure, list):
            return self._structure
        if not self.scheme.dense:
            raise UnsupportedError(
                f"{_UNSUPPORTED}; {type(self.scheme).__name__} does not declare "
                f"dense branches (pass dense=True if they are). "
                f"count(assignments=True) works for any graph"
            )
        identity = [self._check_join(index) for index in range(len(self.joins))]
        for join in self.joins:
            self._check_patterns(join)
        self._structure = identity
        return identity

    def _check_join(self, index: int) -> bool:
        """Check one join of the chain; return whether its skip is the previous join."""
        g = self.graph
        join = self.joins[index]
        inputs, outputs = set(g.inputs), set(g.outputs)
        if g._reach_avoiding(inputs, join) & outputs:
            raise UnsupportedError(
                f"{_UNSUPPORTED}, but some input-to-output path avoids join {join!r}"
            )

        # Every path into the branch must pass through the skip's source.
        skip, branch = (g.edges[g.in_edges(join)[i]] for i in self._roles[join])
        around = g._reach_avoiding(inputs - {skip.src}, skip.src)
        if branch.src != skip.src and branch.src in around:
            raise UnsupportedError(
                f"{_UNSUPPORTED}, but the branch of join {join!r} does not start "
                f"from its skip input {skip.src!r}"
            )

        previous = self.joins[index - 1] if index else None
        if previous is None or skip.src != previous:
            return False
        units = self._units()
        if units[join] != units[previous]:
            raise UnsupportedError(
                f"join {join!r} has {units[join]} units but its skip comes from "
                f"join {previous!r} with {units[previous]}; pass the unit counts "
                f"of both"
            )
        return True

    def _check_patterns(self, join: str) -> None:
        """Check that different edge patterns never give the same unit pattern."""
        patterns = list(self._effective[join].values())
        for a in range(len(patterns)):
            for b in range(a):
                if set(patterns[a]) & set(patterns[b]):
                    raise UnsupportedError(
                        f"{_UNSUPPORTED}; at join {join!r} two edge patterns give "
                        f"the same unit pattern, which these counts do not merge"
                    )

    # -------------------------------------------------------------- count

    def count_assignments(self) -> int:
        """Return the number of unit-gate patterns, ``prod |P_l| ** units_l``."""
        units = self._units()
        total = 1
        for join in self.joins:
            total *= len(self.scheme.unit_patterns(self.graph, join)) ** units[join]
        return total

    def count(self, positive: bool = False) -> int:
        """Return the exact number of distinct unit-level members.

        Args:
            positive: Count only members of nonzero probability.
        """
        identity = self._chain()
        units = self._units()
        below: list[int] = []
        for index, join in enumerate(self.joins):
            n = units[join]
            if index == 0:
                below = [1] * (n + 1)
            everything = below[-1]

            # under[j]: members below when j units pass down the skip alone.
            if identity[index]:
                under = below[: n + 1]
            else:
                under = [1] + [everything] * n

            # Binomial transform of `under`, for skips both on and off.
            transform, row = [], [1]
            for _ in range(n + 1):
                transform.append(sum(c * u for c, u in zip(row, under, strict=False)))
                row = [a + b for a, b in zip([0, *row], [*row, 0], strict=True)]

            counts = [1] + [0] * n
            for k in range(1, n + 1):
                for edge_pattern, pairs in self._effective[join].items():
                    if positive and self._edge_prob[join][edge_pattern] == 0:
                        continue
                    if positive:
                        pairs = {pair: p for pair, p in pairs.items() if p > 0}
                    size = len(pairs)
                    no_branch = sum(1 for pair in pairs if not pair[1])
                    counts[k] += (size**k - no_branch**k) * everything
                    skip_on = (True, False) in pairs
                    skip_off = (False, False) in pairs
                    if skip_on and skip_off:
                        counts[k] += transform[k]
                    elif skip_on:
                        counts[k] += under[k]
                    elif skip_off:
                        counts[k] += 1
            below = counts
        return below[-1]

    # ----------------------------------------------------- one member

    def _walk(self, bits: np.ndarray, seed: int | None) -> Iterator[tuple]:
        """Yield, from the last join down, each used join's edge pattern and
        the effective skip and branch masks of its used units."""
        if seed is None:
            raise MemberError(
                "the scheme has unit gates, so the member needs a unit-gate seed; "
                "draw members with Sampler(model, scheme).sample(n, seed=...)"
            )
        identity = self._chain()
        units = self._units()
        used = np.ones(units[self.joins[-1]], dtype=bool)
        for index in range(len(self.joins) - 1, -1, -1):
            if not used.any():
                return
            join = self.joins[index]
            gates = self.graph.join_gates(join)
            edge_pattern = tuple(bool(bits[g]) for g in gates)
            masks = member_masks(self.scheme, self.graph, join, seed, units[join])
            masks = masks.numpy().copy()
            edges = [self.graph.edges[i] for i in self.graph.in_edges(join)]
            gated = [i for i, e in enumerate(edges) if e.gate is not None]
            for position, kept in zip(gated, edge_pattern, strict=True):
                masks[position] &= kept
            skip, branch = (masks[i][used] for i in self._roles[join])
            yield join, edge_pattern, skip, branch
            if index == 0:
                return
            below = units[self.joins[index - 1]]
            if branch.any():
                used = np.ones(below, dtype=bool)
            elif identity[index]:
                used = used & masks[self._roles[join][0]]
            else:
                used = np.full(below, skip.any())

    def probability(self, bits: np.ndarray, seed: int | None) -> float:
        """Return the probability of a member, summing out unused units' gates."""
        prob = 1.0
        for join, edge_pattern, skip, branch in self._walk(bits, seed):
            prob *= self._edge_prob[join].get(edge_pattern, 0.0)
            table = self._effective[join].get(edge_pattern, {})
            for pair, p in table.items():
                count = int(np.count_nonzero((skip == pair[0]) & (branch == pair[1])))
                prob *= p**count
            known = sum(
                int(np.count_nonzero((skip == s) & (branch == b))) for s, b in table
            )
            if known < skip.size:
                return 0.0
        return prob

    def key(self, bits: np.ndarray, seed: int | None) -> bytes:
        """Return bytes that are equal exactly for equal unit-level members."""
        parts = []
        for _, edge_pattern, skip, branch in self._walk(bits, seed):
            parts.append(bytes(edge_pattern))
            parts.append(np.packbits(skip).tobytes())
            parts.append(np.packbits(branch).tobytes())
            parts.append(b"|")
        return b"".join(parts)
