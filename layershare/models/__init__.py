"""Ready models that know their graph and accept ``member=``."""

from layershare.models.gnn import GCNBranch, TiedGCN
from layershare.models.residual import ConvBranch, LinearBranch, ResidualMLP, ResNet

__all__ = [
    "ConvBranch",
    "GCNBranch",
    "LinearBranch",
    "ResNet",
    "ResidualMLP",
    "TiedGCN",
]
