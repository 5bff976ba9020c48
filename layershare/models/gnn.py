"""A graph convolutional net with one GCN layer shared across depth.

Graph convolutions applied as residual blocks ``h + g_k F(h)`` whose branch
``F(h) = GCNConv(relu(h))`` reuses one ``torch_geometric.nn.GCNConv`` at every
depth. That is a residual net with tied weights, or an unrolled recurrent
message-passing net. The gates make stochastic depth and drop-path apply to
the residual connections.

The forward takes node features and the graph's ``edge_index`` positionally.
Node features may carry leading batch dimensions, ``[B, N, F]``, for ``B``
copies of one graph (``GCNConv`` treats the second-to-last dimension as the
node dimension), which is how several members run at once.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from layershare._checks import check_positive_ints
from layershare.nn.join import Join
from layershare.nn.module import GatedModel

__all__ = ["GCNBranch", "TiedGCN"]


class GCNBranch(nn.Module):
    """Residual branch ``GCNConv(relu(h), edge_index)``, kept whole in the graph.

    Args:
        channels: Node features in and out.
        dropout: Dropout rate on the branch input in training (default: 0.0).

    Shape:
        - Input: node features ``[*, N, channels]`` and ``edge_index``
          ``[2, E]``.
        - Output: ``[*, N, channels]``.
    """

    layershare_leaf = True

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.conv = GCNConv(channels, channels)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.conv(self.dropout(x.relu()), edge_index)


class TiedGCN(GatedModel):
    """Node classifier: linear stem, ``layers`` gated GCN residual blocks, linear head.

    With ``tie_weights=True`` one :class:`GCNBranch` serves every block, so
    the graph shows ``layers`` branch nodes in one tie group; with
    ``tie_weights=False`` each block has its own.

    Args:
        in_channels: Node input features (default: 34, the karate club's
            one-hot features).
        hidden: Node features inside the blocks (default: 16).
        layers: Number of residual blocks (default: 4).
        num_classes: Output classes (default: 4, the karate club's
            communities).
        tie_weights: Share one GCN layer across depth (default: ``True``).
        dropout: Dropout on each branch input in training (default: 0.0).
        scheme: Sampling scheme, such as
            ``ls.DropPath(local=0.2, global_ratio=0.0)`` or
            ``ls.StochasticDepth(...)`` (default: ``None``).

    Shape:
        - Input: node features ``[N, in_channels]`` (or ``[B, N,
          in_channels]`` for ``B`` copies of the graph) and ``edge_index``
          ``[2, E]``.
        - Output: logits ``[N, num_classes]`` (or ``[B, N, num_classes]``).

    Example:
        >>> from layershare.data import karate_club
        >>> graph = karate_club()
        >>> model = TiedGCN(layers=3)
        >>> model(graph.x, graph.edge_index).shape
        torch.Size([34, 4])
    """

    def __init__(
        self,
        in_channels: int = 34,
        hidden: int = 16,
        layers: int = 4,
        num_classes: int = 4,
        tie_weights: bool = True,
        dropout: float = 0.0,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        check_positive_ints(
            in_channels=in_channels,
            hidden=hidden,
            layers=layers,
            num_classes=num_classes,
        )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), but got {dropout!r}")
        self.tie_weights = bool(tie_weights)
        self.layers = layers
        self.stem = nn.Linear(in_channels, hidden)
        if self.tie_weights:
            self.branch = GCNBranch(hidden, dropout)
        else:
            self.branches = nn.ModuleList(
                GCNBranch(hidden, dropout) for _ in range(layers)
            )
        self.join = Join(2, "sum")
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = self.stem(x)
        for k in range(self.layers):
            if self.tie_weights:
                update = self.branch(h, edge_index)
            else:
                update = self.branches[k](h, edge_index)
            h = self.join(h, update)
        return self.head(h)
