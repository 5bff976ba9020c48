"""Zoneout LSTM and GRU cells, and a sequence classifier built on them.

Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
Activations" (arXiv 1606.01305). For an LSTM with input, forget and output
gates ``i, f, o`` and candidate ``g``, the zoneout step is

    c_t = d^c_t ⊙ c_{t-1} + (1 - d^c_t) ⊙ (f_t ⊙ c_{t-1} + i_t ⊙ g_t)
    h_t = d^h_t ⊙ h_{t-1} + (1 - d^h_t) ⊙ (o_t ⊙ tanh(f_t ⊙ c_{t-1} + i_t ⊙ g_t))

with ``d^c_t ~ Bernoulli(z_cell)`` and ``d^h_t ~ Bernoulli(z_hidden)`` drawn
per unit, per sample and per step. A GRU has one state, zoned out with
``z_hidden``. The output of each step is ``h_t``, the state carried to the
next step. In eval mode the masks are replaced by their expectations.
"""

from __future__ import annotations

from torch import Tensor, nn

from layershare._checks import check_positive_ints
from layershare.nn.module import GatedModel
from layershare.nn.zoneout import Zoneout, _check_rate, zoneout

__all__ = ["ZoneoutClassifier", "ZoneoutGRUCell", "ZoneoutLSTMCell"]

CELLS = ("lstm", "gru")


class ZoneoutLSTMCell(nn.Module):
    """Run one LSTM step with zoneout on the cell and hidden states.

    Works on its own like :class:`torch.nn.Dropout`: it draws masks in
    training mode and uses their expectations in eval mode.

    Args:
        input_size: Features of the input at each step.
        hidden_size: Units of the cell and hidden states.
        z_cell: Zoneout probability of the cell state (default: 0.5).
        z_hidden: Zoneout probability of the hidden state (default: 0.05).
        bias: Whether the gates have biases (default: ``True``).

    Shape:
        - Input: ``x`` ``[B, input_size]`` and an optional state ``(h, c)``,
          each ``[B, hidden_size]`` (default: zeros).
        - Output: the next state ``(h, c)``, each ``[B, hidden_size]``; ``h``
          is also the step's output.

    Example:
        >>> import torch
        >>> cell = ZoneoutLSTMCell(3, 5, z_cell=0.5, z_hidden=0.05)
        >>> h, c = cell(torch.randn(2, 3))
        >>> h.shape
        torch.Size([2, 5])
    """

    layershare_zoneout = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        z_cell: float = 0.5,
        z_hidden: float = 0.05,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.z_cell = _check_rate("z_cell", z_cell)
        self.z_hidden = _check_rate("z_hidden", z_hidden)
        self.hidden_size = hidden_size
        self.cell = nn.LSTMCell(input_size, hidden_size, bias=bias)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, c = state
        h_new, c_new = self.cell(x, (h, c))
        c_next = zoneout(c, c_new, self.z_cell, self.training)
        h_next = zoneout(h, h_new, self.z_hidden, self.training)
        return h_next, c_next

    def extra_repr(self) -> str:
        return f"z_cell={self.z_cell}, z_hidden={self.z_hidden}"


class ZoneoutGRUCell(nn.Module):
    """Run one GRU step with zoneout on the hidden state.

    Args:
        input_size: Features of the input at each step.
        hidden_size: Units of the hidden state.
        z_hidden: Zoneout probability of the hidden state (default: 0.05).
        bias: Whether the gates have biases (default: ``True``).

    Shape:
        - Input: ``x`` ``[B, input_size]`` and an optional state ``h``
          ``[B, hidden_size]`` (default: zeros).
        - Output: the next state ``h`` ``[B, hidden_size]``, also the step's
          output.

    Example:
        >>> import torch
        >>> cell = ZoneoutGRUCell(3, 5, z_hidden=0.1)
        >>> cell(torch.randn(2, 3)).shape
        torch.Size([2, 5])
    """

    layershare_zoneout = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        z_hidden: float = 0.05,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.z_hidden = _check_rate("z_hidden", z_hidden)
        self.hidden_size = hidden_size
        self.cell = nn.GRUCell(input_size, hidden_size, bias=bias)

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        if state is None:
            state = x.new_zeros(x.shape[0], self.hidden_size)
        return zoneout(state, self.cell(x, state), self.z_hidden, self.training)

    def extra_repr(self) -> str:
        return f"z_hidden={self.z_hidden}"


class ZoneoutRecurrence(nn.Module):
    """Run a zoneout cell over a sequence and return the last hidden state.

    The time loop is inside this module, which the tracer keeps whole, so the
    model's graph shows the recurrence as one node.

    Args:
        cell: A :class:`ZoneoutLSTMCell` or :class:`ZoneoutGRUCell`.

    Shape:
        - Input: ``[B, T, input_size]``.
        - Output: ``[B, hidden_size]``.
    """

    layershare_leaf = True

    def __init__(self, cell: ZoneoutLSTMCell | ZoneoutGRUCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        state = None
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return state[0] if isinstance(state, tuple) else state


class ZoneoutClassifier(GatedModel):
    """Classify sequences with one zoneout LSTM or GRU layer and a linear head.

    The rates come from the scheme: assigning a :class:`~layershare.Zoneout`
    scheme (directly or through :func:`layershare.train.fit`) sets them on the
    cell, and ``scheme=None`` sets both to 0, the plain recurrent net.

    The graph is coarse: input, recurrence, head, output. The time loop lives
    inside the recurrence node, and zoneout acts on units within it, so the
    graph has no edge gates and the sampler counts one member.

    Args:
        cell: ``"lstm"`` or ``"gru"`` (default: ``"lstm"``).
        input_size: Features per step (default: 1, one pixel of the digits
            sequences).
        hidden_size: Units of the recurrent state (default: 64).
        num_classes: Output classes (default: 10).
        scheme: A :class:`~layershare.Zoneout` scheme or ``None``
            (default: ``None``).

    Shape:
        - Input: ``[N, T, input_size]``.
        - Output: ``[N, num_classes]`` logits.

    Example:
        >>> import torch
        >>> model = ZoneoutClassifier("gru", hidden_size=8, scheme=Zoneout(0.5, 0.1))
        >>> model(torch.zeros(2, 64, 1)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        cell: str = "lstm",
        input_size: int = 1,
        hidden_size: int = 64,
        num_classes: int = 10,
        scheme: Zoneout | None = None,
    ) -> None:
        super().__init__(None)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, but got {cell!r}")
        check_positive_ints(
            input_size=input_size, hidden_size=hidden_size, num_classes=num_classes
        )
        if cell == "lstm":
            unit = ZoneoutLSTMCell(input_size, hidden_size, 0.0, 0.0)
        else:
            unit = ZoneoutGRUCell(input_size, hidden_size, 0.0)
        self.recurrence = ZoneoutRecurrence(unit)
        self.head = nn.Linear(hidden_size, num_classes)
        self.scheme = scheme

    @property
    def scheme(self) -> Zoneout | None:
        """The zoneout scheme; assigning it sets the cell's rates."""
        return self.__dict__.get("_scheme")

    @scheme.setter
    def scheme(self, value: Zoneout | None) -> None:
        if value is not None and not isinstance(value, Zoneout):
            raise TypeError(
                f"{type(self).__name__} trains with a Zoneout scheme or None, but "
                f"got {type(value).__name__}"
            )
        self.__dict__["_scheme"] = value
        if "recurrence" not in self._modules:
            return
        (value if value is not None else Zoneout(0.0, 0.0)).configure(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.recurrence(x))
