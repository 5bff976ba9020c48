"""ls.trace: residual additions become gated joins, drop-path becomes a gate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layershare as ls


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False):
    """Drop whole samples of a residual branch, as timm's drop_path does."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty(x.shape[0], 1).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(width)
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        return self.linear(torch.relu(self.norm(x)))


class UserNet(nn.Module):
    """A user's residual net: four blocks, each addition written differently."""

    def __init__(self, width: int = 6, p: float = 0.3) -> None:
        super().__init__()
        self.stem = nn.Linear(4, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(4))
        self.head = nn.Linear(width, 3)
        self.p = p

    def forward(self, x):
        h = self.stem(x)
        h = h + self.blocks[0](h)
        h = torch.add(h, drop_path(self.blocks[1](h), self.p, self.training))
        h = self.blocks[2](h).add(h)
        h += drop_path(self.blocks[3](h), self.p, self.training)
        return self.head(h)


def by_hand(net: UserNet, x: torch.Tensor, kept: list[bool]) -> torch.Tensor:
    h = net.stem(x)
    for block, keep in zip(net.blocks, kept, strict=True):
        if keep:
            h = h + block(h)
    return net.head(h)


@pytest.fixture
def net() -> UserNet:
    torch.manual_seed(0)
    return UserNet()


def test_four_blocks_give_four_gates(net):
    model = ls.trace(net)

    assert model.graph.num_gates == 4
    assert len(model.graph.joins) == 4
    assert ls.Sampler(model, ls.StochasticDepth(0.5)).count() == 16


def test_joins_take_skip_then_branch(net):
    graph = ls.trace(net).graph
    for join in graph.joins:
        roles = [graph.edges[i].role for i in graph.in_edges(join)]
        assert roles == ["skip", "branch"]


def test_eval_matches_original(net):
    model = ls.trace(net).eval()
    net.eval()
    x = torch.randn(5, 4)

    torch.testing.assert_close(model(x), net(x))


@pytest.mark.parametrize("code", [0b0000, 0b0101, 0b1110, 0b1111])
def test_member_matches_hand_computation(net, code):
    model = ls.trace(net).eval()
    net.eval()
    x = torch.randn(5, 4)
    member = ls.Members.from_codes([code], 4)[0]
    kept = [bool(code >> k & 1) for k in range(4)]

    torch.testing.assert_close(model(x, member=member), by_hand(net, x, kept))


def test_drop_path_becomes_gate(net):
    net.train()
    model = ls.trace(net)
    targets = [str(n.target) for n in model.fx_graph.nodes]

    # Traced in training mode, yet no drop-path call or random op remains.
    assert not any("drop_path" in t for t in targets)
    assert not any("bernoulli" in t for t in targets)
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_scheme_drops_traced_branches(net):
    model = ls.trace(net, scheme=ls.StochasticDepth(0.5, rule="uniform"))
    model.eval()
    net.eval()
    x = torch.randn(5, 4)
    h = net.stem(x)
    for block in net.blocks:
        h = h + 0.5 * block(h)

    torch.testing.assert_close(model(x), net.head(h))


def test_drop_path_module_removed():
    class DropPath(nn.Module):
        def forward(self, x):
            return x * 0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.drop = DropPath()

        def forward(self, x):
            return x + self.drop(self.fc(x))

    net = Net()
    model = ls.trace(net)
    x = torch.randn(2, 3)

    assert model.graph.num_gates == 1
    torch.testing.assert_close(model(x), x + net.fc(x))


def test_projection_shortcut_not_gated():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.branch = nn.Linear(3, 5)
            self.shortcut = nn.Linear(3, 5)
            self.fc = nn.Linear(5, 5)

        def forward(self, x):
            h = self.branch(x) + self.shortcut(x)
            return h + self.fc(h)

    model = ls.trace(Net())

    assert model.graph.num_gates == 1


def test_shares_parameters_and_state(net):
    model = ls.trace(net)

    assert model.stem.weight is net.stem.weight
    assert set(model.state_dict()) == set(net.state_dict())


def test_evaluate_matches_member_calls(net):
    model = ls.trace(net, scheme=ls.StochasticDepth(0.5)).eval()
    x = torch.randn(5, 4)
    members = ls.Sampler(model, model.scheme).enumerate()
    out = ls.evaluate(model, members, x)
    for i in (0, 7, 15):
        torch.testing.assert_close(out[i], model(x, member=members[i]))


def test_leaf_block_hides_its_addition():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return x + self.fc(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x)

    assert ls.trace(Net()).graph.num_gates == 1
    assert ls.trace(Net(), leaves=(Inner,)).graph.num_gates == 0


def test_untraceable_names_operation():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            if x.sum() > 0:
                x = x + self.fc(x)
            return x

    with pytest.raises(ls.UntraceableModelError) as caught:
        ls.trace(Branchy())
    message = str(caught.value)

    assert "`if x.sum() > 0:`" in message
    assert "control flow" in message
    assert caught.value.model == "Branchy"


def test_rejects_non_module():
    with pytest.raises(TypeError, match="needs an nn.Module"):
        ls.trace(lambda x: x)
