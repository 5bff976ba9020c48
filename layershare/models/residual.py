"""Residual networks with one gate per residual branch.

Pre-activation blocks (He et al. 2016, "Identity Mappings in Deep Residual
Networks", arXiv 1603.05027) keep the skip path a pure identity, so the
network unravels exactly into ``2**blocks`` paths (Veit, Wilber and Belongie
2016, arXiv 1605.06431) and dropping a branch leaves the identity.
"""

from __future__ import annotations

from torch import Tensor, nn

from layershare._checks import check_positive_ints
from layershare.nn.join import Join
from layershare.nn.module import GatedModel

__all__ = ["ConvBranch", "LinearBranch", "ResNet", "ResidualMLP"]


class ConvBranch(nn.Module):
    """Residual branch BN-ReLU-Conv3x3-BN-ReLU-Conv3x3, kept whole in the graph.

    Args:
        width: Number of channels in and out.
    """

    layershare_leaf = True

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class LinearBranch(nn.Module):
    """Residual branch BN-ReLU-Linear-BN-ReLU-Linear, kept whole in the graph.

    Args:
        width: Number of features in and out.
    """

    layershare_leaf = True

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Linear(width, width),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class _ResidualChain(GatedModel):
    """Stem, ``blocks`` gated residual blocks ``x + g_l F_l(x)``, head."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for branch, join in zip(self.branches, self.joins, strict=True):
            h = join(h, branch(h))
        return self.head(h)

    @property
    def num_blocks(self) -> int:
        """Number of residual blocks."""
        return len(self.branches)


class ResNet(_ResidualChain):
    """Convolutional pre-activation residual net for small images (8x8 digits).

    Args:
        blocks: Number of residual blocks, each with one gated branch
            (default: 8).
        width: Channels of every block (default: 16).
        in_channels: Input channels (default: 1).
        num_classes: Output classes (default: 10).
        scheme: Sampling scheme for training and inference (default: ``None``).

    Shape:
        - Input: ``[N, in_channels, H, W]``.
        - Output: ``[N, num_classes]`` logits.

    Example:
        >>> import torch
        >>> model = ResNet(blocks=3, width=8)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        blocks: int = 8,
        width: int = 16,
        in_channels: int = 1,
        num_classes: int = 10,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        check_positive_ints(
            blocks=blocks, width=width, in_channels=in_channels, num_classes=num_classes
        )
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.branches = nn.ModuleList(ConvBranch(width) for _ in range(blocks))
        self.joins = nn.ModuleList(Join(2, "sum") for _ in range(blocks))
        self.head = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )


class ResidualMLP(_ResidualChain):
    """Fully connected pre-activation residual net.

    Args:
        in_features: Input features (default: 64, the flattened 8x8 digits).
        width: Features of every block (default: 64).
        blocks: Number of residual blocks, each with one gated branch
            (default: 8).
        num_classes: Output classes (default: 10).
        scheme: Sampling scheme for training and inference (default: ``None``).

    Shape:
        - Input: ``[N, in_features]``.
        - Output: ``[N, num_classes]`` logits.
    """

    def __init__(
        self,
        in_features: int = 64,
        width: int = 64,
        blocks: int = 8,
        num_classes: int = 10,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        check_positive_ints(
            in_features=in_features, width=width, blocks=blocks, num_classes=num_classes
        )
        self.stem = nn.Linear(in_features, width)
        self.branches = nn.ModuleList(LinearBranch(width) for _ in range(blocks))
        self.joins = nn.ModuleList(Join(2, "sum") for _ in range(blocks))
        self.head = nn.Sequential(
            nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, num_classes)
        )
