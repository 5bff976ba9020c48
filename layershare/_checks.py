"""Argument checks shared by the models and blocks."""

from __future__ import annotations

__all__ = ["check_positive_int", "check_positive_ints"]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int of at least 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, but got {value!r}")
    return value


def check_positive_ints(**values: object) -> None:
    """Check each keyword argument with :func:`check_positive_int`, in order."""
    for name, value in values.items():
        check_positive_int(name, value)
