"""Ensemble curves: accuracy and NLL as members are added to the ensemble.

The ensemble of the first ``k`` members is the mean of their softmax
probabilities. Members are added in one of three orders: a seeded random
permutation, best first (by each member's own accuracy) or by path length.
Confidence intervals come from :func:`scipy.stats.bootstrap` over the test
samples, with the members held fixed, so they describe the uncertainty due
to the finite test set, not to the choice of members.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor

from layershare.metrics._checks import as_labels, as_logits, as_tensor

__all__ = ["CURVE_COLUMNS", "curve_sizes", "ensemble_curve", "member_order"]

CURVE_COLUMNS = ["size", "order", "value", "ci_low", "ci_high"]

ORDERS = ("random", "best", "length")
METRICS = ("accuracy", "nll")

# Members whose probabilities are held at once while curves accumulate.
_CHUNK = 256

# Bootstrap resamples are drawn in batches of at most this many elements
# (sizes x resamples x samples), so one batch takes at most 128 MiB of float64.
_BOOTSTRAP_ELEMENTS = 2**24


def member_order(
    logits: Tensor,
    labels: Tensor,
    order: str,
    *,
    seed: int = 0,
    lengths: Any | None = None,
) -> Tensor:
    """Return the permutation ``[M]`` of members for an ensemble curve.

    Args:
        logits: Member logits ``[M, N, C]`` (float64).
        labels: Class indices ``[N]``.
        order: ``"random"`` (a permutation from ``torch.randperm`` seeded with
            ``seed``), ``"best"`` (descending member accuracy) or ``"length"``
            (ascending ``lengths``). Ties keep the members' original order.
        seed: Seed of the random order.
        lengths: One number per member, such as path length; needed for
            ``"length"``.
    """
    members = logits.shape[0]
    if order == "random":
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randperm(members, generator=generator)
    if order == "best":
        correct = (logits.argmax(-1).cpu() == labels.cpu()).sum(-1)
        return torch.sort(correct, descending=True, stable=True).indices
    if order == "length":
        if lengths is None:
            raise ValueError(
                'order="length" needs lengths, one per member (for example '
                "sampler.lengths(members))"
            )
        key = as_tensor(lengths, "lengths").cpu()
        if key.shape != (members,):
            raise ValueError(
                f"lengths must have shape [{members}], one per member, but got "
                f"shape {tuple(key.shape)}"
            )
        return torch.sort(key, stable=True).indices
    raise ValueError(f"order must be one of {ORDERS}, but got {order!r}")


def curve_sizes(members: int, sizes: int | Sequence[int] | None) -> np.ndarray:
    """Return the sorted ensemble sizes at which a curve is computed.

    ``None`` gives every size ``1..members`` when ``members <= 32`` and
    otherwise 32 sizes spread log-uniformly from 1 to ``members`` (rounded
    and deduplicated, so there may be fewer). An int gives that many
    log-uniform sizes; a sequence is used as given.
    """
    if sizes is None:
        sizes = members if members <= 32 else 32
    if isinstance(sizes, (int, np.integer)) and not isinstance(sizes, bool):
        if sizes < 1:
            raise ValueError(f"sizes must be a positive int, but got {sizes}")
        if sizes >= members:
            return np.arange(1, members + 1)
        spread = np.geomspace(1, members, int(sizes))
        return np.unique(np.round(spread).astype(np.int64))
    chosen = np.unique(np.asarray(list(sizes), dtype=np.int64))
    if chosen.size == 0 or chosen[0] < 1 or chosen[-1] > members:
        raise ValueError(
            f"sizes must lie in 1..{members}, the number of members, but got "
            f"{list(sizes)}"
        )
    return chosen


def _per_sample(
    logits: Tensor,
    labels: Tensor,
    permutation: Tensor,
    sizes: np.ndarray,
    metric: str,
) -> np.ndarray:
    """Return the metric per sample ``[len(sizes), N]`` for each ensemble size.

    Members are read in chunks of :data:`_CHUNK` in the order ``permutation``,
    so memory stays at one chunk of probabilities, whatever ``M``.
    """
    largest = int(sizes[-1])
    if metric == "accuracy":
        rows = []
        running = logits.new_zeros(logits.shape[1:])
        wanted = list(sizes)
        for start in range(0, largest, _CHUNK):
            chunk = permutation[start : min(start + _CHUNK, largest)]
            partial = running + torch.softmax(logits[chunk], dim=-1).cumsum(0)
            while wanted and wanted[0] <= start + len(chunk):
                total = partial[wanted.pop(0) - 1 - start]
                rows.append(total.argmax(-1) == labels)
            running = partial[-1]
        return torch.stack(rows).double().numpy()

    # log p_ens(y) of the first k members: logcumsumexp of the members'
    # log-probabilities of the label, minus log k, stable for tiny probabilities.
    label_log_probs = []
    for start in range(0, largest, _CHUNK):
        chunk = permutation[start : min(start + _CHUNK, largest)]
        log_probs = torch.log_softmax(logits[chunk], dim=-1)
        index = labels.expand(len(chunk), -1)[..., None]
        label_log_probs.append(log_probs.gather(-1, index)[..., 0])
    cumulative = torch.logcumsumexp(torch.cat(label_log_probs), dim=0)
    index = torch.as_tensor(sizes - 1)
    log_ensemble = cumulative[index] - torch.log(index.double() + 1)[:, None]
    return (-log_ensemble).numpy()


def _bootstrap(
    values: np.ndarray,
    *,
    confidence: float,
    n_resamples: int,
    method: str,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Return bootstrap confidence bounds of the mean of each row of ``values``."""
    means = values.mean(-1)
    low, high = means.copy(), means.copy()

    # A row whose samples are all equal has a zero-width interval; BCa would
    # return NaN for it, so it is filled directly.
    varying = np.ptp(values, axis=-1) > 0
    if not varying.any():
        return low, high
    rows = values[varying]
    batch = max(1, _BOOTSTRAP_ELEMENTS // rows.size)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (rows,),
            np.mean,
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            axis=-1,
            confidence_level=confidence,
            method=method,
            rng=rng,
        )
    row_low = np.asarray(result.confidence_interval.low, dtype=np.float64)
    row_high = np.asarray(result.confidence_interval.high, dtype=np.float64)

    # BCa can still fail on nearly constant rows (every resample on one side
    # of the estimate); those rows fall back to the percentile interval.
    failed = ~(np.isfinite(row_low) & np.isfinite(row_high))
    if failed.any():
        fallback = stats.bootstrap(
            (rows[failed],),
            np.mean,
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            axis=-1,
            confidence_level=confidence,
            method="percentile",
            rng=rng,
        )
        row_low[failed] = fallback.confidence_interval.low
        row_high[failed] = fallback.confidence_interval.high
    low[varying] = row_low
    high[varying] = row_high
    return low, high


def ensemble_curve(
    logits: Any,
    labels: Any,
    *,
    order: str = "random",
    seed: int = 0,
    lengths: Any | None = None,
    metric: str = "accuracy",
    confidence: float = 0.95,
    n_resamples: int = 1999,
    sizes: int | Sequence[int] | None = None,
    method: str = "BCa",
) -> pd.DataFrame:
    """Measure the ensemble of the first ``k`` members as ``k`` grows.

    The ensemble of members ``pi(1), ..., pi(k)`` predicts
    ``p_k = (1 / k) * sum_{i <= k} softmax(logits[pi(i)])``. Its accuracy
    counts ``argmax_c p_k == label``, with ties to the first maximal class.
    Its negative log-likelihood is ``-(1 / N) * sum_j log p_k[j, labels[j]]``,
    computed from log-probabilities so it stays finite. The permutation ``pi``
    comes from ``order``.

    Rows are returned only for the sizes in ``sizes``: by default every size
    up to 32 members, and 32 log-uniformly spread sizes (always including 1
    and ``M``) beyond that, because each size costs one bootstrap.

    Args:
        logits: Member logits ``[M, N, C]``.
        labels: Class indices ``[N]``.
        order: ``"random"``, ``"best"`` or ``"length"``; see
            :func:`member_order` (default: ``"random"``).
        seed: Seed of the random order and of the bootstrap resampling
            (default: 0).
        lengths: One number per member, needed for ``order="length"``
            (default: ``None``).
        metric: ``"accuracy"`` or ``"nll"`` (default: ``"accuracy"``).
        confidence: Confidence level of the intervals (default: 0.95).
        n_resamples: Bootstrap resamples (default: 1999).
        sizes: The ensemble sizes to report: an int for that many
            log-uniform sizes, a sequence of sizes, or ``None``
            (default: ``None``).
        method: ``scipy.stats.bootstrap`` method, ``"BCa"``,
            ``"percentile"`` or ``"basic"`` (default: ``"BCa"``).

    Returns:
        A DataFrame with columns ``size``, ``order``, ``value``, ``ci_low``
        and ``ci_high``, one row per size, without NaN. A size whose
        per-sample values are all equal gets ``ci_low == ci_high == value``.

    Example:
        >>> curve = ensemble_curve(logits, y, order="best")  # doctest: +SKIP
        >>> curve.plot(x="size", y="value", logx=True)  # doctest: +SKIP
    """
    x = as_logits(logits, "logits")
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(
            f"logits must have shape [members, samples, classes] with at least "
            f"one member, but got shape {tuple(x.shape)}"
        )
    x = x.cpu()
    y = as_labels(labels, x.shape[1], x.shape[2]).cpu()
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, but got {metric!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), but got {confidence}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int):
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples}")

    permutation = member_order(x, y, order, seed=seed, lengths=lengths)
    chosen = curve_sizes(x.shape[0], sizes)
    values = _per_sample(x, y, permutation, chosen, metric)
    low, high = _bootstrap(
        values,
        confidence=confidence,
        n_resamples=n_resamples,
        method=method,
        seed=seed,
    )
    return pd.DataFrame(
        {
            "size": chosen,
            "order": order,
            "value": values.mean(-1),
            "ci_low": low,
            "ci_high": high,
        },
        columns=CURVE_COLUMNS,
    )
