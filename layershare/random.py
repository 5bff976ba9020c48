"""Counter-based random numbers for reproducible members.

Member ``i`` of ``Sampler.sample(n, seed=s)`` must be the same whatever ``n``,
the chunk size, the batch size or the device. The uniforms behind it are
therefore a pure function of ``(seed, stream, row, column)``: the SplitMix64
finalizer (Steele, Lea and Flood 2014, "Fast splittable pseudorandom number
generators") applied to a chain of those four integers, computed with numpy
``uint64`` arithmetic, which wraps modulo 2**64 on every platform.

Unit gates need whole masks rather than a few uniforms per member, so a
member carries one 63-bit seed (:func:`member_seeds`). The mask of each join
comes from a CPU ``torch.Generator`` seeded with :func:`derive_seed` of the
member seed and the join's index.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed", "member_seeds", "uniforms"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Apply the SplitMix64 finalizer element-wise to a ``uint64`` array."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, rows: np.ndarray, columns: int, stream: int = 0) -> np.ndarray:
    """Compute uniforms in [0, 1) that depend only on their coordinates.

    Args:
        seed: Non-negative integer seed.
        rows: Row counters (for instance member indices), any integer array.
        columns: Number of uniforms per row.
        stream: Independent stream number for the same seed (default: 0).

    Returns:
        A float64 array of shape ``[len(rows), columns]``.
    """
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be between 0 and 2**64 - 1, but got {seed}")
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed], dtype=np.uint64))
        key = _splitmix64(key ^ np.array([stream], dtype=np.uint64))
        row = _splitmix64(key ^ np.asarray(rows, dtype=np.int64).astype(np.uint64))

        # Chain the column into the row's hash. Hashing the column with the
        # same key and XOR-ing the two would cancel wherever key ^ row equals
        # key + column, fixing uniform (0, 0) for every seed.
        col = np.arange(columns, dtype=np.uint64)
        bits = _splitmix64(row[:, None] ^ col[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def member_seeds(seed: int, rows: np.ndarray, stream: int = 0) -> np.ndarray:
    """Compute 63-bit seeds that depend only on ``(seed, stream, row)``.

    Args:
        seed: Non-negative integer seed.
        rows: Row counters (member indices), any integer array.
        stream: Independent stream number for the same seed (default: 0).

    Returns:
        An int64 array of shape ``[len(rows)]`` with values in ``[0, 2**63)``.
    """
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be between 0 and 2**64 - 1, but got {seed}")
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed], dtype=np.uint64))
        key = _splitmix64(key ^ np.array([stream], dtype=np.uint64))
        row = _splitmix64(key ^ np.asarray(rows, dtype=np.int64).astype(np.uint64))
    return (row >> np.uint64(1)).astype(np.int64)


def derive_seed(seed: int, *keys: int) -> int:
    """Hash a seed and a sequence of non-negative integer keys into a 63-bit seed."""
    with np.errstate(over="ignore"):
        state = _splitmix64(np.array([seed], dtype=np.uint64))
        for key in keys:
            state = _splitmix64(state ^ np.array([key], dtype=np.uint64))
    return int(state[0] >> np.uint64(1))
