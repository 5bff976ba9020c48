"""Shared argument checks reject what no model can use."""

from __future__ import annotations

import pytest

from layershare._checks import check_positive_int, check_positive_ints


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "3"])
def test_positive_int_rejects(value):
    with pytest.raises(
        ValueError, match=f"width must be a positive int, but got {value!r}"
    ):
        check_positive_int("width", value)


def test_positive_int_returns_value():
    assert check_positive_int("width", 3) == 3


def test_positive_ints_names_first_bad():
    with pytest.raises(ValueError, match="blocks must be a positive int, but got 0"):
        check_positive_ints(width=4, blocks=0, steps=-1)
