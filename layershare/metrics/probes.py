"""Probes: helpers that run a model to collect the tensors the metrics take.

Every other module of :mod:`layershare.metrics` takes tensors, never models.
The functions here are the exception, kept apart and named as probes: each
runs the model (in eval mode, restoring its mode afterwards) through its
ordinary forward, ``model(x, member=m)`` or :func:`layershare.evaluate`, and
reads intermediate tensors with forward hooks on submodules. Their results
feed the tensor-level measures: :func:`gradient_by_path_length` feeds
:func:`~layershare.metrics.path_gradient_table`, :func:`apply_blocks` feeds
:func:`~layershare.metrics.block_similarity`, :func:`record_calls` feeds
:func:`~layershare.metrics.step_ratio` and
:func:`~layershare.metrics.step_cka`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

__all__ = [
    "apply_blocks",
    "column_logits",
    "gradient_by_path_length",
    "identity_lesion_logits",
    "path_gradient",
    "record_calls",
    "residual_blocks",
    "unrolled_logits",
]


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put the model in eval mode for the block, then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def residual_blocks(model: nn.Module) -> list[tuple[nn.Module, float]]:
    """Return each residual block's branch module and inference weight, in order.

    The model must be a residual chain: every gated edge is the branch input
    of a ``sum`` join ``h + w * F(h)`` whose other input is the state ``h``
    the branch reads, as in :class:`~layershare.models.ResNet` and
    :class:`~layershare.models.ResidualMLP`. ``w`` is the scheme's inference
    weight of the branch (1 without a scheme).

    Raises:
        TypeError: When the model has no graph or is not a residual chain.
    """
    from layershare.engine import member_weights

    graph = getattr(model, "graph", None)
    if graph is None or graph.num_gates == 0:
        raise TypeError(
            f"{type(model).__name__} has no gated graph; path probes need a "
            f"layershare residual model such as ls.models.ResidualMLP"
        )
    keep_all = torch.ones(1, graph.num_gates, dtype=torch.bool)
    weights = member_weights(model, keep_all, "inference")[0].tolist()
    blocks = []
    for gate in range(graph.num_gates):
        edge = graph.gate_edge(gate)
        join = graph.node(edge.dst)
        inputs = [graph.edges[i] for i in graph.in_edges(join.name)]
        skips = [e for e in inputs if e.gate is None]
        branch_inputs = [graph.edges[i].src for i in graph.in_edges(edge.src)]
        if (
            join.rule != "sum"
            or len(inputs) != 2
            or len(skips) != 1
            or branch_inputs != [skips[0].src]
        ):
            raise TypeError(
                f"{type(model).__name__} is not a residual chain at join "
                f"{join.name!r}: path probes need sum joins h + w * F(h) whose "
                f"branch reads the skip input"
            )
        module = model.get_submodule(graph.node(edge.src).target)
        blocks.append((module, weights[gate]))
    return blocks


@contextmanager
def _capture(modules: Sequence[nn.Module]) -> Iterator[list[list[tuple]]]:
    """Record ``(input, output)`` of every call of each module while active."""
    calls: list[list[tuple]] = [[] for _ in modules]
    handles = []
    for index, module in enumerate(modules):

        def hook(_module, args, output, index=index):
            calls[index].append((args[0], output))

        handles.append(module.register_forward_hook(hook))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _path_forward(model: nn.Module, x: Tensor, y: Tensor):
    """Run the full network once, keeping what path gradients need.

    A branch module shared by several blocks (a weight-tied net) runs once
    per block, so block ``i`` is the ``j``-th call of its module when ``i``
    is the ``j``-th block that uses it.
    """
    blocks = residual_blocks(model)
    unique: list[nn.Module] = []
    for module, _ in blocks:
        if not any(module is u for u in unique):
            unique.append(module)
    with _capture(unique) as calls, torch.enable_grad():
        inputs = x.detach().requires_grad_(True)
        logits = model(inputs)
        loss = nn.functional.cross_entropy(logits, y)

    branch_in, branch_out = [], []
    used = [0] * len(unique)
    for module, _ in blocks:
        index = next(i for i, u in enumerate(unique) if u is module)
        if used[index] >= len(calls[index]):
            raise TypeError(
                "a residual branch ran fewer times than the graph has blocks for "
                "it; path probes need the forward to call each branch once per block"
            )
        branch_input, branch_output = calls[index][used[index]]
        branch_in.append(branch_input)
        branch_out.append(branch_output)
        used[index] += 1
    weights = [w for _, w in blocks]

    # The gradient at the last state equals the gradient at the last branch
    # output divided by its weight, and the skip carries it unchanged.
    last_state_grad = _state_grad(loss, branch_in[-1], branch_out[-1], weights[-1])
    return branch_in, branch_out, weights, last_state_grad


def _state_grad(loss: Tensor, last_in: Tensor, last_out: Tensor, weight: float):
    """Return dLoss / dh_n, the gradient at the output of the last block."""
    if weight == 0:
        raise ValueError("the last residual branch has inference weight 0")
    (grad_out,) = torch.autograd.grad(loss, last_out, retain_graph=True)
    return grad_out / weight


def _backward_along(path, branch_in, branch_out, weights, grad):
    """Propagate ``grad`` from the last state to the first along one path."""
    for block in reversed(range(len(branch_in))):
        if block in path:
            (grad,) = torch.autograd.grad(
                branch_out[block],
                branch_in[block],
                grad_outputs=weights[block] * grad,
                retain_graph=True,
            )
    return grad


def path_gradient(
    model: nn.Module, x: Tensor, y: Tensor, path: Sequence[int]
) -> Tensor:
    """Probe: return the loss gradient at the first block's input along one path.

    Runs the model. As in Veit, Wilber and Belongie 2016 (arXiv 1605.06431),
    the full network runs forward in eval mode. The cross-entropy gradient
    then flows backward only through the residual branches of the blocks in
    ``path``, and only through the skip connections of the other blocks.
    Summed over all ``2**n`` paths these gradients give the full gradient,
    because the backward map of each block is ``I + w J_F``. A weight-tied
    branch that runs at several steps counts as one block per step.

    Args:
        model: A residual chain (see :func:`residual_blocks`).
        x: Inputs ``[N, *]``.
        y: Class indices ``[N]``.
        path: Indices of the blocks whose branch the path passes through.

    Returns:
        The gradient with the shape of the first block's input.
    """
    with _eval_mode(model):
        branch_in, branch_out, weights, grad = _path_forward(model, x, y)
        path = _check_path(path, len(branch_in))
        return _backward_along(path, branch_in, branch_out, weights, grad).detach()


def _check_path(path: Sequence[int], blocks: int) -> frozenset[int]:
    chosen = frozenset(int(b) for b in path)
    if any(not 0 <= b < blocks for b in chosen):
        raise ValueError(f"path blocks must lie in 0..{blocks - 1}, but got {path}")
    return chosen


def gradient_by_path_length(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    lengths: Sequence[int] | None = None,
    samples_per_length: int = 16,
    seed: int = 0,
) -> pd.DataFrame:
    """Probe: measure the gradient norm that reaches the input along paths.

    Runs the model once forward and once backward per sampled path (see
    :func:`path_gradient`). For each length ``k`` it takes every path of
    that length when there are at most ``samples_per_length``, else
    ``samples_per_length`` paths drawn uniformly (with replacement) with a
    seeded NumPy generator.

    Args:
        model: A residual chain (see :func:`residual_blocks`).
        x: Inputs ``[N, *]``.
        y: Class indices ``[N]``.
        lengths: The path lengths to sample (default: ``None``, all of
            ``0..n``).
        samples_per_length: Paths per length (default: 16).
        seed: Seed of the path draw (default: 0).

    Returns:
        A DataFrame with one row per path and columns ``length``, ``path``
        (the tuple of branch blocks) and ``gradient_norm`` (the Euclidean
        norm of the whole gradient tensor). Pass its columns to
        :func:`~layershare.metrics.path_gradient_table`.
    """
    if samples_per_length < 1:
        raise ValueError(
            f"samples_per_length must be positive, but got {samples_per_length}"
        )
    rng = np.random.default_rng(seed)
    rows = []
    with _eval_mode(model):
        branch_in, branch_out, weights, grad = _path_forward(model, x, y)
        blocks = len(branch_in)
        for k in range(blocks + 1) if lengths is None else lengths:
            if not 0 <= k <= blocks:
                raise ValueError(f"lengths must lie in 0..{blocks}, but got {k}")
            for path in _paths_of_length(blocks, k, samples_per_length, rng):
                g = _backward_along(set(path), branch_in, branch_out, weights, grad)
                rows.append((k, path, float(g.norm())))
    return pd.DataFrame(rows, columns=["length", "path", "gradient_norm"])


def _paths_of_length(blocks: int, k: int, count: int, rng) -> list[tuple[int, ...]]:
    if math.comb(blocks, k) <= count:
        return list(itertools.combinations(range(blocks), k))
    draws = (rng.choice(blocks, size=k, replace=False) for _ in range(count))
    return [tuple(sorted(d.tolist())) for d in draws]


@torch.no_grad()
def record_calls(
    model: nn.Module,
    x: Tensor,
    modules: nn.Module | Sequence[nn.Module],
    **forward_kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Probe: stack the input and output of every call of some modules.

    Runs ``model(x, **forward_kwargs)`` once in eval mode. A weight-tied
    block called at ``T`` steps yields ``T`` calls; several untied blocks
    yield one call each, in call order. For a residual branch the inputs are
    the states ``h_t`` and the outputs the updates ``F(h_t)`` that
    :func:`~layershare.metrics.step_ratio` compares.

    Args:
        model: Any module.
        x: Inputs ``[N, *]``.
        modules: The module, or modules, to record.
        **forward_kwargs: Passed to the forward, for example ``steps=T``.

    Returns:
        ``(inputs, outputs)``, each ``[calls, N, ...]``.
    """
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    with _eval_mode(model), _capture(modules) as calls:
        model(x, **forward_kwargs)
    ordered = [c for per_module in calls for c in per_module]
    if not ordered:
        raise ValueError("none of the modules ran during the forward")
    if len(modules) > 1 and any(len(c) != 1 for c in calls):
        raise ValueError("with several modules, each must run exactly once")
    inputs = torch.stack([i.detach() for i, _ in ordered])
    outputs = torch.stack([o.detach() for _, o in ordered])
    return inputs, outputs


@torch.no_grad()
def apply_blocks(
    model: nn.Module,
    x: Tensor,
    blocks: Sequence[nn.Module],
    *,
    at: int = 0,
) -> Tensor:
    """Probe: apply every block to the input that block ``at`` receives.

    Runs the model once in eval mode to capture block ``at``'s input, then
    calls each block on it, so all blocks are compared as functions on the
    same inputs. The blocks must map that input's shape to a common output
    shape (residual branches of one stage do).

    Args:
        model: Any module.
        x: Inputs ``[N, *]``.
        blocks: The blocks, for example ``model.branches``.
        at: The block whose input is shared (default: 0).

    Returns:
        Outputs ``[B, N, ...]``, one per block.
    """
    blocks = list(blocks)
    if not 0 <= at < len(blocks):
        raise ValueError(f"at must lie in 0..{len(blocks) - 1}, but got {at}")
    with _eval_mode(model):
        with _capture([blocks[at]]) as calls:
            model(x)
        if len(calls[0]) != 1:
            raise ValueError(f"block {at} ran {len(calls[0])} times, expected once")
        shared = calls[0][0][0]
        return torch.stack([block(shared) for block in blocks])


@torch.no_grad()
def unrolled_logits(model: nn.Module, x: Tensor, steps: Sequence[int]) -> Tensor:
    """Probe: return the logits of a tied network unrolled for each step count.

    Runs the model in eval mode once per step count ``T``: inside
    ``model.unrolled(T)`` when the model has that context manager
    (:class:`~layershare.models.TiedResNet`), else as ``model(x, steps=T)``.

    Returns:
        Logits ``[S, N, C]`` for :func:`~layershare.metrics.steps_table`.
    """
    outputs = []
    with _eval_mode(model):
        for t in steps:
            if hasattr(model, "unrolled"):
                with model.unrolled(int(t)):
                    outputs.append(model(x))
            else:
                outputs.append(model(x, steps=int(t)))
    return torch.stack(outputs)


@torch.no_grad()
def column_logits(model: nn.Module, x: Tensor) -> Tensor:
    """Probe: return the logits of each FractalNet column run alone.

    Runs ``model.column(c)`` (a standalone network with the trained weights)
    in eval mode for every column ``c`` in ``0..model.columns - 1``.

    Returns:
        Logits ``[K, N, C]`` for :func:`~layershare.metrics.column_table`.
    """
    if not hasattr(model, "column") or not isinstance(
        getattr(model, "columns", None), int
    ):
        raise TypeError(
            f"{type(model).__name__} has no column(c) method and columns count; "
            f"column_logits needs a FractalNet"
        )
    outputs = []
    with _eval_mode(model):
        for c in range(model.columns):
            network = model.column(c)
            network.eval()
            outputs.append(network(x))
    return torch.stack(outputs)


@torch.no_grad()
def identity_lesion_logits(
    model: nn.Module,
    x: Tensor,
    layers: Sequence[nn.Module],
    removed: Sequence[Sequence[int]],
) -> Tensor:
    """Probe: return logits with layers replaced by the identity, per lesion.

    The control of a lesion study: in a plain (non-residual) network a
    removed layer passes its input through unchanged, which needs equal
    input and output shapes. For residual networks remove branches instead,
    with ``ls.lesion_members`` and ``ls.evaluate(..., rule="inference")``.

    Args:
        model: Any module.
        x: Inputs ``[N, *]``.
        layers: The layers that may be removed.
        removed: For each lesion, the indices into ``layers`` to remove.

    Returns:
        Logits ``[K, N, C]`` for :func:`~layershare.metrics.lesion_table`.
    """
    layers = list(layers)
    outputs = []
    with _eval_mode(model):
        for lesion in removed:
            handles = []
            for index in lesion:
                if not 0 <= int(index) < len(layers):
                    raise ValueError(
                        f"removed layer {index} is out of range for {len(layers)} "
                        f"layers"
                    )
                handles.append(
                    layers[int(index)].register_forward_hook(
                        lambda _m, args, _out: args[0]
                    )
                )
            try:
                outputs.append(model(x))
            finally:
                for handle in handles:
                    handle.remove()
    return torch.stack(outputs)
