"""The sampler: count, enumerate, sample and weigh the members of an ensemble.

A member is an assignment of all gates; two assignments that activate the
same input-to-output subgraph are one member. For edge gates, exact counts,
probabilities, enumeration and path-length distributions come from dynamic
programming over frontiers (see :mod:`layershare.frontier`). For unit gates
(swapout), a member is an assignment restricted to the units that reach the
output, counted by :mod:`layershare.unit_members`.

Canonical order: :meth:`Sampler.enumerate` lists members by increasing integer
code, where gate ``g`` (numbered in topological order of the joins, then by
input order) has weight ``2**g``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor, nn

from layershare.errors import MemberError, TooManyMembersError, UnsupportedError
from layershare.frontier import Frontiers
from layershare.graph import Graph
from layershare.members import Member, Members
from layershare.random import member_seeds, uniforms
from layershare.schemes import Scheme
from layershare.unit_members import UnitChain

__all__ = ["DEFAULT_MAX_MEMBERS", "Sampler"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MEMBERS = 2**20

# Counter-based streams: edge-gate uniforms and unit-gate member seeds.
_EDGE_STREAM = 0
_SEED_STREAM = 1


class Sampler:
    """A graph and a scheme: the members of an implicit ensemble.

    Counts include members of probability zero at the scheme's current rates
    (at ``p = 0`` or ``local = 1``, say): they depend on the graph and on the
    patterns the scheme's rule allows, not on its rates. Unit masks whose
    rate is exactly 0 or 1 are constants, not gates.

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
        >>> sampler.path_lengths(weights="uniform").tolist()
        [0.125, 0.375, 0.375, 0.125]
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
                f"attribute (a GatedModel, or ls.trace_graph(module)), but got "
                f"{type(model).__name__}"
            )
        if not isinstance(scheme, Scheme):
            raise TypeError(
                f"scheme must be a layershare Scheme, but got {type(scheme).__name__}"
            )
        if isinstance(max_members, bool) or not isinstance(max_members, int):
            raise ValueError(
                f"max_members must be a positive int, but got {max_members!r}"
            )
        if max_members < 1:
            raise ValueError(
                f"max_members must be a positive int, but got {max_members!r}"
            )
        scheme.validate(graph)
        self.graph = graph
        self.scheme = scheme
        self.max_members = max_members
        choices = {join: scheme.join_choices(graph, join) for join in graph.joins}
        self._frontiers = Frontiers(graph, choices)

        # Unit masks that are not constant 1 make members unit-level.
        self.unit_gates = scheme.has_unit_gates(graph)
        self._units = None
        for join in scheme.unit_joins(graph):
            if any(r not in (None, 1.0) for r in scheme.unit_rates(graph, join)):
                self._units = UnitChain(graph, scheme)
                break

    # ----------------------------------------------------------------- count

    def count(self, assignments: bool = False) -> int:
        """Count the members exactly, by dynamic programming (never by enumeration).

        Args:
            assignments: Count raw gate assignments that the scheme's rule
                allows (each join keeping at least one input under drop-path)
                instead of distinct members (default: ``False``).

        Returns:
            The count as a Python ``int``.

        Raises:
            UnsupportedError: With unit gates, when the unit counts are unknown
                or the graph is outside what exact unit-level counting
                supports (see :mod:`layershare.unit_members`).
        """
        if assignments:
            total = 1
            for join in self.graph.joins:
                total *= len(self.scheme.join_choices(self.graph, join))
            if self._units is not None:
                total *= self._units.count_assignments()
            return total
        if self._units is not None:
            return self._units.count()
        return self._frontiers.count()

    def _positive_count(self) -> int:
        """Count the members of nonzero probability."""
        if self._units is not None:
            return self._units.count(positive=True)
        ratio = self.scheme.global_ratio
        local = self._frontiers.count(positive=True) if ratio < 1 else 0
        if ratio == 0:
            return local
        # Global members that the local rule cannot draw add to the count.
        extra = set()
        for row in self.columns().numpy():
            if ratio == 1 or self._frontiers.probability(row) == 0:
                extra.add(row.tobytes())
        return local + len(extra)

    # ------------------------------------------------------------- enumerate

    def enumerate(self, chunk_size: int | None = None) -> Members:
        """Return every distinct member once, in canonical order (increasing code).

        Args:
            chunk_size: Members materialized at a time (default: all at once).

        Raises:
            TooManyMembersError: When the count exceeds ``max_members``.
            UnsupportedError: When the scheme has unit gates.
        """
        chunks = [c.numpy() for c in self.iter_members(chunk_size or self.max_members)]
        if not chunks:
            return Members(np.zeros((0, self.graph.num_gates), dtype=bool))
        return Members(np.concatenate(chunks))

    def iter_members(self, chunk_size: int = 65536) -> Iterator[Members]:
        """Yield every distinct member in canonical order, in chunks.

        Members are built lazily: one chunk of at most ``chunk_size`` members
        is materialized per step.

        Raises:
            TooManyMembersError: When the count exceeds ``max_members``.
            UnsupportedError: When the scheme has unit gates.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise ValueError(
                f"chunk_size must be a positive int, but got {chunk_size!r}"
            )
        if chunk_size < 1:
            raise ValueError(
                f"chunk_size must be a positive int, but got {chunk_size!r}"
            )
        if self._units is not None:
            raise UnsupportedError(
                f"{type(self.scheme).__name__} gates single units, whose members "
                f"are not enumerated; draw them with sample(n, seed=...)"
            )
        total = self.count()
        if total > self.max_members:
            raise TooManyMembersError(total, self.max_members)
        for bits in self._frontiers.chunks(chunk_size):
            yield Members(bits)

    # ---------------------------------------------------------------- sample

    def draw_bits(
        self, seed: int, rows: np.ndarray, stream: int = _EDGE_STREAM
    ) -> np.ndarray:
        """Draw canonical keep bits ``[len(rows), num_gates]`` for row counters."""
        u = uniforms(
            seed, np.asarray(rows), self.scheme.num_uniforms(self.graph), stream
        )
        bits = self.scheme.draw(self.graph, u)
        return self.canonical(torch.from_numpy(bits)).numpy()

    def sample(self, n: int, seed: int = 0, unique: bool = False) -> Members:
        """Draw members by Monte Carlo, reproducibly.

        Member ``i`` depends only on ``seed`` and ``i``: not on ``n``, on
        chunking, on the batch size or on the device. Its edge gates come from
        counter-based uniforms and its unit-gate seed (for unit-gated schemes)
        from a counter-based hash.

        Args:
            n: Number of members.
            seed: Non-negative integer seed (default: 0).
            unique: Draw without repetition: keep the first ``n`` distinct
                members of the draw sequence, so the result is a prefix of
                the one for a larger ``n`` (default: ``False``).

        Raises:
            ValueError: When ``unique=True`` and ``n`` exceeds the number of
                members of nonzero probability, or when a million draws (plus
                a thousand per member requested) do not find ``n`` distinct
                members.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, but got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(
                f"seed must be an int between 0 and 2**64 - 1, but got {seed!r}"
            )
        if unique:
            return self._sample_unique(n, seed)
        return self._draw(seed, np.arange(n))

    def _draw(self, seed: int, rows: np.ndarray) -> Members:
        bits = self.draw_bits(seed, rows)
        seeds = member_seeds(seed, rows, _SEED_STREAM) if self.unit_gates else None
        return Members(bits, seeds)

    def _sample_unique(self, n: int, seed: int) -> Members:
        available = self._positive_count()
        if n > available:
            raise ValueError(
                f"cannot draw {n} distinct members: the ensemble has {available} "
                f"members of nonzero probability under {self.scheme!r}; ask for "
                f"at most {available} or use unique=False"
            )
        seen: set[bytes] = set()
        chosen: list[int] = []
        start, block, limit = 0, max(256, 2 * n), 1000 * n + 10**6
        pool: list[Members] = []
        while len(chosen) < n:
            if start > limit:
                raise ValueError(
                    f"found only {len(chosen)} distinct members of the {n} "
                    f"requested after {start} draws; the missing ones have "
                    f"probability almost zero under {self.scheme!r}"
                )
            members = self._draw(seed, np.arange(start, start + block))
            pool.append(members)
            for row, key in enumerate(self._keys(members)):
                if key not in seen:
                    seen.add(key)
                    chosen.append(start + row)
                    if len(chosen) == n:
                        break
            start += block
        everything = pool[0]
        for members in pool[1:]:
            everything = everything.cat(members)
        return everything[np.asarray(chosen, dtype=np.int64)]

    def _keys(self, members: Members) -> list[bytes]:
        """Return one key per member, equal exactly for equal members."""
        bits = members.numpy()
        if self._units is None:
            return [row.tobytes() for row in bits]
        seeds = members.seeds
        seeds = [None] * len(members) if seeds is None else seeds.tolist()
        return [self._units.key(row, s) for row, s in zip(bits, seeds, strict=True)]

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
        if not self.graph.num_gates:
            return bits.to(torch.bool).clone()
        return edge_active[:, self.graph.gated]

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

        Gates that the member does not use (on dead edges, or of units that
        do not reach the output) are summed out. Under mixed drop-path the
        result is ``global_ratio * P_global + (1 - global_ratio) * P_local``.

        Args:
            member: One :class:`Member`, or a :class:`Members` of length 1.

        Raises:
            MemberError: When the member does not fit the graph, drops every
                input of a join it uses, or ``member`` contains several members.
        """
        members = Members.coerce(member)
        if len(members) != 1:
            raise MemberError(f"probability() takes one member, but got {len(members)}")
        bits = self.canonical(members.bits).numpy()[0]
        if self._units is not None:
            seeds = members.seeds
            seed = None if seeds is None else int(seeds[0])
            if seed is None and not self.unit_gates:
                seed = 0
            return self._units.probability(bits, seed)
        ratio = self.scheme.global_ratio
        local = self._frontiers.probability(bits) if ratio < 1 else 0.0
        if ratio == 0:
            return local
        columns = self.columns().numpy()
        hits = int((columns == bits[None, :]).all(axis=1).sum())
        return ratio * hits / len(columns) + (1.0 - ratio) * local

    def columns(self) -> Members:
        """Return one member per column: the column kept alone in every block.

        These are the members global drop-path draws, in column order.

        Raises:
            ValueError: When the graph has no column labels.
        """
        labels = self.graph.columns()
        if not labels:
            raise ValueError(
                "the graph has no columns; columns() needs a column-structured model"
            )
        gate_columns = [
            self.graph.gate_edge(g).column for g in range(self.graph.num_gates)
        ]
        rows = [[column == c for column in gate_columns] for c in labels]
        return Members(self.canonical(torch.tensor(rows, dtype=torch.bool)))

    # ------------------------------------------------------------ path length

    def lengths(self, members: Members | Member) -> Tensor:
        """Return each member's path length: optional nodes on its longest active path.

        Optional nodes are those some input-to-output path avoids (residual
        branches, FractalNet convolutions); see
        :meth:`~layershare.graph.Graph.optional_nodes`.
        """
        self._edge_only("lengths")
        members = Members.coerce(members)
        g = self.graph
        edge_active = self.active(members.bits)
        optional = set(g.optional_nodes())
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
            step = 1 if n.name in optional else 0
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
            length ``k``, for ``k`` from 0 to the longest path of any member
            (entries may be zero). For ``n`` residual blocks this is
            Binomial(n, 1/2) under ``"uniform"`` and Poisson-binomial with the
            survival rates under stochastic depth.
        """
        if weights not in ("scheme", "uniform"):
            raise ValueError(
                f"weights must be 'scheme' or 'uniform', but got {weights!r}"
            )
        self._edge_only("path_lengths")
        if weights == "uniform":
            counts = self._frontiers.lengths(lambda option: 1)
            total = sum(counts.values())
            dist = {k: Fraction(v, total) for k, v in counts.items()}
        else:
            ratio = self.scheme.global_ratio
            local = self._frontiers.lengths(lambda option: option.prob)
            dist = {k: (1.0 - ratio) * v for k, v in local.items()}
            if ratio > 0:
                columns = self.columns()
                for length in self.lengths(columns).tolist():
                    dist[length] = dist.get(length, 0.0) + ratio / len(columns)
        # Cover every length some member has, even at probability zero, so
        # the array's size does not depend on the rates.
        longest = max(self._frontiers.lengths(lambda option: 1), default=0)
        probs = np.zeros(max(max(dist, default=0), longest) + 1)
        for k, v in dist.items():
            probs[k] += float(v)
        return probs

    def _edge_only(self, name: str) -> None:
        if self._units is not None:
            raise UnsupportedError(
                f"{name}() covers edge-gate members; {type(self.scheme).__name__} "
                f"gates single units here, where a path's length is not defined "
                f"by the gates alone"
            )

    def __repr__(self) -> str:
        return f"Sampler({self.graph.summary()}, {self.scheme!r})"
