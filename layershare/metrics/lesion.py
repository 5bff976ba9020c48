"""Lesion study: accuracy of a network with blocks removed at test time.

Veit, Wilber and Belongie 2016 ("Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", arXiv 1605.06431) remove residual blocks from
a trained network and find that accuracy degrades smoothly with the number
removed, while removing one layer of a plain network of the same depth
breaks it. The functions here take the lesioned networks' outputs, because
running them is the engine's work. A residual network with block ``i``
removed is the member whose gate ``i`` is off: build those members with
``ls.lesion_members`` and run them with
``ls.evaluate(model, members, x, rule="inference")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from layershare.metrics._checks import as_tensor, predictions_and_labels
from layershare.metrics.accuracy import accuracy

__all__ = ["column_table", "lesion_table"]


def lesion_table(
    outputs: Any,
    labels: Any,
    removed: Sequence[Sequence[int]],
    *,
    reference: Any | None = None,
) -> pd.DataFrame:
    """Tabulate the accuracy of lesioned networks and its drop from the full one.

    ``accuracy[k]`` is the accuracy of the network with the blocks
    ``removed[k]`` removed; ``drop[k] = accuracy(reference) - accuracy[k]``,
    positive when the lesion hurts.

    Args:
        outputs: Logits ``[K, N, C]`` or predicted labels ``[K, N]`` of ``K``
            lesioned networks.
        labels: Class indices ``[N]``.
        removed: ``K`` collections of removed block indices, in the order of
            ``outputs``.
        reference: Logits ``[N, C]`` or predicted labels ``[N]`` of the full
            network (default: ``None``, no ``drop`` column).

    Returns:
        A DataFrame with one row per lesion and columns ``removed`` (a tuple
        of block indices), ``accuracy`` and, with a reference, ``drop``.

    Raises:
        ValueError: When ``removed`` does not have one entry per lesioned
            network, or any outputs and labels differ in sample count.
    """
    predictions, checked = predictions_and_labels(outputs, labels)
    if checked is None:
        raise TypeError("lesion_table needs labels [samples], but got None")
    if predictions.dim() != 2:
        raise ValueError(
            f"outputs must be [lesions, samples, classes] or [lesions, samples], "
            f"but got predictions of shape {tuple(predictions.shape)}"
        )
    removed = [tuple(int(i) for i in entry) for entry in removed]
    if len(removed) != predictions.shape[0]:
        raise ValueError(
            f"removed lists {len(removed)} lesions but outputs hold "
            f"{predictions.shape[0]}; pass one tuple of removed blocks per output"
        )

    table = pd.DataFrame(
        {
            "removed": pd.Series(removed, dtype=object),
            "accuracy": accuracy(predictions, checked).numpy(),
        }
    )
    if reference is not None:
        full = as_tensor(reference, "reference")
        full_predictions, _ = predictions_and_labels(full, checked)
        if full_predictions.dim() != 1:
            raise ValueError(
                f"reference must be the full network's logits [samples, classes] "
                f"or labels [samples], but got shape {tuple(full.shape)}"
            )
        table["drop"] = float(accuracy(full_predictions, checked)) - table["accuracy"]
    return table


def column_table(
    outputs: Any, labels: Any, *, reference: Any | None = None
) -> pd.DataFrame:
    """Tabulate the accuracy of each FractalNet column alone against the full net.

    Larsson, Maire and Shakhnarovich 2016 (arXiv 1605.07648) extract single
    columns of a FractalNet trained with drop-path and find that a deep
    column alone nearly matches the full network. Column ``c`` is the member
    that keeps only the ``c``-th column, ``sampler.columns()[c]``; run the
    columns with ``ls.evaluate(model, sampler.columns(), x)``.

    Args:
        outputs: Logits ``[K, N, C]`` or predicted labels ``[K, N]`` of the
            ``K`` columns, in column order.
        labels: Class indices ``[N]``.
        reference: Logits ``[N, C]`` or labels ``[N]`` of the full network
            (default: ``None``, no ``drop`` column).

    Returns:
        A DataFrame with columns ``column``, ``accuracy`` and, with a
        reference, ``drop`` (full accuracy minus column accuracy).
    """
    predictions, _ = predictions_and_labels(outputs, None)
    removed = [()] * (predictions.shape[0] if predictions.dim() == 2 else 0)
    table = lesion_table(outputs, labels, removed, reference=reference)
    table = table.drop(columns="removed")
    table.insert(0, "column", range(len(table)))
    return table
