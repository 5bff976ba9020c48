"""Derive a layershare graph from a model's forward with ``torch.fx``.

Layershare joins, modules whose class sets ``layershare_leaf = True`` and
modules the caller names in ``leaves`` stay whole, so the graph is the
block-level architecture a person would draw. A module with parameters called
several times (a weight-tied block) gives several nodes in one tie group.

:func:`trace_graph` reads the graph of a layershare model. :func:`trace` turns
an ordinary residual ``nn.Module`` into a layershare model: each residual
addition becomes a gated join and each drop-path call becomes the identity,
the gate on the join taking its role.
"""

from __future__ import annotations

import logging
import operator
import os
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from layershare.errors import UntraceableModelError
from layershare.graph import Edge, Graph, Node, count_parameters
from layershare.nn.join import Join
from layershare.nn.module import GatedModel

__all__ = [
    "DROP_PATH_NAMES",
    "LayershareTracer",
    "TracedModel",
    "trace",
    "trace_graph",
]

logger = logging.getLogger(__name__)

DROP_PATH_NAMES = ("drop_path", "stochastic_depth", "DropPath", "StochasticDepth")
"""Names of functions and module classes that :func:`trace` treats as drop-path.

They cover torchvision's ``stochastic_depth`` and ``StochasticDepth``, timm's
``drop_path`` and ``DropPath``, and a user's function of either name.
"""

_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add, torch.Tensor.add)

_TORCH_DIR = os.path.dirname(torch.__file__)


class LayershareTracer(fx.Tracer):
    """A ``torch.fx`` tracer that keeps joins and layershare blocks as leaves.

    Args:
        leaves: Extra module classes to keep whole (default: none).
        autowrap_functions: Functions to record as single calls instead of
            tracing through them (default: none).
    """

    def __init__(
        self,
        leaves: Sequence[type[nn.Module]] = (),
        autowrap_functions: Sequence[Callable[..., Any]] = (),
    ) -> None:
        super().__init__(autowrap_functions=tuple(autowrap_functions))
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
    fx_graph = _trace_or_raise(tracer, model, concrete_args)
    return graph_from_fx(model, fx_graph)


def _trace_or_raise(
    tracer: fx.Tracer, model: nn.Module, concrete_args: dict | None = None
) -> fx.Graph:
    """Trace ``model``, turning any failure into an :class:`UntraceableModelError`.

    The error names the source line that stopped the tracer (the last frame
    of the traceback outside torch) and torch.fx's message.
    """
    try:
        return tracer.trace(model, concrete_args=concrete_args)
    except Exception as exc:  # torch.fx raises many types: report them as one
        message = str(exc).strip()
        first_line = message.splitlines()[0] if message else ""
        operation = f"{type(exc).__name__}: {first_line}" if first_line else ""
        operation = operation or type(exc).__name__
        frames = [
            frame
            for frame in traceback.extract_tb(exc.__traceback__)
            if not frame.filename.startswith(_TORCH_DIR)
            and os.path.abspath(frame.filename) != os.path.abspath(__file__)
        ]
        if frames and frames[-1].line:
            frame = frames[-1]
            where = os.path.basename(frame.filename)
            operation = (
                f"`{frame.line.strip()}` in {frame.name} ({where}, line "
                f"{frame.lineno}) raised {operation}"
            )
        raise UntraceableModelError(type(model).__name__, operation) from exc


def graph_from_fx(model: nn.Module, fx_graph: fx.Graph) -> Graph:
    """Build a :class:`Graph` from a traced ``torch.fx.Graph`` of ``model``."""
    calls = Counter(n.target for n in fx_graph.nodes if n.op == "call_module")
    nodes: list[Node] = []
    edges: list[Edge] = []
    kept: set[str] = set()
    for n in fx_graph.nodes:
        # Constants and unused results are not part of the architecture.
        if n.op == "get_attr" or (n.op != "output" and not n.users):
            continue
        if n.op == "placeholder":
            nodes.append(Node(n.name, "input", target=str(n.target)))
        elif n.op == "output":
            nodes.append(Node(n.name, "output", target="output"))
        elif n.op == "call_module":
            module = model.get_submodule(n.target)
            num_params = count_parameters(module)

            # Calls of one module form a tie group only when they share
            # parameters; a join or activation called twice shares nothing.
            tie = n.target if calls[n.target] > 1 and num_params else None
            kind = "join" if isinstance(module, Join) else "op"
            rule = module.rule if isinstance(module, Join) else None
            nodes.append(Node(n.name, kind, rule, str(n.target), tie, num_params))
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


class TracedModel(GatedModel):
    """A layershare model made by :func:`trace` from an ordinary ``nn.Module``.

    It contains the submodules of the traced ``torch.fx.GraphModule`` under their
    original names (so ``load_state_dict`` accepts the original model's
    state), plus one :class:`~layershare.nn.Join` per residual addition, and
    the rewritten ``torch.fx.Graph`` as :attr:`fx_graph`. Its layershare
    graph is derived from that, so the sampler, ``model(x, member=m)`` and
    :func:`~layershare.evaluate` work as for any layershare model.

    Args:
        module: The rewritten graph module.
        scheme: Sampling scheme for training and inference (default: ``None``).
    """

    def __init__(self, module: fx.GraphModule, scheme=None) -> None:
        super().__init__(scheme)
        self.traced_class = type(module).__name__
        targets = {
            str(n.target).split(".")[0]
            for n in module.graph.nodes
            if n.op in ("call_module", "get_attr")
        }
        for name in sorted(targets):
            if hasattr(self, name):
                raise ValueError(
                    f"the traced model has an attribute {name!r}, which "
                    f"TracedModel uses itself; rename it in {self.traced_class}"
                )
            value = getattr(module, name)
            if isinstance(value, nn.Module):
                self.add_module(name, value)
            elif isinstance(value, nn.Parameter):
                self.register_parameter(name, value)
            elif isinstance(value, torch.Tensor):
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)
        self.fx_graph = module.graph
        self._traced_graph: Graph | None = None

    @property
    def graph(self) -> Graph:
        """The traced graph, with a gated join at each residual addition."""
        if self._traced_graph is None:
            self._traced_graph = graph_from_fx(self, self.fx_graph)
        return self._traced_graph

    def forward(self, *args: Any) -> Any:
        # Calls go through the engine; a direct forward keeps every input.
        return fx.Interpreter(self, graph=self.fx_graph).run(*args)

    def extra_repr(self) -> str:
        return f"traced={self.traced_class}, joins={len(self.graph.joins)}"


def trace(
    module: nn.Module,
    leaves: Sequence[type[nn.Module]] = (),
    *,
    drop_path: Sequence[Callable[..., Any] | type[nn.Module]] = (),
    scheme=None,
) -> TracedModel:
    """Turn a residual ``nn.Module`` into a layershare model with gated joins.

    The forward is traced with ``torch.fx``. Every residual addition, an
    ``x + f(x)``, ``torch.add(x, f(x))`` or ``x.add(f(x))`` in which one
    operand was computed from the other, becomes a ``sum``
    :class:`~layershare.nn.Join` with roles ``("skip", "branch")``, so each
    residual branch gets a gate. An addition of two tensors that are not
    computed one from the other (a projection shortcut, two parallel
    branches) stays a plain addition, without a gate.

    Drop-path calls are recorded as single calls while tracing, never traced
    through, so no random mask becomes a constant. They are then replaced by
    the identity, because the gate on the join takes their role. The scheme
    given to :func:`~layershare.train.fit` or set as ``model.scheme`` decides
    how branches are dropped. Functions and module classes named in
    :data:`DROP_PATH_NAMES` count as drop-path, as do those in
    ``drop_path``. A function is found by name only when it is a global of
    the module that defines a ``forward``.

    The result shares its parameters with ``module``.

    Args:
        module: The model to trace. Its forward must be traceable by
            ``torch.fx``, apart from leaf modules.
        leaves: Module classes to keep whole; their insides are not traced,
            so their residual additions get no gates (default: none).
        drop_path: Extra drop-path functions or module classes (default:
            none).
        scheme: Sampling scheme of the result (default: ``None``).

    Returns:
        A :class:`TracedModel`.

    Raises:
        UntraceableModelError: When ``torch.fx`` cannot trace the forward
            (data-dependent control flow, for one); the message names the
            source line and the operation that stopped the tracer.
        TypeError: When ``module`` is not an ``nn.Module``.

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
        ...
        ...     def forward(self, x):
        ...         for block in self.blocks:
        ...             x = x + block(x)
        ...         return x
        >>> trace(Net()).graph.num_gates
        3
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"trace needs an nn.Module, but got {type(module).__name__}")
    functions, classes = _drop_path_ops(module, drop_path)
    tracer = LayershareTracer(tuple(leaves) + classes, functions)
    fx_graph = _trace_or_raise(tracer, module)
    graph_module = fx.GraphModule(tracer.root, fx_graph, type(module).__name__)

    kept = _remove_drop_paths(graph_module, functions, classes)
    joins = _insert_joins(graph_module)
    _check_drop_paths(graph_module, kept, joins)
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    logger.debug(
        "traced %s: %d residual joins, %d drop-path calls removed",
        type(module).__name__,
        len(joins),
        len(kept),
    )
    return TracedModel(graph_module, scheme)


def _drop_path_ops(
    module: nn.Module, extra: Sequence[Callable[..., Any] | type[nn.Module]]
) -> tuple[tuple[Callable[..., Any], ...], tuple[type[nn.Module], ...]]:
    """Collect the drop-path functions and module classes of a model."""
    functions: dict[int, Callable[..., Any]] = {}
    classes: dict[type, None] = {}
    for op in extra:
        if isinstance(op, type) and issubclass(op, nn.Module):
            classes[op] = None
        elif callable(op):
            functions[id(op)] = op
        else:
            raise TypeError(
                f"drop_path entries must be functions or nn.Module classes, but "
                f"got {op!r}"
            )
    for submodule in module.modules():
        if type(submodule).__name__ in DROP_PATH_NAMES:
            classes[type(submodule)] = None
        forward = getattr(type(submodule), "forward", None)
        for name, value in getattr(forward, "__globals__", {}).items():
            if name in DROP_PATH_NAMES and callable(value):
                if not isinstance(value, type):
                    functions[id(value)] = value
    return tuple(functions.values()), tuple(classes)


def _is_drop_path(
    graph_module: fx.GraphModule,
    node: fx.Node,
    functions: Sequence[Callable[..., Any]],
    classes: tuple[type[nn.Module], ...],
) -> bool:
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return node.target in functions or name in DROP_PATH_NAMES
    if node.op == "call_module" and classes:
        return isinstance(graph_module.get_submodule(node.target), classes)
    return False


def _remove_drop_paths(
    graph_module: fx.GraphModule,
    functions: Sequence[Callable[..., Any]],
    classes: tuple[type[nn.Module], ...],
) -> dict[str, fx.Node]:
    """Replace every drop-path call by its input; return the inputs by call name."""
    kept: dict[str, fx.Node] = {}
    for node in list(graph_module.graph.nodes):
        if not _is_drop_path(graph_module, node, functions, classes):
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node):
            raise UntraceableModelError(
                graph_module.__class__.__name__,
                f"drop-path call {node.name!r} has no tensor as its first argument",
            )
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
        kept[node.name] = source
    return kept


def _add_operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """Return the two tensor operands of a plain addition node, else ``None``."""
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in ("add", "add_", "__add__")
    )
    if not is_add or len(node.args) != 2:
        return None

    # An addition with an alpha other than 1, or with out=, is not a residual join.
    if any(key != "alpha" or node.kwargs[key] != 1 for key in node.kwargs):
        return None
    a, b = node.args
    if isinstance(a, fx.Node) and isinstance(b, fx.Node):
        return a, b
    return None


def _ancestors(node: fx.Node) -> set[fx.Node]:
    """Return every node that ``node`` is computed from."""
    seen: set[fx.Node] = set()
    stack = list(node.all_input_nodes)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(current.all_input_nodes)
    return seen


def _insert_joins(graph_module: fx.GraphModule) -> list[fx.Node]:
    """Replace each residual addition by a call to a new sum join."""
    graph = graph_module.graph
    joins = []
    for node in list(graph.nodes):
        operands = _add_operands(node)
        if operands is None:
            continue
        a, b = operands
        if a in _ancestors(b):
            skip, branch = a, b
        elif b in _ancestors(a):
            skip, branch = b, a
        else:
            continue
        name = f"residual{len(joins)}"
        while hasattr(graph_module, name):
            name += "_"
        graph_module.add_submodule(name, Join(2, "sum"))
        with graph.inserting_after(node):
            join = graph.call_module(name, (skip, branch))
        node.replace_all_uses_with(join)
        graph.erase_node(node)
        joins.append(join)
    return joins


def _check_drop_paths(
    graph_module: fx.GraphModule, kept: dict[str, fx.Node], joins: list[fx.Node]
) -> None:
    """Warn about drop-path calls whose output reaches no residual branch only."""
    for name, source in kept.items():
        on_branch = any(
            (source is join.args[1] or source in _ancestors(join.args[1]))
            and not (source is join.args[0] or source in _ancestors(join.args[0]))
            for join in joins
        )
        if not on_branch:
            logger.warning(
                "drop-path call %r in %s is not on a residual branch, so no gate "
                "takes its role; it was replaced by the identity",
                name,
                graph_module.__class__.__name__,
            )
