"""A residual net with one block applied at every depth: an unrolled RNN.

Liao and Poggio 2016, "Bridging the Gaps Between Residual Learning, Recurrent
Neural Networks and Visual Cortex" (arXiv 1604.03640): a residual net whose
blocks share their weights computes ``h_{t+1} = h_t + F(h_t)``, a recurrent
net unrolled for ``T`` steps. Batch normalization inside the shared block can
keep one set of statistics (and affine parameters) per step or share one set
across steps. The distribution of ``h_t`` changes from step to step, so shared
statistics average over steps and fit none of them exactly.

:class:`TiedResNet` offers three variants that differ only in what is shared,
so they compare on equal footing:

* ``tie_weights=True, tie_bn=False`` (default): shared convolutions,
  batch norm per step;
* ``tie_weights=True, tie_bn=True``: everything shared, a true RNN;
* ``tie_weights=False, tie_bn=False``: an ordinary residual net of the same
  shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from layershare._checks import check_positive_int, check_positive_ints
from layershare.nn.join import Join
from layershare.nn.module import GatedModel

__all__ = ["TiedBranch", "TiedResNet"]


class TiedBranch(nn.Module):
    """Residual branch BN-ReLU-Conv3x3-BN-ReLU-Conv3x3 with per-step batch norm.

    The convolutions are one set of weights, and the batch-norm layers come in
    ``norms`` copies. Step ``t`` uses copy ``min(t, norms - 1)``. A branch
    with one copy therefore shares its batch norm across steps, and steps
    beyond the trained ones reuse the last copy.

    Args:
        width: Channels in and out.
        norms: Number of batch-norm copies (default: 1).

    Shape:
        - Input: ``x`` ``[N, width, H, W]`` and the step index ``step``.
        - Output: ``[N, width, H, W]``.
    """

    layershare_leaf = True

    def __init__(self, width: int, norms: int = 1) -> None:
        super().__init__()
        check_positive_int("norms", norms)
        self.bn1 = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(norms))
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(norms))
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor, step: int = 0) -> Tensor:
        i = min(step, len(self.bn1) - 1)
        h = self.conv1(self.relu(self.bn1[i](x)))
        return self.conv2(self.relu(self.bn2[i](h)))


class TiedResNet(GatedModel):
    """A convolutional residual net whose one block is applied ``steps`` times.

    Each step is a gated residual join ``h + g_t F(h, t)``, so stochastic
    depth and drop-path apply per step. With ``tie_weights=True`` the graph
    has ``steps`` branch nodes in one tie group.

    The number of steps can change after training: set :attr:`steps`, or use
    ``with model.unrolled(T): ...`` to change it for a block of code. The
    graph (and so the members) follow the current number of steps, and
    :meth:`graph_key` keys the graph cache on it. Untied weights allow at most
    the trained number of steps. Tied weights allow any number, and steps
    beyond the trained ones reuse the last step's batch norm.

    Args:
        steps: Number of steps ``T`` to train with (default: 4).
        width: Channels of the block (default: 16).
        in_channels: Input channels (default: 1).
        num_classes: Output classes (default: 10).
        tie_weights: Share the block's convolutions across steps
            (default: ``True``).
        tie_bn: Share the block's batch norm (statistics and affine
            parameters) across steps; needs ``tie_weights`` (default:
            ``False``).
        scheme: Sampling scheme for training and inference (default: ``None``).

    Shape:
        - Input: ``[N, in_channels, H, W]``.
        - Output: ``[N, num_classes]`` logits.

    Example:
        >>> model = TiedResNet(steps=3, width=8)
        >>> list(model.graph.ties().values())
        [['branch', 'branch_1', 'branch_2']]
        >>> with model.unrolled(5):
        ...     model.graph.num_gates
        5
    """

    def __init__(
        self,
        steps: int = 4,
        width: int = 16,
        in_channels: int = 1,
        num_classes: int = 10,
        tie_weights: bool = True,
        tie_bn: bool = False,
        scheme=None,
    ) -> None:
        super().__init__(scheme)
        check_positive_ints(
            steps=steps, width=width, in_channels=in_channels, num_classes=num_classes
        )
        if tie_bn and not tie_weights:
            raise ValueError(
                "tie_bn=True needs tie_weights=True: batch norm can only be shared "
                "by steps that share their weights; use tie_bn=False for an "
                "untied net"
            )
        self.tie_weights = bool(tie_weights)
        self.tie_bn = bool(tie_bn)
        self.trained_steps = steps
        self._steps = steps
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        if self.tie_weights:
            self.branch = TiedBranch(width, 1 if tie_bn else steps)
        else:
            self.branches = nn.ModuleList(TiedBranch(width) for _ in range(steps))
        self.join = Join(2, "sum")
        self.head = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )

    @property
    def steps(self) -> int:
        """Number of steps the forward unrolls (default: the trained number)."""
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        check_positive_int("steps", value)
        if not self.tie_weights and value > self.trained_steps:
            raise ValueError(
                f"an untied net has weights for {self.trained_steps} steps, so it "
                f"cannot unroll {value}; use at most {self.trained_steps} steps or "
                f"tie_weights=True"
            )
        self._steps = value

    @contextmanager
    def unrolled(self, steps: int) -> Iterator[TiedResNet]:
        """Unroll ``steps`` steps inside a ``with`` block, then restore the number."""
        previous = self.steps
        self.steps = steps
        try:
            yield self
        finally:
            self.steps = previous

    def graph_key(self) -> int:
        return self.steps

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for t in range(self.steps):
            if self.tie_weights:
                update = self.branch(h, t)
            else:
                update = self.branches[t](h)
            h = self.join(h, update)
        return self.head(h)

    def extra_repr(self) -> str:
        return (
            f"steps={self.steps}, trained_steps={self.trained_steps}, "
            f"tie_weights={self.tie_weights}, tie_bn={self.tie_bn}"
        )
