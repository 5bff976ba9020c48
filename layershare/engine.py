"""The engine: one interpreter that runs a gated graph for a batch of members.

Every way of running a layershare model goes through :func:`run`: a plain
call in training or eval mode, ``model(x, member=m)``, and
:func:`evaluate`, which stacks several members along the batch dimension
(member-major: rows ``i * N .. (i + 1) * N - 1`` belong to member ``i``) and
gives each row its member's gate weights. The combining rules live in
:func:`layershare.nn.combine`; the weights come from the scheme. Unit gates
(swapout) multiply in the scheme's :meth:`~layershare.Scheme.unit_weights`,
given a :class:`~layershare.unit_gates.UnitGateState`. The state records whether
the call trains, runs members (whose masks come from their seeds) or runs the
inference rule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn
from tqdm.auto import tqdm

from layershare.errors import LayershareError, MemberError, ModelExecutionError
from layershare.graph import Graph
from layershare.members import Member, Members
from layershare.nn.join import Join, combine
from layershare.unit_gates import UnitGateState

__all__ = ["evaluate", "forward", "member_weights", "run"]

logger = logging.getLogger(__name__)

REDUCTIONS = (None, "mean", "votes")


def _execution_error(
    model: nn.Module, node: fx.Node, args: tuple, error: Exception
) -> ModelExecutionError:
    """Describe a failed node with the model, the inputs and the original error."""
    shapes = ", ".join(
        f"{tuple(a.shape)} {str(a.dtype).replace('torch.', '')}"
        if isinstance(a, Tensor)
        else type(a).__name__
        for a in args
    )
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return ModelExecutionError(
        f"{type(model).__name__} failed at node {node.name!r} "
        f"({node.op} {_target_name(node)}) on inputs [{shapes}]: "
        f"{type(error).__name__}: {first}. Check the inputs' shape and dtype "
        f"against what the model was built for (ls.evaluate stacks members "
        f"along the batch dimension, so its batch is members x samples)",
        node.name,
    )


def _target_name(node: fx.Node) -> str:
    target = node.target
    return (
        target if isinstance(target, str) else getattr(target, "__name__", str(target))
    )


class GateInterpreter(fx.Interpreter):
    """Interpret a traced graph, giving each join its gate weights.

    Args:
        model: The module the graph was traced from.
        graph: The layershare graph (its ``fx_graph`` is interpreted).
        edge_weights: Weights ``[num_gates, rows]`` with ``rows`` 1 (one
            assignment for the whole batch) or the batch size, or ``None`` to
            keep every input with weight 1.
        unit_state: The call's unit-gate context, or ``None`` to apply no
            unit gates (default: ``None``).
    """

    def __init__(
        self,
        model: nn.Module,
        graph: Graph,
        edge_weights: Tensor | None,
        unit_state: UnitGateState | None = None,
    ) -> None:
        super().__init__(model, graph=graph.fx_graph)
        self.layershare_graph = graph
        self.edge_weights = edge_weights
        self.join_gates = _join_gates(graph)
        self.scheme = getattr(model, "scheme", None)
        self.unit_state = unit_state if self.scheme is not None else None
        self.current: fx.Node | None = None
        # Errors name the failing node themselves (ModelExecutionError).
        self.extra_traceback = False

    #: Skip nodes whose every path to the output has a gate weight of 0 in
    #: every row. Their values could only enter a join multiplied by 0, so
    #: outputs are unchanged. A skipped branch gets no gradient (``None``
    #: rather than zeros), so optimizers leave its parameters alone on that
    #: step, as implementations that never compute a dropped block do.
    skip_dead: bool = True

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        if n.name in self.dead:
            return None
        try:
            return super().run_node(n)
        except LayershareError:
            raise
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            raise _execution_error(self.module, n, self.args, exc) from exc

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.args = args
        self.dead = set()
        if self.skip_dead and self.edge_weights is not None:
            self.dead = _dead_nodes(self.layershare_graph, self.edge_weights)
        return super().run(*args, **kwargs)

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        if not isinstance(module, Join):
            return super().call_module(target, args, kwargs)
        join = self.current.name
        gates = self.join_gates[join]
        inputs, weights = [], []
        for position, (g, x) in enumerate(zip(gates, args, strict=True)):
            if x is None:
                continue  # a skipped dead branch, whose weight is 0
            inputs.append(x)
            weight = None if g is None else self._weight(g, x)
            if self.unit_state is not None:
                unit = self.scheme.unit_weights(
                    self.layershare_graph, join, position, x, self.unit_state
                )
                if unit is not None:
                    weight = unit if weight is None else weight * unit
            weights.append(weight)
        return combine(inputs, module.rule, weights)

    def _weight(self, gate: int, x: Tensor) -> Tensor | None:
        if self.edge_weights is None:
            return None
        w = self.edge_weights[gate].to(device=x.device, dtype=x.dtype)
        if w.numel() == 1:
            return w.reshape(())
        if w.shape[0] != x.shape[0]:
            raise MemberError(
                f"gate weights cover {w.shape[0]} rows but the join input has batch "
                f"size {x.shape[0]}"
            )
        return w.reshape(-1, *([1] * (x.dim() - 1)))


def _dead_nodes(graph: Graph, edge_weights: Tensor) -> set[str]:
    """Return the nodes that reach the output only through zero-weight gates."""
    dropped = tuple((edge_weights.abs().amax(dim=1) == 0).tolist())
    cache = graph.__dict__.setdefault("_dead_cache", {})
    if dropped in cache:
        return cache[dropped]
    live = set(graph.outputs)
    for node in reversed(graph.nodes):
        for i in graph.out_edges(node.name):
            edge = graph.edges[i]
            if edge.dst in live and (edge.gate is None or not dropped[edge.gate]):
                live.add(node.name)
                break
    dead = {n.name for n in graph.nodes if n.kind in ("op", "join")} - live
    if len(cache) < 4096:
        cache[dropped] = dead
    return dead


def _join_gates(graph: Graph) -> dict[str, list[int | None]]:
    """Map each join to the gate id of each input (``None`` when ungated)."""
    cached = getattr(graph, "_join_gate_map", None)
    if cached is None:
        cached = {
            join: [graph.edges[i].gate for i in graph.in_edges(join)]
            for join in graph.joins
        }
        graph._join_gate_map = cached
    return cached


def run(
    model: nn.Module,
    inputs: Sequence[Tensor],
    edge_weights: Tensor | None,
    unit_state: UnitGateState | None = None,
) -> Any:
    """Run a model's traced graph with explicit gate weights.

    Args:
        model: A model with a ``graph`` (a :class:`~layershare.nn.GatedModel`).
        inputs: The forward's positional inputs.
        edge_weights: ``[num_gates, rows]`` weights or ``None`` (all kept).
        unit_state: Unit-gate context passed to the scheme, or ``None`` for no
            unit gates (default: ``None``).

    Returns:
        Whatever the model's forward returns.
    """
    graph = model.graph
    return GateInterpreter(model, graph, edge_weights, unit_state).run(*inputs)


RULES = ("member", "inference")


def member_weights(model: nn.Module, bits: Tensor, rule: str = "member") -> Tensor:
    """Return the edge weights ``[M, num_gates]`` of members under the model's scheme.

    Args:
        model: The gated model; its ``scheme`` decides the weights.
        bits: Keep bits ``[M, num_gates]``.
        rule: ``"member"`` weighs kept gates as a training step with those gates
            does. ``"inference"`` gives kept gates the scheme's deterministic
            inference weight, so the all-kept member is exactly the eval model.
            A member with gate ``g`` off is then the eval model with that
            branch removed, as in a lesion study (default: ``"member"``).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, but got {rule!r}")
    scheme = getattr(model, "scheme", None)
    if scheme is None:
        return bits.to(torch.get_default_dtype())
    if rule == "inference":
        kept = bits.to(torch.get_default_dtype())
        return kept * scheme.inference_weights(model.graph).to(kept.dtype)
    return scheme.member_weights(model.graph, bits)


def _check_members(model: nn.Module, members: Any) -> Members:
    members = Members.coerce(members)
    graph = model.graph
    if members.num_gates != graph.num_gates:
        raise MemberError(
            f"the members have {members.num_gates} gates but {type(model).__name__} "
            f"has {graph.num_gates}; sample members from Sampler(model, scheme)"
        )
    graph.active_edges(members.bits)
    return members


def _sampler(model: nn.Module, scheme: Any):
    """Return a cached :class:`~layershare.Sampler` for training-time draws."""
    from layershare.sampler import Sampler

    cache = model.__dict__.setdefault("_sampler_cache", {})
    key = (model.graph_key(), id(scheme))
    if key not in cache:
        cache[key] = Sampler(model.graph, scheme)
    return cache[key]


def forward(model: nn.Module, args: tuple, kwargs: dict, member: Any) -> Any:
    """Run one call of a gated model (see :class:`~layershare.nn.GatedModel`)."""
    if kwargs:
        raise TypeError(
            f"{type(model).__name__} takes its inputs positionally (and member=); "
            f"got keyword arguments {sorted(kwargs)}"
        )
    graph = model.graph
    scheme = getattr(model, "scheme", None)
    if member is not None:
        members = _check_members(model, member)
        if len(members) != 1:
            raise MemberError(
                f"model(x, member=...) runs one member, but got {len(members)}; use "
                f"ls.evaluate(model, members, x) for several"
            )
        weights = member_weights(model, members.bits).T
        state = None
        if scheme is not None and scheme.unit_joins(graph):
            state = _member_state(scheme, graph, members.seeds, _batch_size(args))
    elif scheme is None:
        weights, state = None, None
    elif model.training:
        weights, state = None, UnitGateState("train")
        if graph.num_gates:
            rows = 1 if scheme.granularity == "batch" else _batch_size(args)
            seed = int(torch.randint(0, 2**62, (1,)))
            bits = _sampler(model, scheme).draw_bits(seed, np.arange(rows))
            weights = scheme.member_weights(graph, torch.from_numpy(bits)).T
    else:
        state = UnitGateState("inference")
        weights = None
        if graph.num_gates:
            weights = scheme.inference_weights(graph).unsqueeze(1)
    return run(model, args, weights, state)


def _member_state(
    scheme: Any,
    graph: Graph,
    seeds: Tensor | None,
    rows_per_member: int,
    cache: dict | None = None,
    count: int = 1,
) -> UnitGateState:
    """Return the unit-gate context for running ``count`` members."""
    if seeds is None and not scheme.has_unit_gates(graph):
        # Constant masks do not depend on the seed.
        seeds = torch.zeros(count, dtype=torch.int64)
    return UnitGateState("member", seeds, rows_per_member, cache)


def _batch_size(args: tuple) -> int:
    for a in args:
        if isinstance(a, Tensor) and a.dim() > 0:
            return a.shape[0]
    raise TypeError("per-sample gates need a tensor input with a batch dimension")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    members: Members | Member | Sequence[Member],
    x: Tensor,
    *,
    batch_size: int = 512,
    max_rows: int = 16384,
    device: torch.device | str | None = None,
    reduce: str | None = None,
    rule: str = "member",
    extra_inputs: Sequence[Tensor] = (),
    bn_data: Any = None,
    bn_batches: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Evaluate many members on the same inputs, batched.

    Members are stacked along the batch dimension, at most ``max_rows`` rows
    (members times samples) per forward. The model runs in eval mode (batch
    norm uses its running statistics) and its mode is restored afterwards.
    The result does not depend on ``batch_size`` or ``max_rows`` beyond
    floating-point reassociation in the backend's kernels.

    Args:
        model: A :class:`~layershare.nn.GatedModel`.
        members: The members to run.
        x: Inputs ``[N, *]``.
        batch_size: Samples per chunk (default: 512).
        max_rows: Rows per forward (default: 16384).
        device: Where to compute (default: the model's device).
        reduce: ``None`` returns every member's output. ``"mean"`` streams the
            mean of the members' softmax probabilities, and ``"votes"`` streams
            the per-class count (int64) of members whose argmax is that class
            (default: ``None``).
        rule: ``"member"`` or ``"inference"``, see :func:`member_weights`
            (default: ``"member"``).
        extra_inputs: Inputs passed after ``x`` to every forward, unchanged
            and never stacked, such as a graph's ``edge_index`` for
            ``x = graph.x[None]`` (default: none).
        bn_data: Training inputs (a tensor, dataset or loader) on which to
            re-estimate the batch-norm statistics of each member with
            :func:`~layershare.bn.recalibrate_bn` before evaluating it. Members
            then run one at a time, and the model's own statistics are
            restored afterwards (default: ``None``, use the running
            statistics for every member).
        bn_batches: Batches of ``bn_data`` per member (default: all).
        progress: Show a tqdm progress bar (default: ``False``).

    Returns:
        ``[M, N, C]`` outputs when ``reduce`` is ``None``, else ``[N, C]``, on
        ``x``'s device.

    Example:
        >>> out = evaluate(model, sampler.enumerate(), x)  # doctest: +SKIP
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, but got {reduce!r}")
    for name, value in (("batch_size", batch_size), ("max_rows", max_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, but got {value!r}")
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise TypeError(f"x must be a tensor [N, *], but got {type(x).__name__}")
    members = _check_members(model, members)
    if device is None:
        device = next((p.device for p in model.parameters()), x.device)
    weights = member_weights(model, members.bits, rule).to(device)
    extra_inputs = tuple(e.to(device) for e in extra_inputs)

    n, m = x.shape[0], len(members)
    samples = min(batch_size, max(n, 1))
    per_chunk = 1 if bn_data is not None else max(1, max_rows // samples)
    saved_norms = _save_norms(model) if bn_data is not None else None
    scheme = getattr(model, "scheme", None)
    unit_gated = scheme is not None and bool(scheme.unit_joins(model.graph))
    seeds = members.seeds
    mask_cache: dict = {}
    was_training = model.training
    model.eval()
    result: Tensor | None = None
    chunks = [(m0, d0) for m0 in range(0, m, per_chunk) for d0 in range(0, n, samples)]
    try:
        for m0, d0 in tqdm(chunks, disable=not progress, desc="members", leave=False):
            m1, d1 = min(m0 + per_chunk, m), min(d0 + samples, n)
            if bn_data is not None and d0 == 0:
                _recalibrate(model, members[m0], bn_data, bn_batches, rule)
            xb = x[d0:d1].to(device)
            rows = xb.repeat(m1 - m0, *([1] * (xb.dim() - 1)))
            w = weights[m0:m1].repeat_interleave(d1 - d0, dim=0).T
            state = None
            if unit_gated and rule == "inference":
                state = UnitGateState("inference")
            elif unit_gated:
                chunk_seeds = None if seeds is None else seeds[m0:m1]
                state = _member_state(
                    scheme, model.graph, chunk_seeds, d1 - d0, mask_cache, m1 - m0
                )
            out = run(model, (rows, *extra_inputs), w, state)
            out = out.reshape(m1 - m0, d1 - d0, *out.shape[1:])
            result = _accumulate(result, out, reduce, (m, n), (m0, m1, d0, d1))
    finally:
        if saved_norms is not None:
            _restore_norms(saved_norms)
        model.train(was_training)
    if result is None:
        raise MemberError(
            f"nothing to evaluate: {len(members)} members and {x.shape[0]} samples; "
            f"pass at least one of each"
        )
    return result.to(x.device)


def _recalibrate(model: nn.Module, member: Member, data: Any, batches, rule) -> None:
    """Re-estimate batch-norm statistics for one member before evaluating it."""
    from layershare.bn import recalibrate_bn

    if rule != "member":
        raise ValueError(
            f"bn_data re-estimates statistics for members run by the member rule, "
            f"but rule={rule!r}; evaluate lesions without bn_data"
        )
    recalibrate_bn(model, member, data, batches=batches)


def _save_norms(model: nn.Module) -> list[tuple[nn.Module, dict[str, Tensor]]]:
    """Copy the buffers of every batch-norm layer, to restore after recalibration."""
    return [
        (module, {k: v.clone() for k, v in module.named_buffers(recurse=False)})
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]


def _restore_norms(saved: list[tuple[nn.Module, dict[str, Tensor]]]) -> None:
    for module, buffers in saved:
        for name, value in buffers.items():
            getattr(module, name).copy_(value)


def _accumulate(result, out, reduce, sizes, window):
    """Store one chunk of outputs, or add it to a streamed reduction."""
    m, n = sizes
    m0, m1, d0, d1 = window
    if reduce is None:
        if result is None:
            result = out.new_empty((m, n, *out.shape[2:]))
        result[m0:m1, d0:d1] = out
        return result
    if result is None:
        # Votes are counted exactly in int64; a float32 count is exact only
        # up to 2**24 members.
        dtype = torch.int64 if reduce == "votes" else out.dtype
        result = out.new_zeros((n, *out.shape[2:]), dtype=dtype)
    if reduce == "mean":
        result[d0:d1] += torch.softmax(out.double(), dim=-1).sum(0).to(result.dtype) / m
    else:
        votes = torch.nn.functional.one_hot(out.argmax(-1), out.shape[-1]).sum(0)
        result[d0:d1] += votes
    return result
