"""Linear centered kernel alignment (CKA) between representations.

Kornblith, Norouzi, Lee and Hinton 2019, "Similarity of Neural Network
Representations Revisited", arXiv 1905.00414. For features ``X [N, D1]`` and
``Y [N, D2]`` of the same ``N`` samples, with linear kernels ``K = X X^T``
and ``L = Y Y^T``,

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

The biased estimator uses ``HSIC(K, L) = tr(K H L H) / (N - 1)^2`` with the
centering matrix ``H`` (Gretton et al. 2005); then
``CKA = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` for centered
features. The unbiased estimator (Song et al. 2012) zeroes the kernels'
diagonals ``K~``, ``L~`` and uses

    HSIC_u = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((N - 1)(N - 2))
              - 2 / (N - 2) * 1^T K~ L~ 1] / (N (N - 3)),

which needs ``N >= 4``. Both are 1 for ``X = Y`` and invariant to isotropic
scaling, orthogonal transforms and translation of either argument. Features
are centered before the kernels are formed, as in the reference code of
Kornblith et al.; this changes neither estimator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from layershare.metrics._checks import as_tensor

__all__ = ["cka", "cka_matrix", "hsic"]


def _features(x: Any, name: str) -> Tensor:
    """Return features ``[N, D]`` (float64), flattening trailing dimensions."""
    t = as_tensor(x, name)
    if not t.is_floating_point():
        t = t.double()
    if t.dim() < 2 or t.shape[0] == 0:
        raise ValueError(
            f"{name} must be features [samples, ...] with at least one feature "
            f"dimension, but got shape {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    flat = t.reshape(t.shape[0], -1).double()
    return flat - flat.mean(0, keepdim=True)


def _gram(x: Tensor) -> Tensor:
    return x @ x.T


def _hsic_biased(kx: Tensor, ky: Tensor) -> Tensor:
    """Return ``tr(K L) / (N - 1)^2`` for kernels of centered features."""
    n = kx.shape[0]
    return (kx * ky).sum() / (n - 1) ** 2


def _hsic_unbiased(kx: Tensor, ky: Tensor) -> Tensor:
    """Return the unbiased HSIC estimator of Song et al. 2012."""
    n = kx.shape[0]
    kx = kx.clone().fill_diagonal_(0.0)
    ky = ky.clone().fill_diagonal_(0.0)
    trace = (kx * ky).sum()
    sums = kx.sum() * ky.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (kx.sum(0) * ky.sum(0)).sum()
    return (trace + sums - cross) / (n * (n - 3))


def hsic(x: Any, y: Any, *, unbiased: bool = False) -> Tensor:
    """Compute the Hilbert-Schmidt independence criterion with linear kernels.

    Args:
        x: Features ``[N, ...]``.
        y: Features ``[N, ...]`` of the same samples.
        unbiased: Use the unbiased estimator, which needs ``N >= 4``
            (default: ``False``).

    Returns:
        A 0-d float64 tensor.
    """
    fx, fy = _pair(x, y, unbiased)
    estimator = _hsic_unbiased if unbiased else _hsic_biased
    return estimator(_gram(fx), _gram(fy))


def _pair(x: Any, y: Any, unbiased: bool) -> tuple[Tensor, Tensor]:
    fx, fy = _features(x, "x"), _features(y, "y")
    if fx.shape[0] != fy.shape[0]:
        raise ValueError(
            f"x has {fx.shape[0]} samples but y has {fy.shape[0]}; CKA compares "
            f"features of the same samples"
        )
    _check_samples(fx.shape[0], unbiased)
    return fx, fy


def _check_samples(samples: int, unbiased: bool) -> None:
    if unbiased and samples < 4:
        raise ValueError(
            f"unbiased CKA needs at least 4 samples, but got {samples}; use "
            f"unbiased=False or more samples"
        )
    if samples < 2:
        raise ValueError(f"CKA needs at least 2 samples, but got {samples}")


def _normalize(cross: Tensor, self_x: Tensor, self_y: Tensor, names: str) -> Tensor:
    """Divide HSIC(K, L) by sqrt(HSIC(K, K) HSIC(L, L)), rejecting zero spread."""
    for value, name in zip((self_x, self_y), names.split(","), strict=True):
        if float(value) <= 0:
            raise ValueError(
                f"CKA is undefined because HSIC({name}, {name}) = {float(value):.4g} "
                f"is not positive: the features of {name} do not vary across "
                f"samples (or too few samples for the unbiased estimator)"
            )
    return cross / torch.sqrt(self_x * self_y)


def cka(x: Any, y: Any, *, unbiased: bool = False) -> Tensor:
    """Compute linear CKA between two representations of the same samples.

    Args:
        x: Features ``[N, ...]``, flattened to ``[N, D1]``.
        y: Features ``[N, ...]``, flattened to ``[N, D2]``.
        unbiased: Use the unbiased HSIC estimator (default: ``False``).

    Returns:
        A 0-d float64 tensor; in ``[0, 1]`` for the biased estimator, and
        possibly slightly outside for the unbiased one.

    Raises:
        ValueError: For fewer than 4 samples with ``unbiased=True``, different
            sample counts, or features that are constant across samples.

    Example:
        >>> x = torch.randn(10, 3)
        >>> round(float(cka(x, 2 * x + 1)), 6)
        1.0
    """
    fx, fy = _pair(x, y, unbiased)
    kx, ky = _gram(fx), _gram(fy)
    estimator = _hsic_unbiased if unbiased else _hsic_biased
    return _normalize(estimator(kx, ky), estimator(kx, kx), estimator(ky, ky), "x,y")


def cka_matrix(features: Sequence[Any] | Tensor, *, unbiased: bool = False) -> Tensor:
    """Compute linear CKA between every pair of representations.

    Args:
        features: ``K`` representations of the same ``N`` samples, as a list
            of ``[N, ...]`` tensors or one ``[K, N, ...]`` tensor: the outputs
            of members, of blocks or of unrolled steps.
        unbiased: Use the unbiased HSIC estimator (default: ``False``).

    Returns:
        The symmetric ``[K, K]`` matrix (float64) with ones on the diagonal.
    """
    flats = [_features(f, f"features[{i}]") for i, f in enumerate(features)]
    if not flats:
        raise ValueError("features is empty; pass at least one representation")
    samples = {f.shape[0] for f in flats}
    if len(samples) > 1:
        raise ValueError(
            f"all representations must cover the same samples, but the sample "
            f"counts are {sorted(samples)}"
        )
    _check_samples(samples.pop(), unbiased)
    estimator = _hsic_unbiased if unbiased else _hsic_biased
    grams = [_gram(f) for f in flats]
    own = torch.stack([estimator(g, g) for g in grams])
    for i, value in enumerate(own.tolist()):
        if value <= 0:
            raise ValueError(
                f"CKA is undefined for features[{i}] because HSIC with itself is "
                f"{value:.4g}: its features do not vary across samples"
            )
    count = len(grams)
    result = torch.eye(count, dtype=torch.float64)
    for i in range(count):
        for j in range(i + 1, count):
            value = estimator(grams[i], grams[j]) / torch.sqrt(own[i] * own[j])
            result[i, j] = result[j, i] = value
    return result
