"""Sampler: counts, enumeration, sampling, probabilities and path lengths.

Every expected value comes from brute force over gate assignments (see
``bruteforce.py``) or from a closed form computed by hand.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from bruteforce import (
    active_edges,
    distinct_members,
    droppath_local_probability,
    fractal_graph,
    longest_path,
    poisson_binomial,
)
from scipy import stats

import layershare as ls
from layershare.graph import Graph

LOCAL_ONLY = ls.DropPath(local=0.3, global_ratio=0.0)


def _edge_set(graph: Graph, member: ls.Member) -> frozenset[int]:
    """Active edges of a member, found by the brute-force walk."""
    kept = [(member.code >> g) & 1 == 1 for g in range(graph.num_gates)]
    return active_edges(graph, kept)


# ------------------------------------------------------------------ count


@pytest.mark.parametrize("blocks", [1, 2, 5, 8])
def test_count_chain(blocks):
    graph = Graph.chain(blocks)
    sampler = ls.Sampler(graph, ls.StochasticDepth())
    assert sampler.count() == 2**blocks
    assert sampler.count() == len(distinct_members(graph))


@pytest.mark.parametrize(
    "columns, blocks",
    [(2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3), (4, 1)],
)
def test_count_fractal_brute_force(columns, blocks):
    graph = fractal_graph(columns, blocks)
    assert ls.Sampler(graph, LOCAL_ONLY).count() == len(distinct_members(graph))


@pytest.mark.parametrize("columns", [2, 3, 4])
@pytest.mark.parametrize("blocks", [2, 3])
def test_count_fractal_blocks_multiply(columns, blocks):
    # The pool between blocks is on every path, so each block picks its
    # active subgraph independently: the count is the one-block brute-force
    # count to the power of the number of blocks.
    single = len(distinct_members(fractal_graph(columns, 1)))
    count = ls.Sampler(fractal_graph(columns, blocks), LOCAL_ONLY).count()
    assert count == single**blocks


def test_count_fractal_by_hand():
    # Three columns: the 3-input join keeps a nonempty subset (7); the 6
    # subsets that use the inner block's output each combine with its 3
    # patterns, the subset {shallowest column} with nothing: 6 * 3 + 1.
    assert ls.Sampler(fractal_graph(3, 1), LOCAL_ONLY).count() == 19


def test_count_assignments():
    graph = fractal_graph(3, 2)
    sampler = ls.Sampler(graph, LOCAL_ONLY)
    valid = sum(
        all(any(kept[g] for g in graph.join_gates(j)) for j in graph.joins)
        for kept in _all_assignments(graph)
    )
    assert sampler.count(assignments=True) == valid


def _all_assignments(graph):
    for code in range(2**graph.num_gates):
        yield [(code >> g) & 1 == 1 for g in range(graph.num_gates)]


def test_count_is_int():
    assert type(ls.Sampler(Graph.chain(70), ls.StochasticDepth()).count()) is int


def test_count_long_chain():
    assert ls.Sampler(Graph.chain(3000), ls.StochasticDepth()).count() == 2**3000


# -------------------------------------------------------------- enumerate


def test_enumerate_fractal_matches_brute_force():
    graph = fractal_graph(3, 2)
    members = ls.Sampler(graph, LOCAL_ONLY).enumerate()
    expected = set(distinct_members(graph))
    found = [_edge_set(graph, m) for m in members]
    assert len(found) == len(set(found))
    assert set(found) == expected


def test_enumerate_increasing_codes():
    codes = ls.Sampler(fractal_graph(4, 1), LOCAL_ONLY).enumerate().codes()
    assert all(a < b for a, b in zip(codes, codes[1:], strict=False))


def test_enumerate_canonical():
    graph = fractal_graph(3, 1)
    for member in ls.Sampler(graph, LOCAL_ONLY).enumerate():
        used = _edge_set(graph, member)
        dead = [g for g in range(graph.num_gates) if graph.gated[g] not in used]
        assert all((member.code >> g) & 1 == 0 for g in dead)


def test_enumerate_chain_codes():
    assert ls.Sampler(Graph.chain(4), ls.StochasticDepth()).enumerate().codes() == list(
        range(16)
    )


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 361])
def test_iter_members_chunks(chunk_size):
    sampler = ls.Sampler(fractal_graph(3, 2), LOCAL_ONLY)
    chunks = list(sampler.iter_members(chunk_size))
    assert all(len(c) <= chunk_size for c in chunks)
    joined = [code for c in chunks for code in c.codes()]
    assert joined == sampler.enumerate().codes()


def test_enumerate_limit_message():
    sampler = ls.Sampler(Graph.chain(6), ls.StochasticDepth(), max_members=10)
    with pytest.raises(ls.TooManyMembersError, match="64") as info:
        sampler.enumerate()
    assert "sample" in str(info.value)
    assert info.value.count == 64


def test_enumerate_limit_settable():
    sampler = ls.Sampler(Graph.chain(6), ls.StochasticDepth(), max_members=64)
    assert len(sampler.enumerate()) == 64


def test_enumerate_mixed_includes_columns():
    sampler = ls.Sampler(fractal_graph(3, 2), ls.DropPath(global_ratio=0.5))
    codes = set(sampler.enumerate().codes())
    assert set(sampler.columns().codes()) <= codes


# ---------------------------------------------------------------- sample


def test_sample_prefix_stable():
    sampler = ls.Sampler(fractal_graph(3, 2), ls.DropPath())
    small = sampler.sample(50, seed=3)
    large = sampler.sample(500, seed=3)
    assert small.codes() == large.codes()[:50]


def test_sample_seed_changes_members():
    sampler = ls.Sampler(fractal_graph(3, 2), ls.DropPath())
    assert sampler.sample(50, seed=1) != sampler.sample(50, seed=2)


def test_sample_canonical():
    graph = fractal_graph(3, 1)
    sampler = ls.Sampler(graph, ls.DropPath(local=0.5))
    canonical = set(sampler.enumerate().codes())
    assert set(sampler.sample(2000, seed=0).codes()) <= canonical


def test_sample_unique_distinct():
    sampler = ls.Sampler(fractal_graph(3, 1), LOCAL_ONLY)
    members = sampler.sample(19, seed=0, unique=True)
    assert len(set(members.codes())) == 19


def test_sample_unique_prefix():
    sampler = ls.Sampler(fractal_graph(3, 2), ls.DropPath())
    few = sampler.sample(10, seed=4, unique=True).codes()
    many = sampler.sample(40, seed=4, unique=True).codes()
    assert few == many[:10]


def test_sample_unique_too_many():
    sampler = ls.Sampler(Graph.chain(3), ls.StochasticDepth(p_last=0.0, rule="uniform"))
    with pytest.raises(ValueError, match="1 members of nonzero probability"):
        sampler.sample(2, seed=0, unique=True)


def test_sample_rejects_negative_seed():
    with pytest.raises(ValueError, match="seed"):
        ls.Sampler(Graph.chain(2), ls.StochasticDepth()).sample(3, seed=-1)


def _chi_square(sampler: ls.Sampler, draws: int, seed: int) -> tuple[float, int]:
    """Compare member frequencies with probability(); return p-value and misses."""
    members = sampler.enumerate()
    probs = np.array([sampler.probability(m) for m in members])
    observed = Counter(sampler.sample(draws, seed=seed).codes())
    counts = np.array([observed.get(code, 0) for code in members.codes()])
    positive = probs > 0
    unexpected = int(counts[~positive].sum())
    expected = probs[positive] * draws
    result = stats.chisquare(counts[positive], expected * counts.sum() / expected.sum())
    return float(result.pvalue), unexpected


@pytest.mark.parametrize(
    "scheme",
    [
        ls.DropPath(local=0.3, global_ratio=0.0),
        ls.DropPath(local=0.3, global_ratio=1.0),
        ls.DropPath(local=0.3, global_ratio=0.5),
        ls.DropPath(local=0.3, global_ratio=0.5, all_dropped="keep_one"),
        ls.DropPath(local=0.6, global_ratio=0.0, all_dropped="keep_one"),
    ],
    ids=["local", "global", "mixed", "mixed-keep-one", "keep-one"],
)
def test_sample_frequencies_droppath(scheme):
    pvalue, unexpected = _chi_square(ls.Sampler(fractal_graph(3, 1), scheme), 20000, 7)
    assert unexpected == 0
    assert pvalue > 1e-3


@pytest.mark.parametrize("rule", ["linear", "uniform"])
def test_sample_frequencies_stochastic_depth(rule):
    sampler = ls.Sampler(Graph.chain(4), ls.StochasticDepth(p_last=0.3, rule=rule))
    pvalue, unexpected = _chi_square(sampler, 20000, 11)
    assert unexpected == 0
    assert pvalue > 1e-3


# ----------------------------------------------------------- probability


@pytest.mark.parametrize("columns, blocks", [(3, 1), (2, 2), (3, 2)])
def test_probability_sums_out_dead_gates(columns, blocks):
    # A member's probability is the total probability of the raw assignments
    # that produce its active subgraph, dead gates included.
    graph = fractal_graph(columns, blocks)
    sampler = ls.Sampler(graph, ls.DropPath(local=0.35, global_ratio=0.0))
    groups = distinct_members(graph)
    for member in sampler.enumerate():
        expected = sum(
            droppath_local_probability(graph, kept, 0.35)
            for kept in groups[_edge_set(graph, member)]
        )
        assert sampler.probability(member) == pytest.approx(expected, rel=1e-12)


def test_probability_global_by_hand():
    # Global only: each of the 3 columns has probability 1/3.
    sampler = ls.Sampler(fractal_graph(3, 2), ls.DropPath(global_ratio=1.0))
    for member in sampler.columns():
        assert sampler.probability(member) == pytest.approx(1 / 3)


def test_probability_mixed_by_hand():
    # The deepest column of a 2-column block: local keeps only it with
    # probability q p / (1 - p**2); global picks it with probability 1/2.
    p, ratio = 0.2, 0.4
    sampler = ls.Sampler(fractal_graph(2, 1), ls.DropPath(local=p, global_ratio=ratio))
    deep = sampler.columns()[1]
    local = (1 - p) * p / (1 - p**2)
    assert sampler.probability(deep) == pytest.approx(ratio / 2 + (1 - ratio) * local)


@pytest.mark.parametrize(
    "scheme",
    [
        ls.DropPath(local=0.3, global_ratio=0.5),
        ls.DropPath(local=1.0, global_ratio=0.25, all_dropped="keep_one"),
        ls.DropPath(local=0.0, global_ratio=0.5),
    ],
)
def test_probability_total_one(scheme):
    sampler = ls.Sampler(fractal_graph(3, 2), scheme)
    total = sum(sampler.probability(m) for m in sampler.enumerate())
    assert total == pytest.approx(1.0, abs=1e-12)


def test_probability_stochastic_depth_by_hand():
    # Survival 3/4, 1/2 for two linear blocks with p_last = 1/2; keep only
    # the second: (1/4)(1/2).
    sampler = ls.Sampler(Graph.chain(2), ls.StochasticDepth(p_last=0.5))
    member = ls.Members.from_codes([0b10], 2)[0]
    assert sampler.probability(member) == pytest.approx(0.125)


def test_probability_non_canonical_member():
    graph = fractal_graph(3, 1)
    sampler = ls.Sampler(graph, LOCAL_ONLY)
    # Keep only the shallowest column of the outer join; gates of the inner
    # join are dead, so setting them does not change the probability.
    shallow = [
        g for g in graph.join_gates(graph.joins[1]) if graph.gate_edge(g).column == 0
    ]
    canonical = ls.Members.from_codes([1 << shallow[0]], graph.num_gates)[0]
    noisy = ls.Members.from_codes([(1 << shallow[0]) | 0b11], graph.num_gates)[0]
    assert sampler.probability(noisy) == sampler.probability(canonical)


def test_probability_rejects_broken_member():
    graph = fractal_graph(2, 1)
    sampler = ls.Sampler(graph, LOCAL_ONLY)
    with pytest.raises(ls.MemberError, match="drops every input"):
        sampler.probability(ls.Members.from_codes([0], graph.num_gates)[0])


# --------------------------------------------------------------- columns


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_columns_one_per_column(columns):
    graph = fractal_graph(columns, 2)
    members = ls.Sampler(graph, ls.DropPath()).columns()
    assert len(members) == columns
    for c, member in enumerate(members):
        used = _edge_set(graph, member)
        labels = {
            graph.edges[i].column for i in used if graph.edges[i].gate is not None
        }
        convs = sum(1 for i in used if graph.edges[i].dst.startswith("conv"))
        assert labels == {c}
        assert convs == 2 * 2**c


def test_columns_without_labels():
    with pytest.raises(ValueError, match="no columns"):
        ls.Sampler(Graph.chain(2), ls.StochasticDepth()).columns()


# ------------------------------------------------------------ path lengths


@pytest.mark.parametrize("blocks", [1, 4, 9])
def test_path_lengths_binomial(blocks):
    sampler = ls.Sampler(Graph.chain(blocks), ls.StochasticDepth())
    expected = stats.binom.pmf(np.arange(blocks + 1), blocks, 0.5)
    np.testing.assert_allclose(sampler.path_lengths("uniform"), expected, rtol=1e-12)


@pytest.mark.parametrize("rule", ["linear", "uniform"])
def test_path_lengths_poisson_binomial(rule):
    scheme = ls.StochasticDepth(p_last=0.2, rule=rule)
    sampler = ls.Sampler(Graph.chain(6), scheme)
    expected = poisson_binomial(scheme.survival(6))
    np.testing.assert_allclose(sampler.path_lengths(), expected, rtol=1e-12)


def test_path_lengths_fractal_brute_force():
    graph = fractal_graph(3, 2)
    sampler = ls.Sampler(graph, ls.DropPath(local=0.35, global_ratio=0.0))
    expected = np.zeros(20)
    for used, group in distinct_members(graph).items():
        prob = sum(droppath_local_probability(graph, kept, 0.35) for kept in group)
        expected[longest_path(graph, used)] += prob
    got = sampler.path_lengths()
    np.testing.assert_allclose(got, expected[: len(got)], rtol=1e-10, atol=1e-15)
    assert expected[len(got) :].sum() == 0


def test_path_lengths_uniform_fractal_brute_force():
    graph = fractal_graph(3, 1)
    counts = Counter(longest_path(graph, used) for used in distinct_members(graph))
    expected = [counts[k] / 19 for k in range(max(counts) + 1)]
    got = ls.Sampler(graph, LOCAL_ONLY).path_lengths("uniform")
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_path_lengths_global_by_hand():
    # Global only, three columns of depth 1, 2 and 4 per block, two blocks.
    sampler = ls.Sampler(fractal_graph(3, 2), ls.DropPath(global_ratio=1.0))
    probs = sampler.path_lengths()
    assert probs[2] == pytest.approx(1 / 3)
    assert probs[4] == pytest.approx(1 / 3)
    assert probs[8] == pytest.approx(1 / 3)


def test_lengths_per_member():
    graph = fractal_graph(3, 1)
    members = ls.Sampler(graph, LOCAL_ONLY).enumerate()
    got = ls.Sampler(graph, LOCAL_ONLY).lengths(members).tolist()
    assert got == [longest_path(graph, _edge_set(graph, m)) for m in members]


# ------------------------------------------------------------------- misc


def test_sampler_from_model():
    model = ls.models.ResidualMLP(in_features=4, width=4, blocks=3)
    assert ls.Sampler(model, ls.StochasticDepth()).count() == 8


def test_sampler_rejects_module_without_graph():
    with pytest.raises(TypeError, match="Graph"):
        ls.Sampler(torch.nn.Linear(2, 2), ls.StochasticDepth())


def test_sampler_rejects_bad_limit():
    with pytest.raises(ValueError, match="max_members"):
        ls.Sampler(Graph.chain(2), ls.StochasticDepth(), max_members=0)


def test_count_probability_zero_members():
    # At local = 1 only single-input patterns have probability; counts are
    # structural, so all 19 members are still counted.
    sampler = ls.Sampler(fractal_graph(3, 1), ls.DropPath(local=1.0, global_ratio=0.0))
    positive = [m for m in sampler.enumerate() if sampler.probability(m) > 0]
    assert sampler.count() == 19
    # Single inputs: outer join keeps the deep or middle column (2 ways, each
    # times 2 for the inner join) or the shallow one: 5.
    assert len(positive) == 5
    assert math.isclose(sum(sampler.probability(m) for m in positive), 1.0)


def test_path_lengths_keep_zero_tail():
    # p = (2/3, 1/3, 0): P(0) = 1/3 * 2/3, P(1) = 2/3 * 2/3 + 1/3 * 1/3, P(3) = 0.
    sampler = ls.Sampler(ls.Graph.chain(3), ls.StochasticDepth(p_last=0.0))
    np.testing.assert_allclose(sampler.path_lengths(), [2 / 9, 5 / 9, 2 / 9, 0.0])


def test_sample_seed_above_64_bits_rejected():
    sampler = ls.Sampler(ls.Graph.chain(3), ls.StochasticDepth())
    with pytest.raises(ValueError, match="2\\*\\*64"):
        sampler.sample(3, seed=2**70)


def test_enumerate_default_limit_is_2_pow_20():
    sampler = ls.Sampler(ls.Graph.chain(21), ls.StochasticDepth())
    with pytest.raises(ls.TooManyMembersError) as raised:
        sampler.enumerate()
    assert raised.value.limit == 2**20
    assert raised.value.count == 2**21
