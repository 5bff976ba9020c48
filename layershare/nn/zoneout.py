"""Zoneout: keep some units of a recurrent state at their previous values.

Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
Activations" (arXiv 1606.01305). At each time step, each unit of a state
either keeps its previous value or takes its new one:

    h_t = d_t ⊙ h_{t-1} + (1 - d_t) ⊙ h̃_t,   d_t ~ Bernoulli(z)

per unit, per sample and per time step, with separate rates (and masks) for an
LSTM's cell state and hidden state. Inference uses the expectation,
``h_t = z h_{t-1} + (1 - z) h̃_t``.

:func:`zoneout` is the functional op. :class:`Zoneout` is the scheme that sets
the rates of the zoneout cells of a model (see
:mod:`layershare.models.zoneout`). It draws no edge gates: its masks act on
units inside the recurrent cells, so for the sampler every edge is kept and
the model has one member.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from layershare.graph import Graph
from layershare.schemes import Scheme

__all__ = ["Zoneout", "zoneout"]


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number in [0, 1], but got {value!r}")
    if math.isnan(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, but got {value}")
    return float(value)


def zoneout(
    previous: Tensor,
    new: Tensor,
    p: float,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Keep each unit of ``previous`` with probability ``p``, else take ``new``.

    Args:
        previous: The state at the previous step, ``[B, *]``.
        new: The state the cell proposes, of the same shape.
        p: Zoneout probability ``z``: the chance that a unit keeps its
            previous value.
        training: Draw a mask when ``True``; otherwise return the expectation
            ``p * previous + (1 - p) * new`` (default: ``True``).
        generator: Random number generator for the mask (default: torch's
            global generator).

    Returns:
        The next state, ``[B, *]``. At ``p = 0`` it is ``new`` and at
        ``p = 1`` it is ``previous``, exactly, in both modes.

    Raises:
        ValueError: When ``p`` is not in [0, 1] or the shapes differ.

    Example:
        >>> h, h_new = torch.zeros(2, 3), torch.ones(2, 3)
        >>> zoneout(h, h_new, 0.25, training=False)
        tensor([[0.7500, 0.7500, 0.7500],
                [0.7500, 0.7500, 0.7500]])
    """
    p = _check_rate("p", p)
    if previous.shape != new.shape:
        raise ValueError(
            f"previous and new states must have one shape, but got "
            f"{tuple(previous.shape)} and {tuple(new.shape)}"
        )
    if p == 0.0:
        return new
    if p == 1.0:
        return previous
    if not training:
        return p * previous + (1.0 - p) * new

    # One Bernoulli variable per unit and sample, made on the state's device.
    keep = previous.new_empty(previous.shape).bernoulli_(p, generator=generator)
    return torch.where(keep.to(torch.bool), previous, new)


class Zoneout(Scheme):
    """Set the zoneout rates of a model's recurrent cells (no edge gates).

    The rates apply per unit, per sample and per time step, with separate
    masks for the cell state (``z_cell``, LSTM only) and the hidden state
    (``z_hidden``). A model whose cells follow the scheme (such as
    :class:`~layershare.models.ZoneoutClassifier`) passes the rates to each
    cell when the scheme is assigned, and :func:`layershare.train.fit`
    assigns it. Every edge gate of the graph, if any, is kept.

    Training draws ``d ~ Bernoulli(z)`` per unit and computes
    ``h_t = d * h_{t-1} + (1 - d) * h_new_t``; inference (eval mode) uses the
    expectation ``h_t = z * h_{t-1} + (1 - z) * h_new_t`` (Krueger et al. 2016,
    arXiv 1606.01305).

    Args:
        z_cell: Zoneout probability of the cell state (default: 0.5).
        z_hidden: Zoneout probability of the hidden state (default: 0.05).

    Example:
        >>> Zoneout(z_cell=0.5, z_hidden=0.05)
        Zoneout(z_cell=0.5, z_hidden=0.05)
    """

    def __init__(self, z_cell: float = 0.5, z_hidden: float = 0.05) -> None:
        super().__init__("sample")
        self.z_cell = _check_rate("z_cell", z_cell)
        self.z_hidden = _check_rate("z_hidden", z_hidden)

    def configure(self, module: nn.Module) -> int:
        """Set the rates of every zoneout cell inside ``module``.

        A zoneout cell is a submodule whose class sets ``layershare_zoneout =
        True``. Each gets ``z_hidden``, and ``z_cell`` when it has a cell
        state (an LSTM cell, not a GRU cell).

        Returns:
            The number of cells configured.
        """
        count = 0
        for submodule in module.modules():
            if getattr(type(submodule), "layershare_zoneout", False):
                submodule.z_hidden = self.z_hidden
                if hasattr(submodule, "z_cell"):
                    submodule.z_cell = self.z_cell
                count += 1
        return count

    def validate(self, graph: Graph) -> None:
        return None

    def num_uniforms(self, graph: Graph) -> int:
        return 0

    def draw(self, graph: Graph, u: np.ndarray) -> np.ndarray:
        return np.ones((u.shape[0], graph.num_gates), dtype=bool)

    def join_choices(
        self, graph: Graph, join: str
    ) -> list[tuple[tuple[bool, ...], float]]:
        return [((True,) * len(graph.join_gates(join)), 1.0)]

    def extra_repr(self) -> str:
        return f"z_cell={self.z_cell}, z_hidden={self.z_hidden}"
