"""Ready models that know their graph and accept ``member=``."""

from layershare.models.fractal import ConvUnit, FractalBlock, FractalNet
from layershare.models.gnn import GCNBranch, TiedGCN
from layershare.models.hmrnn import HMLSTM, HMRNN, HMLSTMCell
from layershare.models.passthrough import (
    HighwayBranch,
    LowRankGRUCell,
    LowRankGRUClassifier,
    LowRankHighwayNet,
    LowRankLinear,
)
from layershare.models.residual import ConvBranch, LinearBranch, ResidualMLP, ResNet
from layershare.models.tied import TiedBranch, TiedResNet
from layershare.models.zoneout import (
    ZoneoutClassifier,
    ZoneoutGRUCell,
    ZoneoutLSTMCell,
)

__all__ = [
    "HMLSTM",
    "HMRNN",
    "ConvBranch",
    "ConvUnit",
    "FractalBlock",
    "FractalNet",
    "GCNBranch",
    "HMLSTMCell",
    "HighwayBranch",
    "LinearBranch",
    "LowRankGRUCell",
    "LowRankGRUClassifier",
    "LowRankHighwayNet",
    "LowRankLinear",
    "ResNet",
    "ResidualMLP",
    "TiedBranch",
    "TiedGCN",
    "TiedResNet",
    "ZoneoutClassifier",
    "ZoneoutGRUCell",
    "ZoneoutLSTMCell",
]
