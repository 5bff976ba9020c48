"""Lesion members remove exactly the named gates from the full network."""

from __future__ import annotations

import math

import pytest

import layershare as ls


def test_single_lesions_cover_each_gate():
    members, removed = ls.lesion_members(ls.Graph.chain(4))
    assert removed == [(0,), (1,), (2,), (3,)]
    assert members.codes() == [0b1110, 0b1101, 0b1011, 0b0111]


def test_pair_lesions_are_all_subsets():
    members, removed = ls.lesion_members(ls.Graph.chain(5), 2)
    assert len(removed) == math.comb(5, 2)
    assert all(bin(code).count("1") == 3 for code in members.codes())


def test_sampled_lesions_are_distinct():
    members, removed = ls.lesion_members(ls.Graph.chain(10), 3, max_sets=20, seed=1)
    assert len(set(removed)) == 20
    assert removed == sorted(removed)


def test_sampled_lesions_follow_seed():
    first = ls.lesion_members(ls.Graph.chain(10), 3, max_sets=20, seed=1)[1]
    second = ls.lesion_members(ls.Graph.chain(10), 3, max_sets=20, seed=1)[1]
    assert first == second


def test_lesion_size_out_of_range_rejected():
    with pytest.raises(ValueError, match="between 0 and 3"):
        ls.lesion_members(ls.Graph.chain(3), 4)
