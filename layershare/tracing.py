"""Derive a layershare graph from a model's forward with ``torch.fx``.

Layershare joins, modules whose class sets ``layershare_leaf = True`` and
modules the caller names in ``leaves`` stay whole, so the graph is the
block-level architecture a person would draw. A module called several times
(a weight-tied block) gives several nodes in one tie group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch.fx as fx
from torch import nn

from layershare.errors import UntraceableModelError
from layershare.graph import Edge, Graph, Node, count_parameters
from layershare.nn.join import Join

__all__ = ["LayershareTracer", "trace_graph"]


class LayershareTracer(fx.Tracer):
    """A ``torch.fx`` tracer that keeps joins and layershare blocks as leaves.

    Args:
        leaves: Extra module classes to keep whole (default: none).
    """

    def __init__(self, leaves: Sequence[type[nn.Module]] = ()) -> None:
        super().__init__()
        self.leaves = tuple(leaves)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, Join) or getattr(m, "layershare_leaf", False):
            return True
        if self.leaves and isinstance(m, self.leaves):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace_graph(
    model: nn.Module,
    leaves: Sequence[type[nn.Module]] = (),
    concrete_args: dict | None = None,
) -> Graph:
    """Trace a model's forward into a :class:`~layershare.graph.Graph`.

    Args:
        model: The model to trace.
        leaves: Extra module classes to keep whole (default: none).
        concrete_args: Forward arguments fixed during tracing, passed to
            ``torch.fx.Tracer.trace`` (default: ``None``).

    Returns:
        The graph, whose ``fx_graph`` is the traced ``torch.fx.Graph`` that the
        engine interprets.

    Raises:
        UntraceableModelError: When ``torch.fx`` cannot trace the forward; the
            message names the operation that stopped the tracer.
    """
    tracer = LayershareTracer(leaves)
    try:
        fx_graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as exc:  # torch.fx raises many types: report them as one
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        operation = (
            f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        )
        raise UntraceableModelError(type(model).__name__, operation) from exc
    return graph_from_fx(model, fx_graph)


def graph_from_fx(model: nn.Module, fx_graph: fx.Graph) -> Graph:
    """Build a :class:`Graph` from a traced ``torch.fx.Graph`` of ``model``."""
    calls = Counter(n.target for n in fx_graph.nodes if n.op == "call_module")
    nodes: list[Node] = []
    edges: list[Edge] = []
    kept: set[str] = set()
    for n in fx_graph.nodes:
        # Constants and results nobody uses are not part of the architecture.
        if n.op == "get_attr" or (n.op != "output" and not n.users):
            continue
        if n.op == "placeholder":
            nodes.append(Node(n.name, "input", target=str(n.target)))
        elif n.op == "output":
            nodes.append(Node(n.name, "output", target="output"))
        elif n.op == "call_module":
            module = model.get_submodule(n.target)
            tie = n.target if calls[n.target] > 1 else None
            kind = "join" if isinstance(module, Join) else "op"
            rule = module.rule if isinstance(module, Join) else None
            nodes.append(
                Node(n.name, kind, rule, str(n.target), tie, count_parameters(module))
            )
        else:
            target = getattr(n.target, "__name__", str(n.target))
            nodes.append(Node(n.name, "op", target=target))
        kept.add(n.name)
        edges.extend(_edges_into(model, n, kept))
    return Graph(nodes, edges, fx_graph=fx_graph)


def _edges_into(model: nn.Module, n: fx.Node, kept: set[str]) -> list[Edge]:
    """Return the edges entering fx node ``n`` from kept nodes, in argument order."""
    sources: list[fx.Node] = []
    fx.node.map_arg((n.args, n.kwargs), lambda a: sources.append(a) or a)
    sources = [s for s in sources if s.name in kept]
    if n.op == "call_module":
        module = model.get_submodule(n.target)
        if isinstance(module, Join):
            if len(n.args) != module.num_inputs or len(sources) != module.num_inputs:
                raise UntraceableModelError(
                    type(model).__name__,
                    f"join {n.target!r} must be called with {module.num_inputs} "
                    f"tensor arguments, but got {len(n.args)}",
                )
            columns = module.columns or (None,) * module.num_inputs
            return [
                Edge(s.name, n.name, role, column)
                for s, role, column in zip(sources, module.roles, columns, strict=True)
            ]
    return [Edge(s.name, n.name) for s in sources]
