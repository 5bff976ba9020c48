"""Low-rank passthrough networks: highway nets and GRUs with low-rank transitions.

Miceli Barone 2016, "Low-rank passthrough neural networks" (arXiv 1603.03116).
In a passthrough network (highway net, GRU, LSTM) the state passes from one
layer or step to the next through gates. Its width can then grow without a
quadratic number of parameters when the state transition matrices are
low-rank, ``W = U V`` with ``U`` ``[n, r]`` and ``V`` ``[r, n]``, or
low-rank plus diagonal, ``W = U V + diag(d)``.

:class:`LowRankLinear` is that parametrization; :class:`LowRankHighwayNet`
and :class:`LowRankGRUClassifier` use it for every state transition, with the
rank chosen per layer, and report their parameter counts with
``parameter_counts()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from layershare._checks import check_positive_int
from layershare.nn.join import Join
from layershare.nn.module import GatedModel

__all__ = [
    "HighwayBranch",
    "LowRankGRU",
    "LowRankGRUCell",
    "LowRankGRUClassifier",
    "LowRankHighwayNet",
    "LowRankLinear",
]


def _check_ranks(ranks: Sequence[int], width: int) -> tuple[int, ...]:
    if isinstance(ranks, int) or not isinstance(ranks, Sequence) or not ranks:
        raise ValueError(
            f"ranks must be a non-empty sequence with one rank per layer, but got "
            f"{ranks!r}"
        )
    for rank in ranks:
        check_positive_int("each rank", rank)
        if rank > width:
            raise ValueError(
                f"a rank cannot exceed the state width {width}, but got {rank}"
            )
    return tuple(ranks)


class LowRankLinear(nn.Module):
    """Apply ``y = x (U V + diag(d))^T + b``, a linear map of limited rank.

    ``U`` and ``V`` are initialized so that ``U V`` has the entry variance
    of :class:`torch.nn.Linear`'s default, ``1 / (3 in_features)``. ``d``
    starts at 0, so training starts from the low-rank matrix.

    Args:
        in_features: Input features.
        out_features: Output features.
        rank: Rank ``r`` of ``U V`` (at most ``min(in_features,
            out_features)``).
        diagonal: Add a learned diagonal ``d``; needs a square map
            (default: ``False``).
        bias: Add a learned bias (default: ``True``).

    Shape:
        - Input: ``[*, in_features]``.
        - Output: ``[*, out_features]``.

    Example:
        >>> layer = LowRankLinear(64, 64, rank=4, diagonal=True)
        >>> layer.num_parameters, layer.full_rank_parameters
        (640, 4160)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        diagonal: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        check_positive_int("rank", rank)
        if rank > min(in_features, out_features):
            raise ValueError(
                f"rank must be at most min(in_features, out_features) = "
                f"{min(in_features, out_features)}, but got {rank}"
            )
        if diagonal and in_features != out_features:
            raise ValueError(
                f"a diagonal term needs a square map, but got in_features="
                f"{in_features} and out_features={out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.u = nn.Parameter(torch.empty(out_features, rank))
        self.v = nn.Parameter(torch.empty(rank, in_features))
        self.d = nn.Parameter(torch.zeros(in_features)) if diagonal else None
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw ``U``, ``V`` and the bias uniformly; set ``d`` to 0."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.v, -bound, bound)
        nn.init.uniform_(
            self.u, -math.sqrt(3.0 / self.rank), math.sqrt(3.0 / self.rank)
        )
        if self.d is not None:
            nn.init.zeros_(self.d)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> Tensor:
        """The full matrix ``U V + diag(d)``, ``[out_features, in_features]``."""
        weight = self.u @ self.v
        return weight if self.d is None else weight + torch.diag(self.d)

    @property
    def num_parameters(self) -> int:
        """Number of parameters: ``r (in + out)``, plus ``d`` and the bias."""
        return sum(p.numel() for p in self.parameters())

    @property
    def full_rank_parameters(self) -> int:
        """Parameters of the full-rank :class:`torch.nn.Linear` it replaces."""
        bias = self.out_features if self.bias is not None else 0
        return self.in_features * self.out_features + bias

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(F.linear(x, self.v), self.u, self.bias)
        return y if self.d is None else y + self.d * x

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, diagonal={self.d is not None}, "
            f"bias={self.bias is not None}"
        )


class HighwayBranch(nn.Module):
    """The update ``T(x) ⊙ (H(x) - x)`` of a highway layer with low-rank maps.

    A highway layer computes ``y = T ⊙ H + (1 - T) ⊙ x`` with
    ``H = relu(W_H x + b_H)`` and ``T = sigmoid(W_T x + b_T)``. Written as
    ``y = x + T ⊙ (H - x)``, it is a residual join, so dropping the branch
    leaves the identity and stochastic depth applies. Both ``W_H`` and
    ``W_T`` are :class:`LowRankLinear` maps.

    Args:
        width: Features in and out.
        rank: Rank of ``W_H`` and ``W_T``.
        diagonal: Add a diagonal to both (default: ``True``).
        gate_bias: Initial ``b_T``; a negative value starts the layer close
            to the identity (default: -1.0).
    """

    layershare_leaf = True

    def __init__(
        self, width: int, rank: int, diagonal: bool = True, gate_bias: float = -1.0
    ) -> None:
        super().__init__()
        self.transform = LowRankLinear(width, width, rank, diagonal)
        self.gate = LowRankLinear(width, width, rank, diagonal)
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.transform(x))
        t = torch.sigmoid(self.gate(x))
        return t * (h - x)


def _layer_counts(layers: Sequence[nn.Module], ranks: Sequence[int]) -> list[dict]:
    """Count each layer's parameters and those of its full-rank equivalent."""
    counts = []
    for index, (layer, rank) in enumerate(zip(layers, ranks, strict=True)):
        maps = [m for m in layer.modules() if isinstance(m, LowRankLinear)]
        low_rank = sum(m.num_parameters for m in maps)
        full_rank = sum(m.full_rank_parameters for m in maps)
        total = sum(p.numel() for p in layer.parameters())
        counts.append(
            {
                "layer": index,
                "rank": rank,
                "parameters": total,
                "full_rank_parameters": total - low_rank + full_rank,
            }
        )
    return counts


class LowRankHighwayNet(GatedModel):
    """A fully connected highway net whose layers use low-rank (plus diagonal) maps.

    The stem maps the input to ``width`` features. Each layer ``l`` is a
    gated residual join ``x + g_l T(x) ⊙ (H(x) - x)`` whose maps have rank
    ``ranks[l]``, and the head is a linear classifier.

    Args:
        in_features: Input features (default: 64, the flattened 8x8 digits).
        width: State width (default: 64).
        ranks: Rank of each layer's maps; its length sets the number of layers
            (default: ``(8, 8, 8, 8)``).
        diagonal: Use low-rank plus diagonal maps (default: ``True``).
        num_classes: Output classes (default: 10).
        scheme: Sampling scheme for training and inference (default: ``None``).

    Shape:
        - Input: ``[N, in_features]``.
        - Output: ``[N, num_classes]`` logits.

    Example:
        >>> model = LowRankHighwayNet(width=32, ranks=(4, 2))
        >>> [c["rank"] for c in model.parameter_counts()]
        [4, 2]
    """

    def __init__(
        self,
        in_features: int = 64,
        width: int = 64,
        ranks: Sequence[int] = (8, 8, 8, 8),
        diagonal: bool = True,
        num_classes: int = 10,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        check_positive_int("in_features", in_features)
        check_positive_int("width", width)
        check_positive_int("num_classes", num_classes)
        self.ranks = _check_ranks(ranks, width)
        self.stem = nn.Linear(in_features, width)
        self.branches = nn.ModuleList(
            HighwayBranch(width, rank, diagonal) for rank in self.ranks
        )
        self.joins = nn.ModuleList(Join(2, "sum") for _ in self.ranks)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.stem(x))
        for branch, join in zip(self.branches, self.joins, strict=True):
            h = join(h, branch(h))
        return self.head(h)

    def parameter_counts(self) -> list[dict]:
        """Return each layer's rank, parameter count and full-rank parameter count.

        Returns:
            One dictionary per layer with keys ``"layer"``, ``"rank"``,
            ``"parameters"`` and ``"full_rank_parameters"`` (the count with
            every low-rank map replaced by a full ``nn.Linear``).
        """
        return _layer_counts(self.branches, self.ranks)


class LowRankGRUCell(nn.Module):
    """Run one GRU step whose state transition matrices are low-rank.

    The GRU step

        z = sigmoid(W_z x + U_z h + b_z)
        r = sigmoid(W_r x + U_r h + b_r)
        h̃ = tanh(W_h x + U_h (r ⊙ h) + b_h)
        h' = (1 - z) ⊙ h + z ⊙ h̃

    with each ``U`` a :class:`LowRankLinear` of rank ``rank``; the input maps
    ``W`` are full.

    Args:
        input_size: Features of the input at each step.
        hidden_size: Units of the state.
        rank: Rank of ``U_z``, ``U_r`` and ``U_h``.
        diagonal: Add a diagonal to each ``U`` (default: ``True``).

    Shape:
        - Input: ``x`` ``[B, input_size]`` and the state ``h``
          ``[B, hidden_size]``.
        - Output: the next state ``[B, hidden_size]``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, rank: int, diagonal: bool = True
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.inputs = nn.Linear(input_size, 3 * hidden_size)
        self.update = LowRankLinear(hidden_size, hidden_size, rank, diagonal, False)
        self.reset = LowRankLinear(hidden_size, hidden_size, rank, diagonal, False)
        self.candidate = LowRankLinear(hidden_size, hidden_size, rank, diagonal, False)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        x_z, x_r, x_h = self.inputs(x).chunk(3, dim=-1)
        z = torch.sigmoid(x_z + self.update(h))
        r = torch.sigmoid(x_r + self.reset(h))
        candidate = torch.tanh(x_h + self.candidate(r * h))
        return h + z * (candidate - h)


class LowRankGRU(nn.Module):
    """Run stacked low-rank GRU layers over a sequence; return the top last state.

    The time loop is inside this module, which the tracer keeps whole.

    Args:
        input_size: Features per step.
        hidden_size: Units of every layer's state.
        ranks: Rank of each layer's transitions; its length sets the number
            of layers.
        diagonal: Add diagonals to the transitions (default: ``True``).

    Shape:
        - Input: ``[B, T, input_size]``.
        - Output: ``[B, hidden_size]``.
    """

    layershare_leaf = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        ranks: Sequence[int],
        diagonal: bool = True,
    ) -> None:
        super().__init__()
        sizes = [input_size] + [hidden_size] * (len(ranks) - 1)
        self.cells = nn.ModuleList(
            LowRankGRUCell(size, hidden_size, rank, diagonal)
            for size, rank in zip(sizes, ranks, strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        states = [x.new_zeros(x.shape[0], c.hidden_size) for c in self.cells]
        for t in range(x.shape[1]):
            h = x[:, t]
            for layer, cell in enumerate(self.cells):
                h = states[layer] = cell(h, states[layer])
        return states[-1]


class LowRankGRUClassifier(GatedModel):
    """Classify sequences with stacked low-rank GRU layers and a linear head.

    The graph is coarse (input, recurrence, head, output) because the time
    loop lives inside one node; it has no edge gates.

    Args:
        input_size: Features per step (default: 1, one pixel of the digits
            sequences).
        hidden_size: State units of each layer (default: 64).
        ranks: Rank of each layer's transitions; its length sets the number of
            layers (default: ``(8,)``).
        diagonal: Use low-rank plus diagonal transitions (default: ``True``).
        num_classes: Output classes (default: 10).
        scheme: Sampling scheme (default: ``None``).

    Shape:
        - Input: ``[N, T, input_size]``.
        - Output: ``[N, num_classes]`` logits.
    """

    def __init__(
        self,
        input_size: int = 1,
        hidden_size: int = 64,
        ranks: Sequence[int] = (8,),
        diagonal: bool = True,
        num_classes: int = 10,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("num_classes", num_classes)
        self.ranks = _check_ranks(ranks, hidden_size)
        self.recurrence = LowRankGRU(input_size, hidden_size, self.ranks, diagonal)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.recurrence(x))

    def parameter_counts(self) -> list[dict]:
        """Return each layer's rank, parameter count and full-rank parameter count.

        Returns:
            One dictionary per layer with keys ``"layer"``, ``"rank"``,
            ``"parameters"`` and ``"full_rank_parameters"`` (the count with
            every low-rank transition replaced by a full ``nn.Linear``).
        """
        return _layer_counts(self.recurrence.cells, self.ranks)
