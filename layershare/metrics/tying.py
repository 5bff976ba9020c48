"""Weight tying: unrolled steps, step sizes and implicitly tied blocks.

A residual network whose blocks share one set of weights is an unrolled
recurrent network (Liao and Poggio 2016, "Bridging the Gaps Between Residual
Learning, Recurrent Neural Networks and Visual Cortex", arXiv 1604.03640):
``h_{t+1} = h_t + F(h_t)``. These measures ask how such a network uses its
steps, and whether an untied network trained with swapout or stochastic
depth ends up with blocks that compute similar functions. They take tensors:
states, updates and block outputs are gathered by the probes in
:mod:`layershare.metrics.probes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pandas as pd
import torch
from torch import Tensor

from layershare.metrics._checks import as_tensor
from layershare.metrics.accuracy import accuracy
from layershare.metrics.cka import cka, cka_matrix

__all__ = [
    "Similarity",
    "batchnorm_shift",
    "block_similarity",
    "cosine_similarity",
    "parameter_table",
    "step_cka",
    "step_ratio",
    "steps_table",
]


class Similarity(NamedTuple):
    """CKA and mean cosine similarity between block outputs, each float64."""

    cka: Tensor
    cosine: Tensor


def _stacked(values: Any, name: str) -> Tensor:
    """Return ``[T, N, D]`` float64 from a ``[T, N, ...]`` tensor or a list."""
    if isinstance(values, (list, tuple)):
        values = torch.stack([as_tensor(v, name) for v in values])
    x = as_tensor(values, name).double()
    if x.dim() < 3:
        raise ValueError(
            f"{name} must be [steps, samples, ...] with a feature dimension, but "
            f"got shape {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.reshape(x.shape[0], x.shape[1], -1)


def step_ratio(updates: Any, states: Any) -> Tensor:
    """Compute how much each step changes the state: ``|F(h_t)| / |h_t|``.

    For each step ``t`` and sample ``j`` the ratio of the Euclidean norms of
    the update ``F(h_t)`` and the state ``h_t`` it is added to, averaged over
    samples. Ratios near 0 in late steps mean the iteration has settled.

    Args:
        updates: Branch outputs ``F(h_t)`` ``[T, N, ...]`` or a list of
            ``T`` tensors ``[N, ...]``.
        states: States ``h_t`` entering each step, same shape.

    Returns:
        Ratios ``[T]`` (float64).

    Raises:
        ValueError: When shapes differ or a state has zero norm.
    """
    f, h = _stacked(updates, "updates"), _stacked(states, "states")
    if f.shape != h.shape:
        raise ValueError(
            f"updates and states must have the same shape, but got "
            f"{tuple(f.shape)} and {tuple(h.shape)}"
        )
    state_norms = h.norm(dim=-1)
    if bool((state_norms == 0).any()):
        step, sample = (state_norms == 0).nonzero()[0].tolist()
        raise ValueError(
            f"the state of sample {sample} at step {step} has norm 0, so the "
            f"ratio |F(h)| / |h| is undefined"
        )
    return (f.norm(dim=-1) / state_norms).mean(-1)


def step_cka(states: Any, *, unbiased: bool = False) -> Tensor:
    """Compute linear CKA between consecutive states ``h_t`` and ``h_{t+1}``.

    Args:
        states: States ``[T + 1, N, ...]`` or a list of ``T + 1`` tensors.
        unbiased: Use the unbiased HSIC estimator (default: ``False``).

    Returns:
        CKA ``[T]`` (float64); entry ``t`` compares steps ``t`` and ``t + 1``.
    """
    h = _stacked(states, "states")
    if h.shape[0] < 2:
        raise ValueError(f"step_cka needs at least 2 states, but got {h.shape[0]}")
    values = [cka(h[t], h[t + 1], unbiased=unbiased) for t in range(h.shape[0] - 1)]
    return torch.stack(values)


def steps_table(
    outputs: Any,
    labels: Any,
    steps: Sequence[int],
    *,
    trained_steps: int | None = None,
) -> pd.DataFrame:
    """Tabulate accuracy against the number of unrolled steps at inference.

    Args:
        outputs: Logits ``[S, N, C]`` or predicted labels ``[S, N]``, one
            entry per unrolled step count.
        labels: Class indices ``[N]``.
        steps: The step count of each entry ``[S]``.
        trained_steps: The step count used in training. When given, the
            table adds ``relative = steps - trained_steps`` (default:
            ``None``).

    Returns:
        A DataFrame with columns ``steps`` and ``accuracy``, plus
        ``relative`` when ``trained_steps`` is given, in the order of
        ``outputs``.
    """
    values = accuracy(outputs, labels)
    steps = [int(s) for s in steps]
    if values.dim() != 1 or values.shape[0] != len(steps):
        raise ValueError(
            f"outputs must hold one entry per step count: {len(steps)} step counts "
            f"but accuracy of shape {tuple(values.shape)}"
        )
    table = pd.DataFrame({"steps": steps, "accuracy": values.numpy()})
    if trained_steps is not None:
        table["relative"] = table["steps"] - int(trained_steps)
    return table


def cosine_similarity(x: Any, y: Any) -> Tensor:
    """Compute the mean cosine similarity of two outputs for the same samples.

    Each sample's output is flattened to a vector; the result is the mean
    over samples of ``<x_j, y_j> / (|x_j| |y_j|)``. A zero vector has
    cosine similarity 0 with anything (the ``eps`` rule of
    ``torch.nn.functional.cosine_similarity``).

    Args:
        x: Outputs ``[N, ...]``.
        y: Outputs of the same shape.

    Returns:
        A 0-d float64 tensor in ``[-1, 1]``.
    """
    fx, fy = as_tensor(x, "x").double(), as_tensor(y, "y").double()
    if fx.shape != fy.shape or fx.dim() < 2:
        raise ValueError(
            f"x and y must have the same shape [samples, ...], but got "
            f"{tuple(fx.shape)} and {tuple(fy.shape)}"
        )
    flat_x = fx.reshape(fx.shape[0], -1)
    flat_y = fy.reshape(fy.shape[0], -1)
    return torch.nn.functional.cosine_similarity(flat_x, flat_y, dim=-1).mean()


def block_similarity(outputs: Any, *, unbiased: bool = False) -> Similarity:
    """Compare blocks as functions: their outputs on the same inputs.

    ``outputs[i]`` is block ``i`` applied to one shared input (see
    :func:`layershare.metrics.probes.apply_blocks`). Blocks that compute
    similar functions have CKA and cosine similarity near 1; comparing
    networks trained with and without swapout or stochastic depth shows
    whether the scheme makes untied blocks implicitly tied.

    Args:
        outputs: Block outputs ``[B, N, ...]`` or a list of ``B`` tensors.
        unbiased: Use the unbiased HSIC estimator for CKA (default: ``False``).

    Returns:
        A :class:`Similarity` of two symmetric ``[B, B]`` matrices.
    """
    x = _stacked(outputs, "outputs")
    blocks = x.shape[0]
    cosine = torch.eye(blocks, dtype=torch.float64)
    for i in range(blocks):
        for j in range(i + 1, blocks):
            cosine[i, j] = cosine[j, i] = cosine_similarity(x[i], x[j])
    return Similarity(cka_matrix(x, unbiased=unbiased), cosine)


def parameter_table(
    parameters: Mapping[str, int], accuracies: Mapping[str, Any]
) -> pd.DataFrame:
    """Tabulate parameter count against accuracy, for tied against untied models.

    Args:
        parameters: Parameter count per model name (for example from
            ``sum(p.numel() for p in model.parameters())``; tied weights count
            once).
        accuracies: Accuracy per model name, the same names.

    Returns:
        A DataFrame with columns ``model``, ``parameters`` and ``accuracy``,
        sorted by parameter count.
    """
    if set(parameters) != set(accuracies):
        raise ValueError(
            f"parameters and accuracies must name the same models, but got "
            f"{sorted(parameters)} and {sorted(accuracies)}"
        )
    rows = [
        {"model": name, "parameters": int(count), "accuracy": float(accuracies[name])}
        for name, count in parameters.items()
    ]
    table = pd.DataFrame(rows, columns=["model", "parameters", "accuracy"])
    return table.sort_values("parameters", kind="stable").reset_index(drop=True)


def batchnorm_shift(
    step_means: Any, step_vars: Any, shared_mean: Any, shared_var: Any
) -> pd.DataFrame:
    """Measure how far per-step batch-norm statistics are from shared ones.

    With batch-norm statistics tied across steps, every step normalizes with
    one mean and variance; per-step statistics let each step keep its own.
    For step ``t`` this returns the mean over channels of
    ``|mu_t - mu| / sqrt(var)`` (the mean shift in shared standard
    deviations) and of ``|log(var_t / var)|`` (the scale mismatch). Large
    values mean tied statistics normalize some steps badly.

    Args:
        step_means: Per-step running means ``[T, D]``.
        step_vars: Per-step running variances ``[T, D]``, positive.
        shared_mean: Shared running mean ``[D]``.
        shared_var: Shared running variance ``[D]``, positive.

    Returns:
        A DataFrame with columns ``step``, ``mean_shift`` and
        ``log_var_ratio``.
    """
    means = as_tensor(step_means, "step_means").double()
    variances = as_tensor(step_vars, "step_vars").double()
    mu = as_tensor(shared_mean, "shared_mean").double()
    var = as_tensor(shared_var, "shared_var").double()
    if means.dim() != 2 or variances.shape != means.shape or mu.shape != var.shape:
        raise ValueError(
            f"step statistics must be [steps, channels] and shared ones "
            f"[channels], but got {tuple(means.shape)}, {tuple(variances.shape)}, "
            f"{tuple(mu.shape)} and {tuple(var.shape)}"
        )
    if mu.shape[0] != means.shape[1]:
        raise ValueError(
            f"step statistics have {means.shape[1]} channels but shared ones "
            f"{mu.shape[0]}"
        )
    if bool((variances <= 0).any()) or bool((var <= 0).any()):
        raise ValueError("variances must be positive")
    shift = ((means - mu).abs() / var.sqrt()).mean(-1)
    ratio = (variances / var).log().abs().mean(-1)
    return pd.DataFrame(
        {
            "step": range(means.shape[0]),
            "mean_shift": shift.numpy(),
            "log_var_ratio": ratio.numpy(),
        }
    )
