"""Hierarchical multiscale LSTM: layers that update, copy or flush at boundaries.

Chung, Ahn and Bengio 2016, "Hierarchical Multiscale Recurrent Neural
Networks" (arXiv 1609.01704). Layer ``l`` keeps a cell ``c``, a hidden state
``h`` and a binary boundary ``z``. At step ``t`` it chooses one operation from
its own previous boundary ``z^l_{t-1}`` and the boundary of the layer below,
``z^{l-1}_t`` (the input counts as a layer whose boundary is always 1):

* UPDATE (``z^l_{t-1} = 0``, ``z^{l-1}_t = 1``): ``c = f ⊙ c_{t-1} + i ⊙ g``;
* COPY (``z^l_{t-1} = 0``, ``z^{l-1}_t = 0``): ``c = c_{t-1}``, ``h = h_{t-1}``;
* FLUSH (``z^l_{t-1} = 1``): ``c = i ⊙ g``, the segment ends and the state
  restarts;

and ``h = o ⊙ tanh(c)`` unless it copies. The gates and the boundary come from
``U h^l_{t-1} + z^l_{t-1} U' h^{l+1}_{t-1} + z^{l-1}_t W h^{l-1}_t + b``, so
the layer above contributes only after a boundary of this layer, and the layer
below only at its own boundaries. The boundary ``z = 1[hard_sigmoid(s) > 0.5]``
is binary in the forward pass. Its gradient is that of the hard sigmoid
``max(0, min(1, (a s + 1) / 2))`` (the straight-through estimator), and the
slope ``a`` is annealed upward during training.

NOTE: The top layer has no boundary detector, because no layer above would
read its boundaries. It never flushes: it updates when the layer below ends a
segment and copies otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from layershare.nn.module import GatedModel

__all__ = [
    "HMLSTM",
    "HMLSTMCell",
    "HMRNN",
    "GatedOutput",
    "binary_boundary",
    "hard_sigmoid",
]


def hard_sigmoid(x: Tensor, slope: float = 1.0) -> Tensor:
    """Return ``max(0, min(1, (slope * x + 1) / 2))``."""
    return torch.clamp((slope * x + 1.0) / 2.0, 0.0, 1.0)


def binary_boundary(x: Tensor, slope: float = 1.0) -> Tensor:
    """Threshold the hard sigmoid at 0.5, passing its gradient straight through.

    Args:
        x: Boundary pre-activations.
        slope: Slope ``a`` of the hard sigmoid (default: 1.0).

    Returns:
        Exactly 0 or 1 in the forward pass. The backward pass uses the hard
        sigmoid's gradient, ``slope / 2`` where ``|slope * x| < 1`` and 0
        elsewhere.
    """
    soft = hard_sigmoid(x, slope)
    hard = (soft > 0.5).to(soft.dtype)
    return soft + (hard - soft).detach()


class HMLSTMCell(nn.Module):
    """One step of one HM-LSTM layer.

    Args:
        input_size: Features of the layer below (or of the input).
        hidden_size: Units of this layer.
        above_size: Units of the layer above, or 0 for the top layer.
        boundary: Whether the layer has a boundary detector; the top layer
            has none (default: ``True``).

    Shape:
        - Inputs: ``below`` ``[B, input_size]``, ``z_below`` ``[B, 1]``,
          ``state`` ``(h, c, z)`` with ``h, c`` ``[B, hidden_size]`` and
          ``z`` ``[B, 1]``, ``above`` ``[B, above_size]`` or ``None``.
        - Output: the new ``(h, c, z)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        above_size: int = 0,
        boundary: bool = True,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.boundary = boundary
        outputs = 4 * hidden_size + (1 if boundary else 0)
        self.bottom_up = nn.Linear(input_size, outputs)
        self.recurrent = nn.Linear(hidden_size, outputs, bias=False)
        self.top_down = (
            nn.Linear(above_size, outputs, bias=False) if above_size else None
        )

    def forward(
        self,
        below: Tensor,
        z_below: Tensor,
        state: tuple[Tensor, Tensor, Tensor],
        above: Tensor | None,
        slope: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        h, c, z = state
        s = self.recurrent(h) + z_below * self.bottom_up(below)
        if self.top_down is not None and above is not None:
            s = s + z * self.top_down(above)
        n = self.hidden_size
        f = torch.sigmoid(s[:, :n])
        i = torch.sigmoid(s[:, n : 2 * n])
        o = torch.sigmoid(s[:, 2 * n : 3 * n])
        g = torch.tanh(s[:, 3 * n : 4 * n])

        # FLUSH when this layer ended a segment, else UPDATE at a boundary
        # below, else COPY.
        update = z_below * (f * c + i * g) + (1.0 - z_below) * c
        c_new = z * (i * g) + (1.0 - z) * update
        copy = (1.0 - z) * (1.0 - z_below)
        h_new = copy * h + (1.0 - copy) * o * torch.tanh(c_new)

        if self.boundary:
            z_new = binary_boundary(s[:, 4 * n :], slope)
        else:
            z_new = torch.zeros_like(z)
        return h_new, c_new, z_new


class HMLSTM(nn.Module):
    """Run an HM-LSTM over a sequence; return the last states and the boundaries.

    The time loop is inside this module, which the tracer keeps whole, so the
    model's graph shows the recurrence as one node.

    Args:
        input_size: Features per step.
        hidden_sizes: Units of each layer, bottom first (at least 2 layers).

    Shape:
        - Input: ``[B, T, input_size]``.
        - Output: a pair: the last hidden states of all layers concatenated,
          ``[B, sum(hidden_sizes)]``, and the boundaries ``[B, T, L - 1]`` of
          the layers that have a detector (all but the top), each 0 or 1.
    """

    layershare_leaf = True

    def __init__(self, input_size: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = list(hidden_sizes)
        below = [input_size] + sizes[:-1]
        above = sizes[1:] + [0]
        self.cells = nn.ModuleList(
            HMLSTMCell(below[k], sizes[k], above[k], boundary=k < len(sizes) - 1)
            for k in range(len(sizes))
        )
        self.slope = 1.0

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch = x.shape[0]
        states = [
            (
                x.new_zeros(batch, cell.hidden_size),
                x.new_zeros(batch, cell.hidden_size),
                x.new_zeros(batch, 1),
            )
            for cell in self.cells
        ]
        ones = x.new_ones(batch, 1)
        boundaries = []
        for t in range(x.shape[1]):
            below, z_below = x[:, t], ones
            new_states = []
            for layer, cell in enumerate(self.cells):
                above = states[layer + 1][0] if layer + 1 < len(self.cells) else None
                state = cell(below, z_below, states[layer], above, self.slope)
                new_states.append(state)
                below, z_below = state[0], state[2]
            states = new_states
            boundaries.append(torch.cat([s[2] for s in states[:-1]], dim=1))
        hidden = torch.cat([s[0] for s in states], dim=1)
        return hidden, torch.stack(boundaries, dim=1)


class GatedOutput(nn.Module):
    """The HM-RNN's output module: ``relu(sum_l g_l W_l h_l)``.

    Each layer's hidden state ``h_l`` is mapped by ``W_l`` and weighted by a
    scalar gate ``g_l = sigmoid(w_l · [h_1 ... h_L] + b_l)`` computed from all
    layers, so the output can draw on whichever time scale is useful.

    Args:
        hidden_sizes: Units of each layer.
        output_size: Size of the output embedding.

    Shape:
        - Input: ``[B, sum(hidden_sizes)]``, the layers' states concatenated.
        - Output: ``[B, output_size]``.
    """

    layershare_leaf = True

    def __init__(self, hidden_sizes: Sequence[int], output_size: int) -> None:
        super().__init__()
        self.hidden_sizes = tuple(hidden_sizes)
        self.gates = nn.Linear(sum(self.hidden_sizes), len(self.hidden_sizes))
        self.maps = nn.ModuleList(
            nn.Linear(size, output_size, bias=False) for size in self.hidden_sizes
        )

    def forward(self, hidden: Tensor) -> Tensor:
        gates = torch.sigmoid(self.gates(hidden))
        parts = torch.split(hidden, self.hidden_sizes, dim=1)
        embedding = 0
        for layer, (part, layer_map) in enumerate(zip(parts, self.maps, strict=True)):
            embedding = embedding + gates[:, layer : layer + 1] * layer_map(part)
        return torch.relu(embedding)


class HMRNN(GatedModel):
    """Classify sequences with a hierarchical multiscale LSTM.

    The last hidden states of all layers feed the HM-RNN's gated output
    module (:class:`GatedOutput`) and a linear classifier. The graph is
    coarse (input, recurrence, output module, head, output) because the time
    loop lives inside one node, and it has no edge gates.

    The slope of the boundary detectors' hard sigmoid is annealed linearly,
    ``a = min(max_slope, 1 + slope_rate * epoch)``, by :meth:`set_epoch`,
    which :func:`layershare.train.fit` calls before every epoch.

    Args:
        input_size: Features per step (default: 1, one pixel of the digits
            sequences).
        hidden_sizes: Units of each layer, bottom first; at least two layers
            (default: ``(64, 64)``).
        num_classes: Output classes (default: 10).
        slope_rate: Slope increase per epoch (default: 0.04).
        max_slope: Largest slope (default: 5.0).
        scheme: Sampling scheme (default: ``None``).

    Shape:
        - Input: ``[N, T, input_size]``.
        - Output: ``[N, num_classes]`` logits.

    Example:
        >>> model = HMRNN(hidden_sizes=(8, 8))
        >>> model.boundaries(torch.zeros(2, 64, 1)).shape
        torch.Size([2, 64, 1])
    """

    def __init__(
        self,
        input_size: int = 1,
        hidden_sizes: Sequence[int] = (64, 64),
        num_classes: int = 10,
        slope_rate: float = 0.04,
        max_slope: float = 5.0,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        sizes = tuple(hidden_sizes)
        if len(sizes) < 2:
            raise ValueError(
                f"an HM-RNN needs at least 2 layers, but got hidden_sizes={sizes!r}"
            )
        for value in (input_size, num_classes, *sizes):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"input_size, num_classes and hidden_sizes must be positive "
                    f"ints, but got {value!r}"
                )
        if not slope_rate >= 0:
            raise ValueError(f"slope_rate must be at least 0, but got {slope_rate!r}")
        if not max_slope >= 1:
            raise ValueError(f"max_slope must be at least 1, but got {max_slope!r}")
        self.slope_rate = float(slope_rate)
        self.max_slope = float(max_slope)
        self.rnn = HMLSTM(input_size, sizes)
        self.output = GatedOutput(sizes, sizes[0])
        self.head = nn.Linear(sizes[0], num_classes)

    @property
    def slope(self) -> float:
        """Slope ``a`` of the boundary detectors' hard sigmoid."""
        return self.rnn.slope

    def set_epoch(self, epoch: int) -> None:
        """Anneal the slope to ``min(max_slope, 1 + slope_rate * epoch)``."""
        self.rnn.slope = min(self.max_slope, 1.0 + self.slope_rate * epoch)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.output(self.rnn(x)[0]))

    @torch.no_grad()
    def boundaries(self, x: Tensor) -> Tensor:
        """Return the boundaries the layers below the top detect on ``x``.

        Runs the recurrence in the model's current mode, without gradients.

        Returns:
            ``[N, T, L - 1]`` of 0 or 1: entry ``[n, t, l]`` is 1 when layer
            ``l`` ends a segment at step ``t`` of sequence ``n``.
        """
        return self.rnn(x)[1]
