"""layershare: implicit ensembles and layer sharing in neural networks.

Build or trace a model as a gated DAG, count, enumerate or sample the members
of its implicit ensemble under a scheme (stochastic depth, drop-path), and
evaluate and analyse them.

Example:
    >>> import layershare as ls
    >>> model = ls.models.ResNet(blocks=3, width=8)
    >>> ls.Sampler(model, ls.StochasticDepth(p_last=0.5)).count()
    8
"""

from layershare import errors, metrics, models, nn, train
from layershare.bn import recalibrate_bn
from layershare.engine import evaluate
from layershare.errors import (
    GraphError,
    LayershareError,
    MemberError,
    ModelExecutionError,
    TooManyMembersError,
    UnsupportedError,
    UntraceableModelError,
)
from layershare.graph import Edge, Graph, Node
from layershare.lesion import lesion_members
from layershare.members import Member, Members
from layershare.nn.zoneout import Zoneout
from layershare.sampler import Sampler
from layershare.schemes import DropPath, Scheme, StochasticDepth
from layershare.swapout import Swapout
from layershare.tracing import TracedModel, trace, trace_graph

__version__ = "0.1.0"

__all__ = [
    "DropPath",
    "Edge",
    "Graph",
    "GraphError",
    "LayershareError",
    "Member",
    "MemberError",
    "ModelExecutionError",
    "Members",
    "Node",
    "Sampler",
    "Scheme",
    "StochasticDepth",
    "Swapout",
    "TooManyMembersError",
    "UnsupportedError",
    "TracedModel",
    "UntraceableModelError",
    "Zoneout",
    "errors",
    "evaluate",
    "metrics",
    "models",
    "nn",
    "lesion_members",
    "recalibrate_bn",
    "trace",
    "trace_graph",
    "train",
]
