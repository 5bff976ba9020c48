"""The sampler: count, enumerate, sample and weigh the members of an ensemble.

A member is an assignment of all edge gates; two assignments that activate
the same input-to-output subgraph are one member. Exact counts and
probabilities come from dynamic programming over *frontiers*: starting from
the output, the topologically last node of the frontier is replaced by the
inputs it keeps. Because that node comes after every other frontier node, its
choice is made once for all paths through it, and dead gates (on edges no
active path uses) are never visited, so they are summed out. The number of
distinct frontiers stays small for the block-structured graphs of residual
nets and FractalNet, whatever their member count.

Canonical order: members are enumerated by increasing integer code, where
gate ``g`` (numbered in topological order of the joins) has weight ``2**g``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor, nn

from layershare.errors import MemberError, TooManyMembersError
from layershare.graph import Graph
from layershare.members import Member, Members
from layershare.random import uniforms
from layershare.schemes import Scheme

__all__ = ["DEFAULT_MAX_MEMBERS", "Sampler"]

DEFAULT_MAX_MEMBERS = 2**20

Frontier = frozenset


@contextmanager
def _deep_recursion(limit: int):
    """Raise the recursion limit for the frontier recursion on long chains."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class Sampler:
    """A graph and a scheme: the members of an implicit ensemble.

    Args:
        model: A model with a ``graph`` attribute (such as any
            :class:`~layershare.nn.GatedModel`) or a
            :class:`~layershare.graph.Graph`.
        scheme: The sampling scheme.
        max_members: Largest ensemble :meth:`enumerate` accepts
            (default: ``2**20``).

    Example:
        >>> sampler = Sampler(Graph.chain(3), StochasticDepth(p_last=0.5))
        >>> sampler.count()
        8
    """

    def __init__(
        self,
        model: nn.Module | Graph,
        scheme: Scheme,
        *,
        max_members: int = DEFAULT_MAX_MEMBERS,
    ) -> None:
        if isinstance(model, Graph):
            graph = model
        elif isinstance(getattr(model, "graph", None), Graph):
            graph = model.graph
        else:
            raise TypeError(
                f"Sampler needs a layershare Graph or a model with a `graph` "
                f"attribute (a GatedModel, or ls.trace(module)), but got "
                f"{type(model).__name__}"
            )
        if not isinstance(scheme, Scheme):
            raise TypeError(
                f"scheme must be a layershare Scheme, but got {type(scheme).__name__}"
            )
        if not isinstance(max_members, int) or max_members < 1:
            raise ValueError(
                f"max_members must be a positive int, but got {max_members!r}"
            )
        scheme.validate(graph)
        self.graph = graph
        self.scheme = scheme
        self.max_members = max_members
        self._prepare()

    def _prepare(self) -> None:
        g = self.graph
        self._pos = {n.name: i for i, n in enumerate(g.nodes)}
        self._inputs = frozenset(g.inputs)
        self._optional = set(g.optional_nodes())
        self._preds: dict[str, list[tuple[str, int | None]]] = {}
        for n in g.nodes:
            self._preds[n.name] = [
                (g.edges[i].src, g.edges[i].gate) for i in g.in_edges(n.name)
            ]
        self._choices: dict[str, list[tuple[tuple[bool, ...], float, int]]] = {}
        for join in g.joins:
            gates = g.join_gates(join)
            choices = []
            for pattern, prob in self.scheme.join_choices(g, join):
                code = sum(
                    1 << gate for gate, kept in zip(gates, pattern, strict=True) if kept
                )
                choices.append((pattern, prob, code))
            self._choices[join] = sorted(choices, key=lambda c: c[2])
        self._limit = 10 * len(g.nodes) + 1000

    # -------------------------------------------------------------- frontier

    def _last(self, frontier: Frontier) -> str | None:
        """Return the topologically last non-input node of a frontier."""
        rest = frontier - self._inputs
        return max(rest, key=self._pos.__getitem__) if rest else None

    def _expand(self, node: str, pattern: tuple[bool, ...] | None) -> list[str]:
        """Return the predecessors a node keeps under a gate pattern."""
        kept, index = [], 0
        for src, gate in self._preds[node]:
            if gate is None:
                kept.append(src)
                continue
            if pattern[index]:
                kept.append(src)
            index += 1
        return kept

    def _steps(self, frontier: Frontier):
        """Yield ``(pattern, probability, code, next frontier)`` for the last node."""
        node = self._last(frontier)
        rest = frontier - {node}
        if node in self._choices:
            for pattern, prob, code in self._choices[node]:
                yield pattern, prob, code, rest | frozenset(self._expand(node, pattern))
            return
        yield None, 1.0, 0, rest | frozenset(src for src, _ in self._preds[node])

    def _start(self) -> Frontier:
        return frozenset(self.graph.outputs)

    # ----------------------------------------------------------------- count

    def count(self, assignments: bool = False) -> int:
        """Count the members exactly, by dynamic programming (never by enumeration).

        Args:
            assignments: Count raw gate assignments allowed by the join
                constraints instead of distinct members (default: ``False``).

        Returns:
            The count as a Python ``int``. Members of probability zero under
            the scheme's rates (at ``p = 0`` or ``local = 1``, say) are counted.
        """
        if assignments:
            total = 1
            for join in self.graph.joins:
                total *= len(self._structural_choices(join))
            return total
        memo: dict[Frontier, int] = {}
        with _deep_recursion(self._limit):
            return self._count(self._start(), memo)

    def _structural_choices(self, join: str) -> list[tuple[bool, ...]]:
        """Return every keep pattern the join's constraint allows, whatever the rates."""
        k = len(self.graph.join_gates(join))
        ungated = len(self.graph.in_edges(join)) > k
        patterns = []
        for code in range(2**k):
            pattern = tuple((code >> i) & 1 == 1 for i in range(k))
            if ungated or any(pattern):
                patterns.append(pattern)
        return patterns

    def _count(self, frontier: Frontier, memo: dict) -> int:
        if frontier <= self._inputs:
            return 1
        if frontier in memo:
            return memo[frontier]
        node = self._last(frontier)
        rest = frontier - {node}
        if node in self._choices:
            total = sum(
                self._count(rest | frozenset(self._expand(node, pattern)), memo)
                for pattern in self._structural_choices(node)
            )
        else:
            total = self._count(rest | frozenset(s for s, _ in self._preds[node]), memo)
        memo[frontier] = total
        return total

    # ------------------------------------------------------------- enumerate

    def enumerate(self, chunk_size: int | None = None) -> Members:
        """Return every distinct member once, in canonical order (increasing code).

        Args:
            chunk_size: Members materialized at a time (default: all at once).

        Raises:
            TooManyMembersError: When the count exceeds ``max_members``.
        """
        chunks = list(self.iter_members(chunk_size or self.max_members))
        if not chunks:
            return Members(torch.zeros(0, self.graph.num_gates, dtype=torch.bool))
        return Members(torch.cat([c.bits for c in chunks]))

    def iter_members(self, chunk_size: int = 65536) -> Iterator[Members]:
        """Yield every distinct member in canonical order, in chunks of at most ``chunk_size``.

        Raises:
            TooManyMembersError: When the count exceeds ``max_members``.
        """
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(
                f"chunk_size must be a positive int, but got {chunk_size!r}"
            )
        total = self.count()
        if total > self.max_members:
            raise TooManyMembersError(total, self.max_members)
        counts: dict[Frontier, int] = {}
        with _deep_recursion(self._limit):
            yield from self._iter(self._start(), 0, chunk_size, counts)

    def _iter(self, frontier: Frontier, prefix: int, chunk: int, counts: dict):
        if self._count(frontier, counts) <= chunk:
            codes = self._materialize(frontier, {})
            yield Members.from_codes([prefix | c for c in codes], self.graph.num_gates)
            return
        for pattern, _, code, nxt in self._all_steps(frontier):
            yield from self._iter(nxt, prefix | code, chunk, counts)

    def _all_steps(self, frontier: Frontier):
        """Like :meth:`_steps`, but over every structurally allowed pattern."""
        node = self._last(frontier)
        rest = frontier - {node}
        if node in self._choices:
            gates = self.graph.join_gates(node)
            for pattern in self._structural_choices(node):
                code = sum(
                    1 << g for g, kept in zip(gates, pattern, strict=True) if kept
                )
                yield pattern, None, code, rest | frozenset(self._expand(node, pattern))
            return
        yield None, None, 0, rest | frozenset(src for src, _ in self._preds[node])

    def _materialize(self, frontier: Frontier, memo: dict) -> list[int]:
        """Return the codes of all members below a frontier, sorted."""
        if frontier <= self._inputs:
            return [0]
        if frontier in memo:
            return memo[frontier]
        codes: list[int] = []
        for _, _, code, nxt in self._all_steps(frontier):
            codes.extend(code | c for c in self._materialize(nxt, memo))
        memo[frontier] = codes
        return codes

    # ---------------------------------------------------------------- sample

    def draw_bits(self, seed: int, rows: np.ndarray, stream: int = 0) -> np.ndarray:
        """Draw canonical keep bits ``[len(rows), num_gates]`` for row counters ``rows``."""
        u = uniforms(
            seed, np.asarray(rows), self.scheme.num_uniforms(self.graph), stream
        )
        bits = self.scheme.draw(self.graph, u)
        return self.canonical(torch.from_numpy(bits)).numpy()

    def sample(self, n: int, seed: int = 0, unique: bool = False) -> Members:
        """Draw members by Monte Carlo, reproducibly.

        Member ``i`` depends only on ``seed`` and ``i``: not on ``n``, chunking,
        batch size or device.

        Args:
            n: Number of members.
            seed: Non-negative integer seed (default: 0).
            unique: Draw without repetition, keeping the first ``n`` distinct
                members of the draw sequence (default: ``False``).

        Raises:
            ValueError: When ``unique=True`` and ``n`` exceeds the number of
                members of nonzero probability, or the draws stop finding
                new members.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, but got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, but got {seed!r}")
        if not unique:
            return Members(torch.from_numpy(self.draw_bits(seed, np.arange(n))))
        return self._sample_unique(n, seed)

    def _sample_unique(self, n: int, seed: int) -> Members:
        total = self.count()
        if n > total:
            raise ValueError(
                f"cannot draw {n} distinct members from an ensemble of {total}; "
                f"ask for at most {total} or use unique=False"
            )
        seen: dict[bytes, int] = {}
        rows: list[np.ndarray] = []
        start, block, limit = 0, max(256, 2 * n), 1000 * max(n, 1) + 10**6
        while len(rows) < n:
            if start > limit:
                raise ValueError(
                    f"found only {len(rows)} distinct members of the {n} requested "
                    f"after {start} draws; some members have probability zero or "
                    f"almost zero under {self.scheme!r}"
                )
            bits = self.draw_bits(seed, np.arange(start, start + block))
            for row in bits:
                key = row.tobytes()
                if key not in seen:
                    seen[key] = len(rows)
                    rows.append(row)
                    if len(rows) == n:
                        break
            start += block
        return Members(
            torch.from_numpy(np.stack(rows))
            if rows
            else torch.zeros(0, self.graph.num_gates, dtype=torch.bool)
        )

    # ---------------------------------------------------------- canonical form

    def active(self, bits: Tensor) -> Tensor:
        """Return which edges each member uses, ``[M, num_edges]`` boolean.

        Raises:
            MemberError: When a member drops every input of a join it uses.
        """
        return self.graph.active_edges(self._check_bits(bits))

    def canonical(self, bits: Tensor) -> Tensor:
        """Return keep bits with the gates of unused edges set to 0."""
        edge_active = self.active(bits)
        return (
            edge_active[:, self.graph.gated] if self.graph.num_gates else bits.clone()
        )

    def _check_bits(self, bits: Tensor) -> Tensor:
        if bits.dim() != 2 or bits.shape[1] != self.graph.num_gates:
            raise MemberError(
                f"members have {bits.shape[-1] if bits.dim() else 0} gates, but the "
                f"graph has {self.graph.num_gates}; use members of this graph"
            )
        return bits.to(torch.bool)

    # ------------------------------------------------------------ probability

    def probability(self, member: Member | Members) -> float:
        """Return the exact probability of one member under the scheme.

        Gates on unused edges are summed out. Under mixed drop-path the result
        is ``global_ratio * P_global + (1 - global_ratio) * P_local``.
        """
        members = Members.coerce(member)
        if len(members) != 1:
            raise MemberError(f"probability() takes one member, but got {len(members)}")
        bits = self._check_bits(members.bits)
        canonical = self.canonical(bits)
        if not torch.equal(canonical, bits):
            bits = canonical
        local = self._local_probability(bits[0])
        ratio = self.scheme.global_ratio
        if ratio == 0:
            return local
        columns = self.columns()
        hits = sum(
            bool(torch.equal(columns.bits[c], bits[0])) for c in range(len(columns))
        )
        return ratio * hits / len(columns) + (1.0 - ratio) * local

    def _local_probability(self, row: Tensor) -> float:
        frontier, prob = self._start(), 1.0
        while not frontier <= self._inputs:
            node = self._last(frontier)
            rest = frontier - {node}
            if node in self._choices:
                gates = self.graph.join_gates(node)
                pattern = tuple(bool(row[g]) for g in gates)
                prob *= next(
                    (p for pat, p, _ in self._choices[node] if pat == pattern), 0.0
                )
                frontier = rest | frozenset(self._expand(node, pattern))
            else:
                frontier = rest | frozenset(s for s, _ in self._preds[node])
        return prob

    def columns(self) -> Members:
        """Return one member per column: the column kept alone in every block.

        Raises:
            ValueError: When the graph has no column labels.
        """
        labels = self.graph.columns()
        if not labels:
            raise ValueError(
                "the graph has no columns; columns() needs a column-structured model"
            )
        rows = []
        for c in labels:
            rows.append(
                [
                    self.graph.gate_edge(g).column == c
                    for g in range(self.graph.num_gates)
                ]
            )
        return Members(self.canonical(torch.tensor(rows, dtype=torch.bool)))

    # ------------------------------------------------------------ path length

    def lengths(self, members: Members | Member) -> Tensor:
        """Return each member's path length: optional nodes on its longest active path.

        Optional nodes are those some input-to-output path avoids (residual
        branches, FractalNet convolutions); see
        :meth:`~layershare.graph.Graph.optional_nodes`.
        """
        members = Members.coerce(members)
        g = self.graph
        edge_active = self.active(members.bits)
        m = len(members)
        neg = torch.full((m,), -1, dtype=torch.long)
        depth = {}
        for n in g.nodes:
            if n.kind == "input":
                depth[n.name] = torch.zeros(m, dtype=torch.long)
                continue
            best = neg.clone()
            for i in g.in_edges(n.name):
                candidate = torch.where(edge_active[:, i], depth[g.edges[i].src], neg)
                best = torch.maximum(best, candidate)
            step = 1 if n.name in self._optional else 0
            depth[n.name] = torch.where(best >= 0, best + step, neg)
        return torch.stack([depth[o] for o in g.outputs]).amax(0)

    def path_lengths(self, weights: str = "scheme") -> np.ndarray:
        """Return the exact distribution of member path lengths.

        Args:
            weights: ``"scheme"`` weighs each member by its probability;
                ``"uniform"`` weighs every distinct member equally
                (default: ``"scheme"``).

        Returns:
            ``probs`` with ``probs[k]`` the probability that a member has path
            length ``k``, for ``k = 0..max``. For ``n`` residual blocks this is
            Binomial(n, 1/2) under ``"uniform"`` and Poisson-binomial with the
            survival rates under stochastic depth.
        """
        if weights not in ("scheme", "uniform"):
            raise ValueError(
                f"weights must be 'scheme' or 'uniform', but got {weights!r}"
            )
        memo: dict = {}
        start = frozenset((o, 0) for o in self.graph.outputs)
        with _deep_recursion(self._limit):
            dist = self._length_dist(start, weights == "uniform", memo)
        if weights == "uniform":
            total = sum(dist.values())
            dist = {k: Fraction(v, total) for k, v in dist.items()}
        else:
            ratio = self.scheme.global_ratio
            dist = {k: (1.0 - ratio) * v for k, v in dist.items()}
            if ratio > 0:
                columns = self.columns()
                for length in self.lengths(columns).tolist():
                    dist[length] = dist.get(length, 0.0) + ratio / len(columns)
        probs = np.zeros(max(dist) + 1 if dist else 1)
        for k, v in dist.items():
            probs[k] += float(v)
        return probs

    def _length_dist(
        self, state: frozenset, uniform: bool, memo: dict
    ) -> dict[int, float]:
        """Distribution of the longest path below a frontier with lengths so far."""
        frontier = {name: length for name, length in state}
        if set(frontier) <= self._inputs:
            return {max(frontier.values()): 1}
        if state in memo:
            return memo[state]
        node = max(
            (n for n in frontier if n not in self._inputs), key=self._pos.__getitem__
        )
        length = frontier.pop(node) + (1 if node in self._optional else 0)
        if node in self._choices:
            if uniform:
                options = [
                    (self._expand(node, pat), 1)
                    for pat in self._structural_choices(node)
                ]
            else:
                options = [
                    (self._expand(node, pat), p) for pat, p, _ in self._choices[node]
                ]
        else:
            options = [([s for s, _ in self._preds[node]], 1)]
        result: dict[int, float] = {}
        for sources, weight in options:
            if not weight:
                continue
            nxt = dict(frontier)
            for src in sources:
                nxt[src] = max(nxt.get(src, length), length)
            for k, v in self._length_dist(
                frozenset(nxt.items()), uniform, memo
            ).items():
                result[k] = result.get(k, 0) + weight * v
        memo[state] = result
        return result

    def __repr__(self) -> str:
        return f"Sampler({self.graph.summary()}, {self.scheme!r})"
