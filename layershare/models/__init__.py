"""Ready models that know their graph and accept ``member=``."""

from layershare.models.residual import ConvBranch, LinearBranch, ResidualMLP, ResNet

__all__ = ["ConvBranch", "LinearBranch", "ResNet", "ResidualMLP"]
