"""Schemes: drop-path and stochastic depth rules, values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bruteforce import active_edges, fractal_graph
from torch import nn

import layershare as ls
from layershare.graph import Graph
from layershare.nn import GatedModel, Join


class TwoColumns(GatedModel):
    """One FractalNet join: a deep column of two layers and a shallow one."""

    def __init__(self, scheme=None) -> None:
        super().__init__(scheme)
        torch.manual_seed(0)
        self.deep1 = nn.Linear(4, 4)
        self.deep2 = nn.Linear(4, 4)
        self.shallow = nn.Linear(4, 4)
        self.join = Join(2, "mean", roles=("column", "column"), columns=(1, 0))

    def forward(self, x):
        return self.join(self.deep2(self.deep1(x)), self.shallow(x))

    def columns(self, x):
        return self.deep2(self.deep1(x)), self.shallow(x)


class Residual(GatedModel):
    """One residual block ``x + F(x)`` with a linear branch."""

    def __init__(self, scheme=None) -> None:
        super().__init__(scheme)
        torch.manual_seed(0)
        self.branch = nn.Linear(4, 4)
        self.join = Join(2, "sum")

    def forward(self, x):
        return self.join(x, self.branch(x))


# --------------------------------------------------------- stochastic depth


def test_survival_linear_by_hand():
    assert ls.StochasticDepth(0.5).survival(4) == [0.875, 0.75, 0.625, 0.5]


def test_survival_uniform():
    assert ls.StochasticDepth(0.3, rule="uniform").survival(3) == [0.3, 0.3, 0.3]


def test_test_scale_inference():
    model = Residual(ls.StochasticDepth(0.25, rule="uniform", scale="test"))
    model.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), x + 0.25 * model.branch(x))


def test_train_scale_member():
    model = Residual(ls.StochasticDepth(0.25, rule="uniform", scale="train"))
    x = torch.randn(3, 4)
    kept = ls.Members.from_codes([1], 1)[0]
    torch.testing.assert_close(model(x, member=kept), x + 4.0 * model.branch(x))


def test_train_scale_inference():
    model = Residual(ls.StochasticDepth(0.25, rule="uniform", scale="train"))
    model.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), x + model.branch(x))


@pytest.mark.parametrize("scale", ["test", "train"])
def test_rate_zero_values_and_gradients(scale):
    model = Residual(ls.StochasticDepth(0.0, rule="uniform", scale=scale))
    x = torch.randn(5, 4, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert torch.equal(y, x)
    assert bool(torch.isfinite(x.grad).all())
    # A branch that never survives is never computed, so it gets no gradient.
    assert all(p.grad is None for p in model.branch.parameters())


@pytest.mark.parametrize("scale", ["test", "train"])
def test_rate_zero_inference(scale):
    model = Residual(ls.StochasticDepth(0.0, rule="uniform", scale=scale))
    model.eval()
    x = torch.randn(5, 4)
    assert torch.equal(model(x), x)


@pytest.mark.parametrize("scale", ["test", "train"])
def test_rate_one_values_and_gradients(scale):
    model = Residual(ls.StochasticDepth(1.0, rule="uniform", scale=scale))
    x = torch.randn(5, 4, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert torch.equal(y, x + model.branch(x))
    assert bool(torch.isfinite(x.grad).all())


def test_rate_zero_member_finite():
    # A member that keeps a block of survival 0 has probability 0; it runs the
    # branch with weight 1 instead of 1 / 0.
    model = Residual(ls.StochasticDepth(0.0, rule="uniform", scale="train"))
    x = torch.randn(5, 4)
    y = model(x, member=ls.Members.from_codes([1], 1)[0])
    assert bool(torch.isfinite(y).all())


def test_stochastic_depth_rejects_columns():
    with pytest.raises(ValueError, match="DropPath"):
        ls.Sampler(fractal_graph(2, 1), ls.StochasticDepth())


def test_stochastic_depth_rejects_bad_rate():
    with pytest.raises(ValueError, match="got 1.5"):
        ls.StochasticDepth(1.5)


def test_stochastic_depth_rejects_bad_rule():
    with pytest.raises(ValueError, match="rule"):
        ls.StochasticDepth(0.5, rule="cosine")


def test_per_sample_draws():
    model = Residual(ls.StochasticDepth(0.5, rule="uniform", granularity="sample"))
    x = torch.randn(256, 4)
    forward = model.branch(x)
    y = model(x)
    kept = (y == x + forward).all(1)
    dropped = (y == x).all(1)
    assert bool((kept ^ dropped).all())
    assert 0.35 < kept.double().mean().item() < 0.65


# ---------------------------------------------------------------- drop-path


def test_local_one_keeps_one_input():
    model = TwoColumns(ls.DropPath(local=1.0, global_ratio=0.0, granularity="sample"))
    x = torch.randn(64, 4)
    deep, shallow = model.columns(x)
    y = model(x)
    is_deep = (y == deep).all(1)
    is_shallow = (y == shallow).all(1)
    assert bool((is_deep ^ is_shallow).all())
    assert bool(is_deep.any())
    assert bool(is_shallow.any())


def test_local_one_sampled_members():
    graph = fractal_graph(4, 2)
    members = ls.Sampler(graph, ls.DropPath(local=1.0, global_ratio=0.0)).sample(
        200, seed=0
    )
    for member in members:
        kept = [(member.code >> g) & 1 == 1 for g in range(graph.num_gates)]
        used = active_edges(graph, kept)
        for join in graph.joins:
            inputs = [i for i in graph.in_edges(join) if i in used]
            assert len(inputs) in (0, 1)


def test_local_zero_keeps_all():
    model = TwoColumns(ls.DropPath(local=0.0, global_ratio=0.0))
    x = torch.randn(8, 4)
    deep, shallow = model.columns(x)
    torch.testing.assert_close(model(x), (deep + shallow) / 2)


@pytest.mark.parametrize("local", [0.0, 1.0])
@pytest.mark.parametrize("all_dropped", ["resample", "keep_one"])
def test_extreme_rates_gradients(local, all_dropped):
    scheme = ls.DropPath(local=local, global_ratio=0.0, all_dropped=all_dropped)
    model = TwoColumns(scheme)
    x = torch.randn(8, 4, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert bool(torch.isfinite(y).all())
    assert bool(torch.isfinite(x.grad).all())
    # A column dropped in this draw is not computed and gets no gradient.
    for p in model.parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all())


def test_dropped_column_gets_no_gradient():
    model = TwoColumns()
    shallow_only = ls.Members.from_codes([0b10], 2)[0]
    model(torch.randn(8, 4), member=shallow_only).sum().backward()
    assert model.deep1.weight.grad is None
    assert bool((model.shallow.weight.grad != 0).any())


def test_inference_mean():
    model = TwoColumns(ls.DropPath())
    model.eval()
    x = torch.randn(8, 4)
    deep, shallow = model.columns(x)
    torch.testing.assert_close(model(x), (deep + shallow) / 2)


def test_global_one_column_same_everywhere():
    graph = fractal_graph(4, 3)
    members = ls.Sampler(graph, ls.DropPath(global_ratio=1.0)).sample(100, seed=1)
    seen = set()
    for member in members:
        kept = [(member.code >> g) & 1 == 1 for g in range(graph.num_gates)]
        used = active_edges(graph, kept)
        labels = {
            graph.edges[i].column for i in used if graph.edges[i].gate is not None
        }
        convs = sum(1 for i in used if graph.edges[i].dst.startswith("conv"))
        assert len(labels) == 1
        column = labels.pop()
        assert convs == 3 * 2**column
        seen.add(column)
    assert seen == {0, 1, 2, 3}


def test_global_model_output():
    model = TwoColumns(ls.DropPath(global_ratio=1.0, granularity="sample"))
    x = torch.randn(64, 4)
    deep, shallow = model.columns(x)
    y = model(x)
    assert bool(((y == deep).all(1) ^ (y == shallow).all(1)).all())


def test_keep_one_choices_by_hand():
    graph = fractal_graph(3, 1)
    outer = graph.joins[1]
    choices = dict(
        ls.DropPath(local=0.5, all_dropped="keep_one").join_choices(graph, outer)
    )
    # Independent drops give 1/8 per pattern; all dropped (1/8) goes to one
    # of the three single-input patterns (1/24 each).
    assert choices[(True, False, False)] == pytest.approx(1 / 8 + 1 / 24)
    assert choices[(True, True, False)] == pytest.approx(1 / 8)
    assert (False, False, False) not in choices


def test_resample_choices_by_hand():
    graph = fractal_graph(3, 1)
    outer = graph.joins[1]
    choices = dict(ls.DropPath(local=0.5).join_choices(graph, outer))
    # Conditioned on a survivor: each of the 7 patterns has 1/7.
    assert all(p == pytest.approx(1 / 7) for p in choices.values())
    assert len(choices) == 7


def test_residual_join_drop_path():
    # With an ungated skip, the branch is dropped independently.
    sampler = ls.Sampler(Graph.chain(3), ls.DropPath(local=0.25, global_ratio=0.0))
    expected = np.array([0.25**3, 3 * 0.75 * 0.25**2, 3 * 0.75**2 * 0.25, 0.75**3])
    np.testing.assert_allclose(sampler.path_lengths(), expected)


def test_global_needs_columns():
    with pytest.raises(ValueError, match="column"):
        ls.Sampler(Graph.chain(2), ls.DropPath(global_ratio=0.5))


def test_drop_path_rejects_bad_rule():
    with pytest.raises(ValueError, match="all_dropped"):
        ls.DropPath(all_dropped="drop")


def test_rejects_bad_granularity():
    with pytest.raises(ValueError, match="granularity"):
        ls.DropPath(granularity="epoch")


def test_repr_shows_rates():
    assert "local=0.2" in repr(ls.DropPath(local=0.2))


def test_eval_deterministic():
    model = TwoColumns(ls.DropPath(local=0.5))
    model.eval()
    x = torch.randn(8, 4)
    assert torch.equal(model(x), model(x))
