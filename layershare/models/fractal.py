"""FractalNet: self-similar blocks of columns joined by means over survivors.

Larsson, Maire and Shakhnarovich 2016, "FractalNet: Ultra-Deep Neural Networks
without Residuals" (arXiv 1605.07648). A block of ``C`` columns follows the
expansion rule

    f_1(z) = conv(z)
    f_{C+1}(z) = join(f_C(f_C(z)), conv(z))

where ``join`` is the element-wise mean of its surviving inputs. Expanding the
rule puts joins straight after joins, and consecutive joins are merged into
one. Column ``c`` (0-based, shallowest first) then has ``2**c`` conv units,
the deepest column ``2**(C-1)``, and a join follows every second unit of the
deepest column. A 4-column block has joins of arity 2, 3, 2 and 4.

Each join input is labelled with the column of the conv unit that feeds it,
so :meth:`~layershare.Sampler.columns` finds the members that keep one
column, and global drop-path (:class:`~layershare.DropPath`) keeps the same
column in every block.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from layershare._checks import check_positive_int, check_positive_ints
from layershare.nn.join import Join
from layershare.nn.module import GatedModel

__all__ = ["ConvUnit", "FractalBlock", "FractalNet", "join_layout"]


def join_layout(columns: int) -> list[tuple[int, ...]]:
    """Return the columns that meet at each join of a block, in order.

    Position ``d = 1 .. 2**(columns-1)`` counts conv units of the deepest
    column. A unit of column ``c`` spans ``2**(columns-1-c)`` positions, so
    the column ends a unit wherever ``d`` is a multiple of that span. A join
    forms wherever two or more columns end a unit together.

    Example:
        >>> [len(j) for j in join_layout(4)]
        [2, 3, 2, 4]
    """
    check_positive_int("columns", columns)
    depth = 2 ** (columns - 1)
    layout = []
    for d in range(1, depth + 1):
        ending = tuple(c for c in range(columns) if d % 2 ** (columns - 1 - c) == 0)
        if len(ending) > 1:
            layout.append(ending)
    return layout


class ConvUnit(nn.Module):
    """Conv3x3-BN-ReLU, the unit every column is built of.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
    """

    layershare_leaf = True

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class FractalBlock(nn.Module):
    """One fractal block of ``columns`` columns with merged mean joins.

    The block is not a leaf: tracing its forward puts each conv unit and each
    join in the model's graph.

    Args:
        columns: Number of columns ``C`` (at least 1).
        in_channels: Input channels.
        out_channels: Output channels of every unit.

    Attributes:
        units: ``units[c]`` is column ``c``'s :class:`ConvUnit` sequence,
            ``2**c`` units long.
        joins: The block's joins, in order; their arities follow
            :func:`join_layout`.
    """

    def __init__(self, columns: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.columns = columns
        self.units = nn.ModuleList(
            nn.ModuleList(
                ConvUnit(in_channels if k == 0 else out_channels, out_channels)
                for k in range(2**c)
            )
            for c in range(columns)
        )
        self.joins = nn.ModuleList(
            Join(len(ending), "mean", ("column",) * len(ending), columns=ending)
            for ending in join_layout(columns)
        )

    def forward(self, x: Tensor) -> Tensor:
        depth = 2 ** (self.columns - 1)
        inputs = [x] * self.columns
        joins = iter(self.joins)
        for d in range(1, depth + 1):
            ending = [
                c for c in range(self.columns) if d % 2 ** (self.columns - 1 - c) == 0
            ]
            outputs = [
                self.units[c][d // 2 ** (self.columns - 1 - c) - 1](inputs[c])
                for c in ending
            ]
            joined = outputs[0] if len(outputs) == 1 else next(joins)(*outputs)
            for c in ending:
                inputs[c] = joined
        return inputs[-1]

    def column(self, c: int) -> nn.Sequential:
        """Return column ``c``'s units as a sequence (the modules, not copies)."""
        return nn.Sequential(*self.units[c])


class FractalNet(GatedModel):
    """FractalNet for small images: fractal blocks with max pooling between them.

    Block ``b`` has ``width * 2**b`` channels, doubling per block. A 2x2 max
    pooling follows every block but the last, and the head is global average
    pooling and a linear layer. There is no stem, so every column starts at
    the image.

    Args:
        columns: Columns per block (default: 3).
        blocks: Number of fractal blocks (default: 2). Each pooling halves the
            image, so 8x8 digits allow up to 4 blocks.
        width: Channels of the first block (default: 16).
        in_channels: Input channels (default: 1).
        num_classes: Output classes (default: 10).
        scheme: Sampling scheme, usually :class:`~layershare.DropPath`
            (default: ``None``).

    Shape:
        - Input: ``[N, in_channels, H, W]``.
        - Output: ``[N, num_classes]`` logits.

    Example:
        >>> import torch
        >>> model = FractalNet(columns=3, blocks=2, width=8)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        columns: int = 3,
        blocks: int = 2,
        width: int = 16,
        in_channels: int = 1,
        num_classes: int = 10,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        check_positive_ints(
            columns=columns,
            blocks=blocks,
            width=width,
            in_channels=in_channels,
            num_classes=num_classes,
        )
        self.columns = columns
        channels = [in_channels] + [width * 2**b for b in range(blocks)]
        self.blocks = nn.ModuleList(
            FractalBlock(columns, channels[b], channels[b + 1]) for b in range(blocks)
        )
        self.pools = nn.ModuleList(nn.MaxPool2d(2) for _ in range(blocks - 1))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for b, block in enumerate(self.blocks):
            h = block(h)
            if b < len(self.pools):
                h = self.pools[b](h)
        return self.head(h)

    def column(self, c: int) -> nn.Sequential:
        """Return column ``c`` alone as a standalone network with its trained weights.

        The result is a plain ``nn.Sequential`` (column ``c``'s units of every
        block, the pooling and the head), deep-copied so that training it
        leaves the model unchanged. In eval mode it computes what
        ``model(x, member=m)`` computes for the member ``m`` that keeps only
        column ``c`` (see :meth:`~layershare.Sampler.columns`), because a mean
        join with one survivor passes that input through.

        Args:
            c: Column index, 0 (one unit per block) to ``columns - 1``
                (``2**(columns-1)`` units per block).

        Raises:
            IndexError: When ``c`` is out of range.
        """
        if isinstance(c, bool) or not isinstance(c, int):
            raise TypeError(f"column index must be an int, but got {c!r}")
        if not 0 <= c < self.columns:
            raise IndexError(
                f"column {c} out of range; the model has columns 0..{self.columns - 1}"
            )
        layers: list[nn.Module] = []
        for b, block in enumerate(self.blocks):
            layers.extend(block.units[c])
            if b < len(self.pools):
                layers.append(self.pools[b])
        layers.extend(self.head)
        return copy.deepcopy(nn.Sequential(*layers))
