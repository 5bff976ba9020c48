"""Swapout: special cases, unit masks, counts and probabilities.

Counts and probabilities are checked against an explicit unit-level graph,
enumerated assignment by assignment (``bruteforce.py``). Outputs are checked
against the networks the special cases name, or unit by unit against ``x``
and ``F(x)``.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from bruteforce import swapout_key, swapout_unit_members
from scipy import stats
from torch import nn

import layershare as ls
from layershare.graph import Graph
from layershare.nn import GatedModel, Join
from layershare.unit_gates import member_masks


class Chain(GatedModel):
    """Residual chain with linear branches and no stem or head."""

    def __init__(self, width: int, blocks: int, scheme=None) -> None:
        super().__init__(scheme)
        self.branches = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.joins = nn.ModuleList(Join(2, "sum") for _ in range(blocks))

    def forward(self, x):
        for branch, join in zip(self.branches, self.joins, strict=True):
            x = join(x, branch(x))
        return x


def _pairs(theta1: float, theta2: float) -> list[tuple[tuple[bool, bool], float]]:
    """Per-unit (Θ1, Θ2) patterns of independent swapout, rates in (0, 1)."""
    patterns = []
    for skip in (False, True):
        for branch in (False, True):
            p_skip = theta1 if skip else 1 - theta1
            p_branch = theta2 if branch else 1 - theta2
            patterns.append(((skip, branch), p_skip * p_branch))
    return patterns


def _twin(scheme_a, scheme_b, blocks=3, width=6, seed=0):
    torch.manual_seed(seed)
    a = ls.models.ResidualMLP(
        in_features=5, width=width, blocks=blocks, scheme=scheme_a
    )
    b = ls.models.ResidualMLP(
        in_features=5, width=width, blocks=blocks, scheme=scheme_b
    )
    b.load_state_dict(a.state_dict())
    return a, b


# ------------------------------------------------------------ special cases


def test_plain_residual_train():
    swap, plain = _twin(ls.Swapout(1.0, 1.0), None)
    x = torch.randn(8, 5)
    assert torch.equal(swap(x), plain(x))


def test_plain_residual_eval_and_member():
    swap, plain = _twin(ls.Swapout(1.0, 1.0), None)
    swap.eval()
    plain.eval()
    x = torch.randn(8, 5)
    member = ls.Sampler(swap, swap.scheme).sample(1, seed=0)[0]
    assert torch.equal(swap(x), plain(x))
    assert torch.equal(swap(x, member=member), plain(x))


def test_plain_residual_one_member():
    sampler = ls.Sampler(Graph.chain(4), ls.Swapout(1.0, 1.0))
    assert sampler.count() == 1


@pytest.mark.parametrize("rule", ["uniform", "linear"])
def test_stochastic_depth_members(rule):
    depth = ls.StochasticDepth(p_last=0.4, rule=rule)
    theta2 = 0.4 if rule == "uniform" else depth.survival(3)
    swap, sd = _twin(ls.Swapout(1.0, theta2, per_unit=False), depth)
    swap.eval()
    sd.eval()
    swap_members = ls.Sampler(swap, swap.scheme).sample(20, seed=5)
    sd_members = ls.Sampler(sd, sd.scheme).sample(20, seed=5)
    x = torch.randn(7, 5)
    assert swap_members.codes() == sd_members.codes()
    assert torch.equal(
        ls.evaluate(swap, swap_members, x), ls.evaluate(sd, sd_members, x)
    )
    assert torch.equal(swap(x), sd(x))


def test_stochastic_depth_training_draws():
    swap, sd = _twin(
        ls.Swapout(1.0, 0.5, per_unit=False),
        ls.StochasticDepth(0.5, "uniform", granularity="sample"),
    )
    x = torch.randn(7, 5)
    for step in range(5):
        torch.manual_seed(step)
        out_swap = swap(x)
        torch.manual_seed(step)
        assert torch.equal(out_swap, sd(x))


def test_stochastic_depth_ensemble():
    graph = Graph.chain(5)
    swap = ls.Sampler(graph, ls.Swapout(1.0, 0.3, per_unit=False))
    sd = ls.Sampler(graph, ls.StochasticDepth(0.3, rule="uniform"))
    assert swap.count() == 2**5
    assert swap.enumerate() == sd.enumerate()
    np.testing.assert_array_equal(swap.path_lengths(), sd.path_lengths())


def _one_block(scheme, width=16):
    torch.manual_seed(1)
    return Chain(width, 1, scheme)


def test_skipforward_member_units():
    model = _one_block(ls.Swapout("complement", 0.5))
    model.eval()
    x = torch.randn(5, 16)
    forward = model.branches[0](x)
    member = ls.Sampler(model, model.scheme).sample(1, seed=2)[0]
    y = model(x, member=member)
    skipped = (y == x).all(0)
    forwarded = (y == forward).all(0)
    assert bool((skipped ^ forwarded).all())
    assert bool(skipped.any())
    assert bool(forwarded.any())


def test_skipforward_training_units():
    model = _one_block(ls.Swapout("complement", 0.3))
    x = torch.randn(64, 16)
    forward = model.branches[0](x)
    y = model(x)
    assert bool(((y == x) ^ (y == forward)).all())


def test_swapout_training_unit_values():
    model = _one_block(ls.Swapout(0.5, 0.5))
    x = torch.randn(64, 16)
    forward = model.branches[0](x)
    y = model(x)
    choices = torch.stack([torch.zeros_like(x), x, forward, x + forward])
    matches = (y.unsqueeze(0) == choices).sum(0)
    assert bool((matches == 1).all())
    assert (
        len({int(k) for k in (y.unsqueeze(0) == choices).float().argmax(0).flatten()})
        == 4
    )


def test_swapout_per_sample_masks():
    model = _one_block(ls.Swapout("complement", 0.5))
    x = torch.randn(64, 16)
    y = model(x)
    assert not bool(((y == x).all(0) | (y != x).all(0)).all())


def test_swapout_batch_granularity():
    model = _one_block(ls.Swapout("complement", 0.5, granularity="batch"))
    x = torch.randn(64, 16)
    y = model(x)
    assert bool(((y == x).all(0) | (y != x).all(0)).all())


def test_swapout_eval_expectation():
    model = _one_block(ls.Swapout(0.7, 0.2))
    model.eval()
    x = torch.randn(5, 16)
    expected = 0.7 * x + 0.2 * model.branches[0](x)
    torch.testing.assert_close(model(x), expected)


def test_skipforward_eval_expectation():
    model = _one_block(ls.Swapout("complement", 0.2))
    model.eval()
    x = torch.randn(5, 16)
    expected = 0.8 * x + 0.2 * model.branches[0](x)
    torch.testing.assert_close(model(x), expected)


# ------------------------------------------------------------- member masks


def test_member_masks_batch_independent():
    model = ls.models.ResidualMLP(
        in_features=5, width=6, blocks=3, scheme=ls.Swapout(0.6, 0.6)
    )
    model.eval()
    members = ls.Sampler(model, model.scheme).sample(3, seed=9)
    x = torch.randn(8, 5)
    for member in members:
        torch.testing.assert_close(
            model(x, member=member)[:3], model(x[:3], member=member)
        )


def test_evaluate_matches_forward():
    model = ls.models.ResidualMLP(
        in_features=5, width=6, blocks=3, scheme=ls.Swapout(0.6, 0.4)
    )
    model.eval()
    members = ls.Sampler(model, model.scheme).sample(5, seed=1)
    x = torch.randn(9, 5)
    out = ls.evaluate(model, members, x, batch_size=4, max_rows=8)
    for i, member in enumerate(members):
        torch.testing.assert_close(out[i], model(x, member=member))


def test_members_differ():
    model = ls.models.ResidualMLP(
        in_features=5, width=6, blocks=3, scheme=ls.Swapout(0.5, 0.5)
    )
    model.eval()
    members = ls.Sampler(model, model.scheme).sample(2, seed=1)
    x = torch.randn(4, 5)
    assert not torch.equal(model(x, member=members[0]), model(x, member=members[1]))


def test_member_without_seed():
    model = ls.models.ResidualMLP(
        in_features=5, width=6, blocks=2, scheme=ls.Swapout(0.5, 0.5)
    )
    model.eval()
    with pytest.raises(ls.MemberError, match="seed"):
        model(torch.randn(2, 5), member=ls.Members.from_codes([3], 2)[0])


def test_member_masks_deterministic():
    graph = Graph.chain(2)
    scheme = ls.Swapout(0.5, 0.5)
    first = member_masks(scheme, graph, graph.joins[1], 123, 50)
    second = member_masks(scheme, graph, graph.joins[1], 123, 50)
    other = member_masks(scheme, graph, graph.joins[0], 123, 50)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_member_mask_rates():
    graph = Graph.chain(1)
    masks = member_masks(ls.Swapout(0.3, 0.8), graph, graph.joins[0], 7, 200000)
    skip, branch = masks.double().mean(1).tolist()
    assert abs(skip - 0.3) < 0.005
    assert abs(branch - 0.8) < 0.005


# ------------------------------------------------------------------ counts


@pytest.mark.parametrize("blocks, units", [(1, 3), (2, 2), (3, 2), (3, 1)])
def test_count_independent(blocks, units):
    scheme = ls.Swapout(0.5, 0.3, units=units, dense=True)
    sampler = ls.Sampler(Graph.chain(blocks), scheme)
    expected = swapout_unit_members(units, [_pairs(0.5, 0.3)] * blocks)
    assert sampler.count() == len(expected)
    assert sampler.count(assignments=True) == 4 ** (units * blocks)


def test_count_by_hand():
    # Two blocks of three units: below the first block no gates remain, so
    # N_1(k) = 4**k; N_2(3) = (4**3 - 2**3) N_1(3) + sum_j C(3, j) N_1(j).
    sampler = ls.Sampler(Graph.chain(2), ls.Swapout(0.5, 0.5, units=3, dense=True))
    assert sampler.count() == 56 * 64 + (1 + 3 * 4 + 3 * 16 + 64)


@pytest.mark.parametrize("blocks, units", [(2, 3), (3, 2)])
def test_count_skipforward(blocks, units):
    scheme = ls.Swapout("complement", 0.4, units=units, dense=True)
    pairs = [((False, True), 0.4), ((True, False), 0.6)]
    expected = swapout_unit_members(units, [pairs] * blocks)
    assert ls.Sampler(Graph.chain(blocks), scheme).count() == len(expected)


def test_count_linear_schedule():
    # Linear(1, 0.5) over three blocks: rates 1, 0.75, 0.5; the first block's
    # masks are constant 1.
    scheme = ls.Swapout(0.5, 0.5, "linear", units=2, dense=True)
    patterns = [[((True, True), 1.0)], _pairs(0.75, 0.75), _pairs(0.5, 0.5)]
    expected = swapout_unit_members(2, patterns)
    sampler = ls.Sampler(Graph.chain(3), scheme)
    assert sampler.count() == len(expected)
    assert sampler.count(assignments=True) == 16**2


def _per_layer_members(blocks: int, units: int, theta1: float, theta2: float):
    """Brute force with one Θ2 per block shared by its units."""
    members: dict[tuple, float] = {}
    skip_rows = list(itertools.product((False, True), repeat=units))
    for branch_bits in itertools.product((False, True), repeat=blocks):
        for skips in itertools.product(skip_rows, repeat=blocks):
            pairs = [
                [(skips[b][u], branch_bits[b]) for u in range(units)]
                for b in range(blocks)
            ]
            prob = math.prod(
                (theta2 if branch_bits[b] else 1 - theta2)
                * math.prod(theta1 if s else 1 - theta1 for s in skips[b])
                for b in range(blocks)
            )
            key = swapout_key(pairs)
            members[key] = members.get(key, 0.0) + prob
    return members


def test_count_per_layer_branch():
    scheme = ls.Swapout(0.5, 0.5, per_unit=False, units=2, dense=True)
    expected = _per_layer_members(3, 2, 0.5, 0.5)
    assert ls.Sampler(Graph.chain(3), scheme).count() == len(expected)


def test_count_needs_dense():
    sampler = ls.Sampler(Graph.chain(2), ls.Swapout(0.5, 0.5, units=4))
    with pytest.raises(ls.LayershareError, match="dense=True"):
        sampler.count()


def test_count_assignments_without_dense():
    sampler = ls.Sampler(Graph.chain(2), ls.Swapout(0.5, 0.5, units=4))
    assert sampler.count(assignments=True) == 4**8


def test_count_needs_units():
    sampler = ls.Sampler(Graph.chain(2), ls.Swapout(0.5, 0.5, dense=True))
    with pytest.raises(ls.LayershareError, match="units="):
        sampler.count()


def test_enumerate_unit_gates():
    sampler = ls.Sampler(Graph.chain(2), ls.Swapout(0.5, 0.5, units=2, dense=True))
    with pytest.raises(ls.LayershareError, match="sample"):
        sampler.enumerate()


def test_path_lengths_unit_gates():
    sampler = ls.Sampler(Graph.chain(2), ls.Swapout(0.5, 0.5, units=2, dense=True))
    with pytest.raises(ls.LayershareError, match="units"):
        sampler.path_lengths()


# ------------------------------------------------------------ probabilities


def _member_key(scheme, graph, member, units):
    """Brute-force member key of a sampled member, from its masks."""
    pairs = []
    for join in graph.joins:
        masks = member_masks(scheme, graph, join, member.seed, units)
        gates = graph.join_gates(join)
        branch_edge = bool((member.code >> gates[0]) & 1)
        pairs.append(
            [
                (bool(masks[0, u]), bool(masks[1, u]) and branch_edge)
                for u in range(units)
            ]
        )
    return swapout_key(pairs)


@pytest.mark.parametrize(
    "scheme, patterns",
    [
        (ls.Swapout(0.6, 0.3, units=2, dense=True), [_pairs(0.6, 0.3)] * 3),
        (
            ls.Swapout("complement", 0.3, units=2, dense=True),
            [[((False, True), 0.3), ((True, False), 0.7)]] * 3,
        ),
    ],
    ids=["independent", "skipforward"],
)
def test_probability_brute_force(scheme, patterns):
    graph = Graph.chain(3)
    sampler = ls.Sampler(graph, scheme)
    table = swapout_unit_members(2, patterns)
    for member in sampler.sample(30, seed=3):
        expected = table[_member_key(scheme, graph, member, 2)]
        assert sampler.probability(member) == pytest.approx(expected, rel=1e-12)


def test_probability_per_layer_brute_force():
    graph = Graph.chain(3)
    scheme = ls.Swapout(0.6, 0.3, per_unit=False, units=2, dense=True)
    sampler = ls.Sampler(graph, scheme)
    table = _per_layer_members(3, 2, 0.6, 0.3)
    for member in sampler.sample(30, seed=3):
        expected = table[_member_key(scheme, graph, member, 2)]
        assert sampler.probability(member) == pytest.approx(expected, rel=1e-12)


def test_sample_frequencies():
    graph = Graph.chain(3)
    scheme = ls.Swapout(0.5, 0.5, units=1, dense=True)
    table = swapout_unit_members(1, [_pairs(0.5, 0.5)] * 3)
    # 40 members, each of probability at least 1/64.
    draws = 5000
    members = ls.Sampler(graph, scheme).sample(draws, seed=13)
    observed = Counter(_member_key(scheme, graph, m, 1) for m in members)
    keys = sorted(table)
    result = stats.chisquare(
        [observed.get(k, 0) for k in keys], [table[k] * draws for k in keys]
    )
    assert sum(observed.values()) == draws
    assert set(observed) <= set(table)
    assert result.pvalue > 1e-3


def test_sample_unique_unit_members():
    graph = Graph.chain(2)
    scheme = ls.Swapout(0.5, 0.5, units=1, dense=True)
    sampler = ls.Sampler(graph, scheme)
    members = sampler.sample(sampler.count(), seed=0, unique=True)
    keys = {_member_key(scheme, graph, m, 1) for m in members}
    assert len(keys) == sampler.count()


# ----------------------------------------------------------------- options


def test_linear_schedule_rates():
    theta1, theta2 = ls.Swapout(0.6, 0.2, "linear").rates(5)
    np.testing.assert_allclose(theta1, [1.0, 0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(theta2, [1.0, 0.8, 0.6, 0.4, 0.2])


def test_linear_schedule_one_block():
    assert ls.Swapout(0.6, 0.2, "linear").rates(1) == ([0.6], [0.2])


def test_rejects_bad_theta():
    with pytest.raises(ValueError, match="between 0 and 1"):
        ls.Swapout(1.5, 0.5)


def test_rejects_sequence_with_linear():
    with pytest.raises(ValueError, match="constant"):
        ls.Swapout(0.5, [0.5, 0.5], "linear")


def test_rejects_complement_per_layer():
    with pytest.raises(ValueError, match="per_unit=True"):
        ls.Swapout("complement", 0.5, per_unit=False)


def test_rejects_wrong_rate_count():
    with pytest.raises(ValueError, match="3 swapout joins"):
        ls.Sampler(Graph.chain(3), ls.Swapout(0.5, [0.5, 0.5]))


def test_rejects_mean_join():
    from bruteforce import fractal_graph

    with pytest.raises(ValueError, match="residual joins"):
        ls.Sampler(fractal_graph(2, 1), ls.Swapout(0.5, 0.5))


def test_units_checked_at_run_time():
    model = Chain(4, 2, ls.Swapout(0.5, 0.5, units=5, dense=True))
    model.eval()
    member = ls.Sampler(model, model.scheme).sample(1, seed=0)[0]
    with pytest.raises(ls.MemberError, match="declares 5 units"):
        model(torch.randn(3, 4), member=member)


def test_units_matching_run():
    model = Chain(4, 2, ls.Swapout(0.5, 0.5, units=4, dense=True))
    model.eval()
    member = ls.Sampler(model, model.scheme).sample(1, seed=0)[0]
    assert model(torch.randn(3, 4), member=member).shape == (3, 4)


def test_gradients_finite_at_rate_zero():
    model = _one_block(ls.Swapout(0.0, 1.0))
    x = torch.randn(4, 16, requires_grad=True)
    model(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    torch.testing.assert_close(model(x), model.branches[0](x))


def test_sample_unique_rate_one_branch():
    # Θ2 = 1 in every block: the branch-off patterns have probability 0, so
    # only the 4 members with the branch on can be drawn (Θ1 of one unit
    # below a used branch: 2 per block).
    scheme = ls.Swapout(0.5, 1.0, per_unit=False, units=1, dense=True)
    sampler = ls.Sampler(Graph.chain(2), scheme)
    with pytest.raises(ValueError, match="4 members of nonzero probability"):
        sampler.sample(5, seed=0, unique=True)
