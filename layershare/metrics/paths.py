"""Path lengths of an implicit ensemble and the gradient that flows along them.

Veit, Wilber and Belongie 2016 ("Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", arXiv 1605.06431) unravel a residual network
of ``n`` blocks into ``2**n`` paths. ``C(n, k)`` of them pass through ``k``
residual branches, so path lengths follow Binomial(n, 1/2). Sampling paths
of each length and back-propagating along them shows that the gradient
shrinks with length, so the gradient of the whole network comes mostly from
short paths. The functions here tabulate those measurements; the members'
lengths come from ``Sampler.lengths`` and the gradient norms from
:func:`layershare.metrics.probes.gradient_by_path_length`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from layershare.metrics._checks import as_tensor, predictions_and_labels

__all__ = ["accuracy_by_length", "length_distribution", "path_gradient_table"]


def _lengths(lengths: Any, count: int | None, name: str = "lengths") -> np.ndarray:
    """Return non-negative integer lengths ``[count]`` as a NumPy array."""
    values = as_tensor(lengths, name).cpu()
    if values.dim() != 1 or (count is not None and values.shape[0] != count):
        expected = "[members]" if count is None else f"[{count}]"
        raise ValueError(
            f"{name} must have shape {expected}, one per member or path, but got "
            f"shape {tuple(values.shape)}"
        )
    if values.is_floating_point() and not bool((values == values.round()).all()):
        raise ValueError(f"{name} must be whole numbers of blocks")
    if values.numel() and int(values.min()) < 0:
        raise ValueError(f"{name} must be >= 0, but got {int(values.min())}")
    return values.long().numpy()


def length_distribution(lengths: Any, *, weights: Any | None = None) -> pd.DataFrame:
    """Tabulate how many members have each path length.

    Args:
        lengths: Path length of each member ``[M]``, for example
            ``sampler.lengths(members)``.
        weights: A non-negative weight per member ``[M]``, such as its
            probability under the scheme. Then ``fraction`` is the weighted
            share (default: ``None``, each member counts once).

    Returns:
        A DataFrame with one row per length from 0 to the maximum, with
        columns ``length``, ``members`` (count) and ``fraction`` (summing to
        1). Lengths no member has get zero rows, so the table plots directly
        as a distribution.

    Example:
        >>> length_distribution([0, 1, 1, 2])["fraction"].tolist()
        [0.25, 0.5, 0.25]
    """
    values = _lengths(lengths, None)
    if values.size == 0:
        raise ValueError("lengths is empty; pass one length per member")
    counts = np.bincount(values)
    if weights is None:
        mass = counts.astype(np.float64)
    else:
        w = as_tensor(weights, "weights").double().cpu().numpy()
        if w.shape != values.shape:
            raise ValueError(
                f"weights must have shape {values.shape}, one per member, but got "
                f"{w.shape}"
            )
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        mass = np.bincount(values, weights=w, minlength=counts.size)
    return pd.DataFrame(
        {
            "length": np.arange(counts.size),
            "members": counts,
            "fraction": mass / mass.sum(),
        }
    )


def accuracy_by_length(outputs: Any, labels: Any, lengths: Any) -> pd.DataFrame:
    """Tabulate member accuracy grouped by path length.

    Args:
        outputs: Member logits ``[M, N, C]`` or predicted labels ``[M, N]``.
        labels: Class indices ``[N]``.
        lengths: Path length of each member ``[M]``.

    Returns:
        A DataFrame with one row per length present, with columns
        ``length``, ``members``, ``mean``, ``std`` (population standard
        deviation, 0 for a single member), ``min`` and ``max`` of the
        members' accuracies.
    """
    predictions, checked = predictions_and_labels(outputs, labels)
    if checked is None:
        raise TypeError("accuracy_by_length needs labels [samples], but got None")
    if predictions.dim() != 2:
        raise ValueError(
            f"outputs must be member outputs [members, samples(, classes)], but "
            f"got predictions of shape {tuple(predictions.shape)}"
        )
    values = _lengths(lengths, predictions.shape[0])
    correct = (predictions == checked.to(predictions.device)).double().mean(-1)
    table = pd.DataFrame({"length": values, "accuracy": correct.cpu().numpy()})
    grouped = table.groupby("length")["accuracy"]
    return pd.DataFrame(
        {
            "members": grouped.size(),
            "mean": grouped.mean(),
            "std": grouped.std(ddof=0),
            "min": grouped.min(),
            "max": grouped.max(),
        }
    ).reset_index()


def path_gradient_table(
    gradient_norms: Any, lengths: Any, *, blocks: int | None = None
) -> pd.DataFrame:
    """Tabulate the gradient magnitude of sampled paths by path length.

    Args:
        gradient_norms: The norm of the gradient that reached the input along
            each sampled path ``[P]``.
        lengths: The length of each sampled path ``[P]``.
        blocks: Number of residual blocks ``n``. When given, the table adds
            ``paths = C(n, k)``, the number of paths of length ``k``, and
            ``total = mean * paths``, the summed gradient magnitude of all
            paths of that length as Veit et al. estimate it
            (default: ``None``).

    Returns:
        A DataFrame with one row per length present and columns ``length``,
        ``sampled``, ``mean`` and ``std`` (population standard deviation),
        plus ``paths`` and ``total`` when ``blocks`` is given.
    """
    norms = as_tensor(gradient_norms, "gradient_norms").double().cpu()
    if norms.dim() != 1 or not bool(torch.isfinite(norms).all()):
        raise ValueError(
            f"gradient_norms must be finite values [paths], but got shape "
            f"{tuple(norms.shape)}"
        )
    values = _lengths(lengths, norms.shape[0])
    table = pd.DataFrame({"length": values, "norm": norms.numpy()})
    grouped = table.groupby("length")["norm"]
    result = pd.DataFrame(
        {
            "sampled": grouped.size(),
            "mean": grouped.mean(),
            "std": grouped.std(ddof=0),
        }
    ).reset_index()
    if blocks is not None:
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
            raise ValueError(f"blocks must be an int >= 0, but got {blocks!r}")
        if int(values.max()) > blocks:
            raise ValueError(
                f"a path has length {int(values.max())} but the network has only "
                f"{blocks} blocks"
            )
        result["paths"] = [math.comb(blocks, int(k)) for k in result["length"]]
        result["total"] = result["mean"] * result["paths"]
    return result
