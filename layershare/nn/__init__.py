"""Building blocks for gated models: joins and the gated-model base class."""

from layershare.nn.join import ROLES, RULES, Join, combine
from layershare.nn.module import GatedModel

__all__ = ["ROLES", "RULES", "GatedModel", "Join", "combine"]
