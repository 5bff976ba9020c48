"""Sampling schemes: distributions over gates and their train and inference rules.

A scheme says how the gates of a graph are drawn during training, how a drawn
(or chosen) gate assignment weights each gated edge, and which deterministic
weights an ``eval()`` model uses when no member is given.

* :class:`StochasticDepth`, Huang et al. 2016, arXiv 1603.09382.
* :class:`DropPath`, FractalNet, Larsson, Maire and Shakhnarovich 2016,
  arXiv 1605.07648.

Every scheme draws its gates from a matrix of uniforms (one row per draw), so
the sampler can produce reproducible members from counter-based random
numbers, and states the probability of each choice at a join, so the sampler
can count and weigh members exactly.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch
from torch import Tensor

from layershare.graph import Graph

__all__ = ["DropPath", "Scheme", "StochasticDepth"]

GRANULARITIES = ("batch", "sample")


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

    Subclasses implement :meth:`validate`, :meth:`num_uniforms`, :meth:`draw`,
    :meth:`join_choices`, :meth:`member_weights` and :meth:`inference_weights`.

    Args:
        granularity: ``"batch"`` draws one gate assignment per mini-batch,
            ``"sample"`` one per sample (default: ``"batch"``).
    """

    #: Probability that a draw is global (one column); 0 for non-column schemes.
    global_ratio: float = 0.0

    def __init__(self, granularity: str = "batch") -> None:
        self.granularity = _check_choice("granularity", granularity, GRANULARITIES)

    def validate(self, graph: Graph) -> None:
        """Raise ``ValueError`` when the scheme cannot apply to ``graph``."""
        raise NotImplementedError

    def num_uniforms(self, graph: Graph) -> int:
        """Return the number of uniforms one draw consumes."""
        raise NotImplementedError

    def draw(self, graph: Graph, u: np.ndarray) -> np.ndarray:
        """Turn uniforms ``[n, num_uniforms]`` into keep bits ``[n, num_gates]``."""
        raise NotImplementedError

    def join_choices(
        self, graph: Graph, join: str
    ) -> list[tuple[tuple[bool, ...], float]]:
        """List the allowed keep patterns of a join's gates with their probabilities.

        The patterns cover the join's gates in input order. Under drop-path they
        are the local rule's patterns; the global part is handled separately.
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
      ``x + (b_l / p_l) F(x)``; inference computes ``x + F(x)``. A block with
      ``p_l = 0`` is always dropped and contributes 0.

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
        if self.rule == "uniform":
            return [self.p_last] * num_blocks
        return [
            1.0 - (l / num_blocks) * (1.0 - self.p_last)
            for l in range(1, num_blocks + 1)
        ]

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

    def join_choices(
        self, graph: Graph, join: str
    ) -> list[tuple[tuple[bool, ...], float]]:
        gates = graph.join_gates(join)
        if not gates:
            return [((), 1.0)]
        p = self.survival(graph.num_gates)[gates[0]]
        return [((False,), 1.0 - p), ((True,), p)]

    def member_weights(self, graph: Graph, bits: Tensor) -> Tensor:
        weights = bits.to(torch.get_default_dtype())
        if self.scale == "test":
            return weights
        p = torch.tensor(self.survival(graph.num_gates), dtype=weights.dtype)
        safe = torch.where(p > 0, p, torch.ones_like(p))
        return weights / safe.to(weights.device)

    def inference_weights(self, graph: Graph) -> Tensor:
        if self.scale == "train":
            return torch.ones(graph.num_gates)
        return torch.tensor(
            self.survival(graph.num_gates), dtype=torch.get_default_dtype()
        )

    def extra_repr(self) -> str:
        return (
            f"p_last={self.p_last}, rule={self.rule!r}, scale={self.scale!r}, "
            f"granularity={self.granularity!r}"
        )


class DropPath(Scheme):
    """Drop join inputs locally, or keep one column globally (FractalNet).

    Larsson, Maire and Shakhnarovich 2016 (arXiv 1605.07648):

    * Local: every gated input of every join is dropped independently with
      probability ``local``, conditioned on at least one input of each join
      surviving. An input with role ``"skip"`` is never dropped, so a join
      that has one needs no condition. At ``local=1`` the condition leaves
      exactly one input, chosen uniformly.
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
    """

    def __init__(
        self, local: float = 0.15, global_ratio: float = 0.5, granularity: str = "batch"
    ) -> None:
        super().__init__(granularity)
        self.local = _check_probability("local", local)
        self.global_ratio = _check_probability("global_ratio", global_ratio)

    def validate(self, graph: Graph) -> None:
        if self.global_ratio > 0 and not graph.columns():
            raise ValueError(
                f"global drop-path keeps one column, but the graph has no column "
                f"labels; use global_ratio=0 (got {self.global_ratio}) or a "
                f"column-structured model such as FractalNet"
            )

    def _layout(self, graph: Graph) -> list[tuple[str, list[int], bool, int]]:
        """Return per join: name, gates, whether it has an ungated input, offset."""
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
        for join, gates, ungated, offset in self._layout(graph):
            draws = u[:, offset + 1 : offset + 1 + len(gates)]
            if ungated:
                bits[:, gates] = draws >= self.local
                continue

            # Conditioned on a survivor: draw the survivor count, then keep the
            # inputs with the smallest uniforms (a uniform subset of that size).
            count = 1 + np.searchsorted(
                self._survivor_cdf(len(gates)), u[:, offset], side="right"
            )
            count = np.minimum(count, len(gates))
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

    def join_choices(
        self, graph: Graph, join: str
    ) -> list[tuple[tuple[bool, ...], float]]:
        k = len(graph.join_gates(join))
        if k == 0:
            return [((), 1.0)]
        ungated = len(graph.in_edges(join)) > k
        keep, drop = 1.0 - self.local, self.local
        choices = []
        for pattern in product((False, True), repeat=k):
            s = sum(pattern)
            if ungated:
                choices.append((pattern, keep**s * drop ** (k - s)))
                continue
            if s == 0:
                continue
            if drop == 1.0:
                prob = 1.0 / k if s == 1 else 0.0
            else:
                prob = keep**s * drop ** (k - s) / (1.0 - drop**k)
            choices.append((pattern, prob))
        return choices

    def extra_repr(self) -> str:
        return (
            f"local={self.local}, global_ratio={self.global_ratio}, "
            f"granularity={self.granularity!r}"
        )
