"""Swapout: per-unit Bernoulli masks on the skip and the branch of residual joins.

Singh, Hoiem and Forsyth 2016, "Swapout: Learning an ensemble of deep
architectures" (arXiv 1605.06465): a residual block computes

    y = Θ1 ⊙ x + Θ2 ⊙ F(x)

with ``Θ1`` and ``Θ2`` tensors of independent Bernoulli variables, so each
unit reports 0, ``x``, ``F(x)`` or ``x + F(x)``. Named special cases:

* ``Θ1 = Θ2 = 1``: the plain residual net (``Swapout(1.0, 1.0)``);
* ``Θ1 = 1`` and one ``Θ2`` per block: stochastic depth
  (``Swapout(1.0, p, per_unit=False)``, drawn and weighted exactly as
  ``StochasticDepth(p, rule="uniform")``);
* ``Θ1 = 1 - Θ2`` per unit: skipforward, each unit either skips or goes
  forward (``Swapout("complement", theta2)``);
* ``Θ1 = 0``: dropout on the branch output.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import torch
from torch import Tensor

from layershare.graph import Graph
from layershare.schemes import Pattern, Scheme, _check_choice, _check_probability

__all__ = ["Swapout"]

Rate = float | Sequence[float]


class Swapout(Scheme):
    """Gate the units of residual joins' skips and branches (swapout).

    Training draws ``Θ1 ~ Bernoulli(θ1)`` on the skip and
    ``Θ2 ~ Bernoulli(θ2)`` on the branch, per unit and per sample (or per
    mini-batch with ``granularity="batch"``), and computes
    ``y = Θ1 ⊙ x + Θ2 ⊙ F(x)``. The deterministic inference rule replaces
    the masks by their expectations, ``y = θ1 x + θ2 F(x)``. Swapout's
    authors report that averaging sampled members (stochastic inference)
    works better; that is ``ls.evaluate(model, sampler.sample(n, seed=s), x,
    reduce="mean")``.

    A member carries a seed from which its masks are drawn (see
    :func:`~layershare.unit_gates.member_masks`); masks have the feature shape
    of the join's inputs, without the batch dimension, so a member is one
    fixed subnetwork for every sample.

    Schedules. ``"constant"`` uses ``θ`` in every block. ``"linear"`` uses
    ``θ_l = 1 - (l - 1) / (L - 1) * (1 - θ)`` for block ``l = 1..L``: keep
    rates fall linearly from 1 at the first block to ``θ`` at the last,
    the schedule Swapout's authors write as ``Linear(1, θ)`` (a single
    block gets ``θ``). A sequence gives one rate per block directly.

    Counting. With unit gates the number of gate assignments is the product
    over units of the number of ``(Θ1, Θ2)`` patterns, which the sampler
    reports given ``units``. A member is the restriction of an assignment to
    the units that reach the output. Counting those exactly needs branches in
    which every output unit depends on every input unit (``dense=True``, as
    for fully connected branches), see :mod:`layershare.unit_members`.
    A rate of exactly 0 or 1 makes a mask constant, not a gate.

    Args:
        theta1: Keep rate of the skip units: a number, one number per block,
            or ``"complement"`` for ``Θ1 = 1 - Θ2`` (skipforward).
        theta2: Keep rate of the branch units: a number or one per block.
        schedule: ``"constant"`` or ``"linear"`` (default: ``"constant"``).
        per_unit: ``False`` draws one ``Θ2`` per block (an edge gate on the
            branch) instead of one per unit (default: ``True``).
        units: Number of units (elements of one sample's tensor) at each
            swapout join: one int for every join or one per join. Only the
            sampler's counts and probabilities need it (default: ``None``).
        dense: Whether each branch is dense, see above (default: ``False``).
        granularity: ``"sample"`` or ``"batch"`` (default: ``"sample"``).

    Example:
        >>> Swapout(0.8, 0.5, schedule="linear").rates(3)
        ([1.0, 0.9, 0.8], [1.0, 0.75, 0.5])
    """

    def __init__(
        self,
        theta1: Rate | str,
        theta2: Rate,
        schedule: str = "constant",
        *,
        per_unit: bool = True,
        units: int | Sequence[int] | None = None,
        dense: bool = False,
        granularity: str = "sample",
    ) -> None:
        super().__init__(granularity)
        self.schedule = _check_choice("schedule", schedule, ("constant", "linear"))
        self.complement = isinstance(theta1, str)
        if self.complement and theta1 != "complement":
            raise ValueError(
                f"theta1 must be a number, a sequence or 'complement', but got "
                f"{theta1!r}"
            )
        if self.complement and not per_unit:
            raise ValueError(
                "theta1='complement' pairs each skip unit with its branch unit, so "
                "it needs per_unit=True"
            )
        self.theta1 = theta1 if self.complement else self._check_rate("theta1", theta1)
        self.theta2 = self._check_rate("theta2", theta2)
        self.per_unit = bool(per_unit)
        self.units = self._check_units(units)
        self.dense = bool(dense)

    def _check_rate(self, name: str, value: Rate) -> float | tuple[float, ...]:
        if isinstance(value, Sequence):
            if self.schedule != "constant":
                raise ValueError(
                    f"{name} gives one rate per block, so schedule must be "
                    f"'constant', but got {self.schedule!r}"
                )
            return tuple(
                _check_probability(f"{name}[{i}]", v) for i, v in enumerate(value)
            )
        return _check_probability(name, value)

    @staticmethod
    def _check_units(units: int | Sequence[int] | None) -> int | tuple | None:
        if units is None:
            return None
        values = units if isinstance(units, Sequence) else [units]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"units must be positive ints, but got {units!r}")
        return tuple(units) if isinstance(units, Sequence) else units

    # ------------------------------------------------------------ rates

    def _schedule(self, value: float | tuple[float, ...], blocks: int) -> list[float]:
        if isinstance(value, tuple):
            if len(value) != blocks:
                raise ValueError(
                    f"got {len(value)} per-block rates, but the graph has {blocks} "
                    f"swapout joins"
                )
            return list(value)
        if self.schedule == "constant" or blocks == 1:
            return [value] * blocks
        return [1.0 - (b / (blocks - 1)) * (1.0 - value) for b in range(blocks)]

    def rates(self, blocks: int) -> tuple[list[float], list[float]]:
        """Return the keep rates ``(θ1_l, θ2_l)`` for blocks ``l = 1..blocks``.

        Under ``theta1="complement"``, ``θ1_l`` is ``1 - θ2_l``.
        """
        theta2 = self._schedule(self.theta2, blocks)
        if self.complement:
            return [1.0 - t for t in theta2], theta2
        return self._schedule(self.theta1, blocks), theta2

    def _blocks(self, graph: Graph) -> dict[str, int]:
        """Map each swapout join (a join with a gated input) to its block index."""
        cached = graph.__dict__.get("_swapout_blocks")
        if cached is None:
            joins = [j for j in graph.joins if graph.join_gates(j)]
            cached = {join: b for b, join in enumerate(joins)}
            graph.__dict__["_swapout_blocks"] = cached
        return cached

    def _roles(self, graph: Graph, join: str) -> list[str]:
        return [graph.edges[i].role for i in graph.in_edges(join)]

    def _block_rates(self, graph: Graph, join: str) -> tuple[float, float]:
        blocks = self._blocks(graph)
        theta1, theta2 = self.rates(len(blocks))
        block = blocks[join]
        return theta1[block], theta2[block]

    # ------------------------------------------------------------ edge gates

    def validate(self, graph: Graph) -> None:
        for join in self._blocks(graph):
            node = graph.node(join)
            roles = self._roles(graph, join)
            gated = [graph.edges[i].gate is not None for i in graph.in_edges(join)]
            if node.rule != "sum" or sorted(roles) != ["branch", "skip"]:
                raise ValueError(
                    f"Swapout applies to residual joins (rule 'sum', one 'skip' and "
                    f"one 'branch' input), but join {join!r} has rule {node.rule!r} "
                    f"and roles {roles}"
                )
            if gated[roles.index("skip")] or not gated[roles.index("branch")]:
                raise ValueError(
                    f"Swapout needs the branch of join {join!r} gated and its skip "
                    f"ungated"
                )
        blocks = len(self._blocks(graph))
        self.rates(blocks)
        if isinstance(self.units, tuple) and len(self.units) != blocks:
            raise ValueError(
                f"units gives {len(self.units)} counts, but the graph has {blocks} "
                f"swapout joins"
            )

    def num_uniforms(self, graph: Graph) -> int:
        return graph.num_gates

    def draw(self, graph: Graph, u: np.ndarray) -> np.ndarray:
        if self.per_unit:
            return np.ones((u.shape[0], graph.num_gates), dtype=bool)
        _, theta2 = self.rates(graph.num_gates)
        return u[:, : graph.num_gates] < np.asarray(theta2, dtype=np.float64)

    def join_choices(self, graph: Graph, join: str) -> list[tuple[Pattern, float]]:
        if join not in self._blocks(graph):
            return [((), 1.0)]
        if self.per_unit:
            return [((True,), 1.0)]
        _, theta2 = self._block_rates(graph, join)
        return [((False,), 1.0 - theta2), ((True,), theta2)]

    def inference_weights(self, graph: Graph) -> Tensor:
        if self.per_unit:
            return torch.ones(graph.num_gates)
        _, theta2 = self.rates(graph.num_gates)
        return torch.tensor(theta2, dtype=torch.get_default_dtype())

    # ------------------------------------------------------------ unit gates

    def unit_rates(self, graph: Graph, join: str) -> tuple[float | None, ...] | None:
        if join not in self._blocks(graph):
            return None
        theta1, theta2 = self._block_rates(graph, join)
        by_role = {"skip": theta1, "branch": theta2 if self.per_unit else None}
        return tuple(by_role[role] for role in self._roles(graph, join))

    def unit_masks(self, graph: Graph, join: str, u: Tensor) -> Tensor:
        theta1, theta2 = self._block_rates(graph, join)
        roles = self._roles(graph, join)
        skip, branch = roles.index("skip"), roles.index("branch")
        masks = torch.empty(u.shape, dtype=torch.bool, device=u.device)
        if not self.per_unit:
            masks[branch] = True
        else:
            masks[branch] = u[branch] < theta2
        if self.complement:
            masks[skip] = ~masks[branch]
        else:
            masks[skip] = u[skip] < theta1
        return masks

    def unit_patterns(self, graph: Graph, join: str) -> list[tuple[Pattern, float]]:
        theta1, theta2 = self._block_rates(graph, join)
        roles = self._roles(graph, join)
        if self.complement:
            pairs = [((not b, b), pb) for b, pb in _values(theta2)]
        else:
            branch_values = _values(theta2) if self.per_unit else [(True, 1.0)]
            pairs = [
                ((s, b), ps * pb)
                for (s, ps), (b, pb) in product(_values(theta1), branch_values)
            ]
        skip = roles.index("skip")
        return [
            (pair if skip == 0 else (pair[1], pair[0]), prob) for pair, prob in pairs
        ]

    def unit_counts(self, graph: Graph) -> dict[str, int] | None:
        if self.units is None:
            return None
        joins = list(self._blocks(graph))
        if isinstance(self.units, tuple):
            return dict(zip(joins, self.units, strict=True))
        return {join: self.units for join in joins}

    def extra_repr(self) -> str:
        theta1 = "'complement'" if self.complement else self.theta1
        text = (
            f"theta1={theta1}, theta2={self.theta2}, schedule={self.schedule!r}, "
            f"per_unit={self.per_unit}"
        )
        if self.units is not None:
            text += f", units={self.units}, dense={self.dense}"
        return text + f", granularity={self.granularity!r}"


def _values(rate: float) -> list[tuple[bool, float]]:
    """Return the mask values a rate allows, with their probabilities."""
    if rate == 1.0:
        return [(True, 1.0)]
    if rate == 0.0:
        return [(False, 1.0)]
    return [(False, 1.0 - rate), (True, rate)]
