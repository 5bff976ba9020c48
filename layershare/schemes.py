"""Sampling schemes: distributions over gates and their train and inference rules.

A scheme defines how the gates of a graph are drawn during training, how a drawn
(or chosen) gate assignment weights each gated edge, and which deterministic
weights an ``eval()`` model uses when no member is given.

* :class:`StochasticDepth`, Huang et al. 2016, arXiv 1603.09382.
* :class:`DropPath`, FractalNet, Larsson, Maire and Shakhnarovich 2016,
  arXiv 1605.07648.
* :class:`~layershare.swapout.Swapout`, Singh, Hoiem and Forsyth 2016,
  arXiv 1605.06465 (unit gates; in its own module).

Every scheme draws its edge gates from a matrix of uniforms (one row per
draw), so the sampler can produce reproducible members from counter-based
random numbers, and lists the keep patterns each join allows with their
probabilities, so the sampler can count and weigh members exactly.
"""

from __future__ import annotations

import math
from itertools import product
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from layershare.graph import Graph

if TYPE_CHECKING:
    from layershare.unit_gates import UnitGateState

__all__ = ["DropPath", "Scheme", "StochasticDepth"]

GRANULARITIES = ("batch", "sample")

Pattern = tuple[bool, ...]


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number in [0, 1], but got {value!r}")
    if not 0.0 <= float(value) <= 1.0 or math.isnan(value):
        raise ValueError(f"{name} must be between 0 and 1, but got {value}")
    return float(value)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, but got {value!r}")
    return value


class Scheme:
    """Base class of sampling schemes.

    Edge gates. Subclasses implement :meth:`validate`, :meth:`num_uniforms`,
    :meth:`draw` and :meth:`join_choices`, and override
    :meth:`member_weights` and :meth:`inference_weights` when a kept gate
    does not simply weigh 1.

    Unit gates. A scheme that gates single units of a join's inputs (swapout,
    zoneout) also implements three hooks, and the engine, the sampler and
    :class:`~layershare.Members` do the rest:

    * :meth:`unit_rates` returns, per input of a join, the expected mask (the
      keep rate, used by the deterministic inference rule) or ``None`` for an
      input without a unit mask. A rate of exactly 1 or 0 is a constant mask.
    * :meth:`unit_masks` turns uniforms ``[num_inputs, *shape]`` into keep
      masks of the same shape. Training draws the uniforms on the input's
      device; a member draws them from its seed on the CPU (see
      :func:`~layershare.unit_gates.member_masks`), so its masks are the
      same on every device.
    * :meth:`unit_patterns` lists the per-unit keep patterns over the join's
      inputs with their probabilities, the same for every unit and
      independent across units. The sampler counts and weighs unit-level
      members from it.

    The engine calls :meth:`unit_weights` for every input of every join with
    a :class:`~layershare.unit_gates.UnitGateState`, which records whether
    the call trains, runs members or runs the inference rule. The result
    multiplies the edge weight.

    Args:
        granularity: ``"batch"`` draws one gate assignment per mini-batch,
            ``"sample"`` one per sample (default: ``"batch"``).
    """

    #: Probability that a draw is global (one column); 0 for non-column schemes.
    global_ratio: float = 0.0

    #: Whether every output unit of each gated branch depends on every unit of
    #: the branch's input (fully connected branches). Exact distinct counting
    #: of unit-level members relies on it.
    dense: bool = False

    def __init__(self, granularity: str = "batch") -> None:
        self.granularity = _check_choice("granularity", granularity, GRANULARITIES)

    # ------------------------------------------------------------ edge gates

    def validate(self, graph: Graph) -> None:
        """Raise ``ValueError`` when the scheme cannot apply to ``graph``."""
        raise NotImplementedError

    def num_uniforms(self, graph: Graph) -> int:
        """Return the number of uniforms one draw consumes."""
        raise NotImplementedError

    def draw(self, graph: Graph, u: np.ndarray) -> np.ndarray:
        """Turn uniforms ``[n, num_uniforms]`` into keep bits ``[n, num_gates]``."""
        raise NotImplementedError

    def join_choices(self, graph: Graph, join: str) -> list[tuple[Pattern, float]]:
        """List the keep patterns the scheme can draw at a join, with probabilities.

        The patterns cover the join's gates in input order. Every pattern the
        scheme's rule allows is listed, including those whose probability is
        0 at the current rates, so counts depend on the structure only. Under
        drop-path these are the local rule's patterns; the global part is
        handled separately.
        """
        raise NotImplementedError

    def member_weights(self, graph: Graph, bits: Tensor) -> Tensor:
        """Return edge weights ``[n, num_gates]`` for keep bits ``[n, num_gates]``.

        These weights are used both for training draws and for members, so a
        member computes exactly what a training step with those gates computes.
        """
        return bits.to(torch.get_default_dtype())

    def inference_weights(self, graph: Graph) -> Tensor:
        """Return the deterministic edge weights ``[num_gates]`` of an eval model."""
        return torch.ones(graph.num_gates)

    # ------------------------------------------------------------ unit gates

    def unit_rates(self, graph: Graph, join: str) -> tuple[float | None, ...] | None:
        """Return the keep rate of each input's unit mask, or ``None`` (no masks)."""
        return None

    def unit_masks(self, graph: Graph, join: str, u: Tensor) -> Tensor:
        """Turn uniforms ``[num_inputs, *shape]`` into boolean keep masks."""
        raise NotImplementedError(f"{type(self).__name__} has no unit gates")

    def unit_patterns(self, graph: Graph, join: str) -> list[tuple[Pattern, float]]:
        """List the per-unit keep patterns over a join's inputs, with probabilities."""
        raise NotImplementedError(f"{type(self).__name__} has no unit gates")

    def unit_counts(self, graph: Graph) -> dict[str, int] | None:
        """Return the number of units at each unit-gated join, when known."""
        return None

    def unit_joins(self, graph: Graph) -> list[str]:
        """Return the joins with unit masks, in topological order."""
        return [j for j in graph.joins if self.unit_rates(graph, j) is not None]

    def has_unit_gates(self, graph: Graph) -> bool:
        """Return whether some unit mask of the graph is random (rate in (0, 1))."""
        for join in self.unit_joins(graph):
            for rate in self.unit_rates(graph, join):
                if rate is not None and 0.0 < rate < 1.0:
                    return True
        return False

    def unit_weights(
        self, graph: Graph, join: str, position: int, x: Tensor, state: UnitGateState
    ) -> Tensor | None:
        """Return the unit weights of input ``position`` of a join, or ``None``.

        This is the engine's hook for unit gates. The result broadcasts
        against ``x`` (``[B, *]``): a scalar for a constant or expected mask,
        ``[B, *]`` or ``[1, *]`` for drawn masks. ``None`` means weight 1.
        """
        rates = self.unit_rates(graph, join)
        if rates is None or rates[position] is None:
            return None
        rate = rates[position]
        if rate == 1.0:
            return None
        if rate == 0.0 or state.mode == "inference":
            return torch.tensor(rate, dtype=x.dtype, device=x.device)
        return state.masks(self, graph, join, x)[position]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return f"granularity={self.granularity!r}"


class StochasticDepth(Scheme):
    """Drop whole residual branches, block ``l`` of ``L`` surviving with ``p_l``.

    Huang et al. 2016 (arXiv 1603.09382): during training each residual block's
    branch is kept with probability ``p_l`` and otherwise bypassed by the
    identity. The linear decay rule is ``p_l = 1 - (l / L) (1 - p_L)`` for
    ``l = 1..L``; the uniform rule is ``p_l = p_L`` for every block.

    Two conventions for scaling exist, and both are offered:

    * ``scale="test"`` (the original paper): training computes
      ``x + b_l F(x)`` with ``b_l`` in {0, 1}; inference computes
      ``x + p_l F(x)``.
    * ``scale="train"`` (timm, torchvision): training computes
      ``x + (b_l / p_l) F(x)``; inference computes ``x + F(x)``, the expected
      training output. A block with ``p_l = 0`` is always dropped in
      training, so its inference weight is 0 as well, and a member that keeps
      it anyway (probability 0) runs it with weight 1 rather than ``1 / 0``.

    A member computes the training expression for its gates.

    Args:
        p_last: Survival probability ``p_L`` of the last block (default: 0.5).
        rule: ``"linear"`` or ``"uniform"`` (default: ``"linear"``).
        scale: ``"test"`` or ``"train"`` (default: ``"test"``).
        granularity: ``"batch"`` or ``"sample"`` (default: ``"batch"``).

    Example:
        >>> StochasticDepth(p_last=0.5).survival(4)
        [0.875, 0.75, 0.625, 0.5]
    """

    def __init__(
        self,
        p_last: float = 0.5,
        rule: str = "linear",
        scale: str = "test",
        granularity: str = "batch",
    ) -> None:
        super().__init__(granularity)
        self.p_last = _check_probability("p_last", p_last)
        self.rule = _check_choice("rule", rule, ("linear", "uniform"))
        self.scale = _check_choice("scale", scale, ("test", "train"))

    def survival(self, num_blocks: int) -> list[float]:
        """Return ``p_l`` for ``l = 1..num_blocks``."""
        return [self._block_survival(b, num_blocks) for b in range(1, num_blocks + 1)]

    def _block_survival(self, block: int, num_blocks: int) -> float:
        """Return ``p_l`` for block ``l = block`` of ``num_blocks``."""
        if self.rule == "uniform":
            return self.p_last
        return 1.0 - (block / num_blocks) * (1.0 - self.p_last)

    def validate(self, graph: Graph) -> None:
        for join in graph.joins:
            edges = [graph.edges[i] for i in graph.in_edges(join)]
            gated = [e for e in edges if e.gate is not None]
            if any(e.role == "column" for e in gated):
                raise ValueError(
                    f"StochasticDepth applies to residual joins, but join {join!r} has "
                    f"column inputs; use DropPath for column-structured graphs"
                )
            if len(gated) > 1:
                raise ValueError(
                    f"StochasticDepth expects one gated branch per join, but join "
                    f"{join!r} has {len(gated)}"
                )

    def num_uniforms(self, graph: Graph) -> int:
        return graph.num_gates

    def draw(self, graph: Graph, u: np.ndarray) -> np.ndarray:
        p = np.asarray(self.survival(graph.num_gates), dtype=np.float64)
        return u[:, : graph.num_gates] < p

    def join_choices(self, graph: Graph, join: str) -> list[tuple[Pattern, float]]:
        gates = graph.join_gates(join)
        if not gates:
            return [((), 1.0)]
        p = self._block_survival(gates[0] + 1, graph.num_gates)
        return [((False,), 1.0 - p), ((True,), p)]

    def member_weights(self, graph: Graph, bits: Tensor) -> Tensor:
        weights = bits.to(torch.get_default_dtype())
        if self.scale == "test":
            return weights
        p = torch.tensor(self.survival(graph.num_gates), dtype=weights.dtype)
        safe = torch.where(p > 0, p, torch.ones_like(p))
        return weights / safe.to(weights.device)

    def inference_weights(self, graph: Graph) -> Tensor:
        p = torch.tensor(
            self.survival(graph.num_gates), dtype=torch.get_default_dtype()
        )
        if self.scale == "train":
            return (p > 0).to(p.dtype)
        return p

    def extra_repr(self) -> str:
        return (
            f"p_last={self.p_last}, rule={self.rule!r}, scale={self.scale!r}, "
            f"granularity={self.granularity!r}"
        )


class DropPath(Scheme):
    """Drop join inputs locally, or keep one column globally (FractalNet).

    Larsson, Maire and Shakhnarovich 2016 (arXiv 1605.07648):

    * Local: every gated input of every join is dropped independently with
      probability ``local``, and at least one input of each join survives.
      An input with role ``"skip"`` is never dropped, so a join that has one
      needs no such rule. Two rules for the case where every input is
      dropped exist, and both are offered:

      - ``all_dropped="resample"`` (default): the drops are conditioned on a
        survivor, so a pattern with ``s >= 1`` of ``k`` inputs kept has
        probability ``q**s * p**(k - s) / (1 - p**k)`` with ``p = local`` and
        ``q = 1 - p``.
      - ``all_dropped="keep_one"``: when every input is dropped, one input
        chosen uniformly is kept instead, which adds ``p**k / k`` to each
        single-survivor pattern. This is what the reference Caffe
        implementation's join layer does (``FractalJoinLayer::Forward_cpu``
        in github.com/gustavla/fractalnet, file
        ``caffe/src/caffe/layers/fractal_join_layer.cpp``).

      At ``local=1`` both rules keep exactly one input, chosen uniformly.
    * Global: one column is kept for the whole network, the same column index
      in every block, chosen uniformly.
    * Mixed: each draw is global with probability ``global_ratio``, else
      local. With ``granularity="batch"`` a draw covers a mini-batch, with
      ``"sample"`` a single sample.

    Joins average their surviving inputs; at inference every input is kept.

    Args:
        local: Drop probability of each join input under local sampling
            (default: 0.15).
        global_ratio: Probability that a draw is global (default: 0.5).
        granularity: ``"batch"`` or ``"sample"`` (default: ``"batch"``).
        all_dropped: ``"resample"`` or ``"keep_one"`` (default:
            ``"resample"``).
    """

    def __init__(
        self,
        local: float = 0.15,
        global_ratio: float = 0.5,
        granularity: str = "batch",
        all_dropped: str = "resample",
    ) -> None:
        super().__init__(granularity)
        self.local = _check_probability("local", local)
        self.global_ratio = _check_probability("global_ratio", global_ratio)
        self.all_dropped = _check_choice(
            "all_dropped", all_dropped, ("resample", "keep_one")
        )

    def validate(self, graph: Graph) -> None:
        if self.global_ratio > 0 and not graph.columns():
            raise ValueError(
                f"global drop-path keeps one column, but the graph has no column "
                f"labels; use global_ratio=0 (got {self.global_ratio}) or a "
                f"column-structured model such as FractalNet"
            )

    def _layout(self, graph: Graph) -> list[tuple[str, list[int], bool, int]]:
        """Return per join: name, gates, whether it has an ungated input, offset.

        Uniforms 0 and 1 decide global versus local and the global column.
        Each join then takes one uniform for its survivor count (or, under
        ``"keep_one"``, for the input it keeps) and one per gate.
        """
        layout, offset = [], 2
        for join in graph.joins:
            gates = graph.join_gates(join)
            if not gates:
                continue
            ungated = len(graph.in_edges(join)) > len(gates)
            layout.append((join, gates, ungated, offset))
            offset += len(gates) + 1
        return layout

    def num_uniforms(self, graph: Graph) -> int:
        layout = self._layout(graph)
        if not layout:
            return 2
        join, gates, _, offset = layout[-1]
        return offset + len(gates) + 1

    def _survivor_cdf(self, k: int) -> np.ndarray:
        """Return the CDF of the number of survivors s = 1..k given s >= 1."""
        if self.local == 1.0:
            return np.ones(k)
        keep = 1.0 - self.local
        mass = np.array(
            [math.comb(k, s) * keep**s * self.local ** (k - s) for s in range(1, k + 1)]
        )
        return np.cumsum(mass / mass.sum())

    def draw(self, graph: Graph, u: np.ndarray) -> np.ndarray:
        n = u.shape[0]
        bits = np.zeros((n, graph.num_gates), dtype=bool)
        for _, gates, ungated, offset in self._layout(graph):
            k = len(gates)
            draws = u[:, offset + 1 : offset + 1 + k]
            if ungated:
                bits[:, gates] = draws >= self.local
                continue

            if self.all_dropped == "keep_one":
                kept = draws >= self.local
                none = ~kept.any(axis=1)
                chosen = np.minimum((u[:, offset] * k).astype(int), k - 1)
                kept[none, chosen[none]] = True
                bits[:, gates] = kept
                continue

            # Conditioned on a survivor: draw the survivor count, then keep the
            # inputs with the smallest uniforms (a uniform subset of that size).
            count = 1 + np.searchsorted(
                self._survivor_cdf(k), u[:, offset], side="right"
            )
            count = np.minimum(count, k)
            ranks = np.argsort(np.argsort(draws, axis=1, kind="stable"), axis=1)
            bits[:, gates] = ranks < count[:, None]

        if self.global_ratio > 0:
            columns = graph.columns()
            is_global = u[:, 0] < self.global_ratio
            chosen = np.asarray(columns)[
                np.minimum((u[:, 1] * len(columns)).astype(int), len(columns) - 1)
            ]
            labels = np.array(
                [graph.gate_edge(g).column for g in range(graph.num_gates)],
                dtype=object,
            )
            column_bits = labels[None, :] == chosen[:, None]
            bits[is_global] = column_bits[is_global]
        return bits

    def join_choices(self, graph: Graph, join: str) -> list[tuple[Pattern, float]]:
        k = len(graph.join_gates(join))
        if k == 0:
            return [((), 1.0)]
        ungated = len(graph.in_edges(join)) > k
        keep, drop = 1.0 - self.local, self.local
        choices = []
        for pattern in product((False, True), repeat=k):
            s = sum(pattern)
            independent = keep**s * drop ** (k - s)
            if ungated:
                choices.append((pattern, independent))
                continue
            if s == 0:
                continue
            if drop == 1.0:
                prob = 1.0 / k if s == 1 else 0.0
            elif self.all_dropped == "keep_one":
                prob = independent + (drop**k / k if s == 1 else 0.0)
            else:
                prob = independent / (1.0 - drop**k)
            choices.append((pattern, prob))
        return choices

    def extra_repr(self) -> str:
        return (
            f"local={self.local}, global_ratio={self.global_ratio}, "
            f"granularity={self.granularity!r}, all_dropped={self.all_dropped!r}"
        )
