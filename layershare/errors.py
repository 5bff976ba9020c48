"""Exception hierarchy for domain failures in layershare.

Argument errors raise the built-in :class:`ValueError` or :class:`TypeError`.
The classes below cover failures that carry numbers or names a caller may want
to read programmatically: a graph that breaks a structural rule, an ensemble
too large to enumerate, a model that ``torch.fx`` cannot trace, a member that
does not fit its graph.
"""

from __future__ import annotations

__all__ = [
    "GraphError",
    "LayershareError",
    "MemberError",
    "ModelExecutionError",
    "TooManyMembersError",
    "UnsupportedError",
    "UntraceableModelError",
]


class LayershareError(Exception):
    """Base class of every domain error raised by layershare."""


class GraphError(LayershareError, ValueError):
    """A graph breaks a structural rule (cycle, unreachable node, bad gate).

    Args:
        message: What is wrong and what to do.
        nodes: Names of the nodes involved, in a meaningful order (for a cycle,
            the order along the cycle).
    """

    def __init__(self, message: str, nodes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.nodes = tuple(nodes)


class TooManyMembersError(LayershareError):
    """An ensemble has more members than the enumeration limit allows.

    Args:
        count: Exact number of distinct members.
        limit: The limit in force.
    """

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"the ensemble has {count} distinct members, more than the "
            f"enumeration limit of {limit}; draw members with "
            f"Sampler.sample(n, seed=...) instead, or raise the limit with "
            f"Sampler(..., max_members=...)"
        )
        self.count = count
        self.limit = limit


class UntraceableModelError(LayershareError, TypeError):
    """``torch.fx`` could not trace a model into a layershare graph.

    Args:
        model: Class name of the model.
        operation: The operation or message that stopped the tracer.
    """

    def __init__(self, model: str, operation: str) -> None:
        super().__init__(
            f"cannot trace {model} with torch.fx: {operation}. Mark the "
            f"offending submodule as a leaf (set `layershare_leaf = True` on "
            f"its class or pass it in `leaves=`) so the tracer keeps it whole"
        )
        self.model = model
        self.operation = operation


class MemberError(LayershareError, ValueError):
    """A member does not fit the graph it is used with."""


class UnsupportedError(LayershareError, NotImplementedError):
    """An operation is not defined or not implemented for this graph or scheme.

    The message names the supported cases and what to use instead.
    """


class ModelExecutionError(LayershareError, RuntimeError):
    """A node of the model's graph failed while the engine ran it.

    The message names the model, the node, the shapes and dtypes of the
    inputs and the original error, which is kept as ``__cause__``. Inputs of
    the wrong shape or dtype are the usual cause.

    Args:
        message: What failed and what to check.
        node: Name of the graph node that failed.
    """

    def __init__(self, message: str, node: str) -> None:
        super().__init__(message)
        self.node = node
