"""ResNet and ResidualMLP: one gate per branch, schemes, and their specs."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.data import digits
from layershare.models import ResidualMLP, ResNet
from layershare.specs import load_spec
from layershare.train import accuracy_on, fit

# The specs train longer, and their accuracy floors must hold already after
# these epochs.
TEST_EPOCHS = {
    "resnet-stochastic-depth-digits": 8,
    "residualmlp-stochastic-depth-digits": 4,
}


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread, then restore the thread count.

    The spec tests train small models, whose many small kernels run faster on
    one thread: 40 s against 200 s for all of them with two threads on a
    loaded 2-core machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("blocks", [1, 3, 5])
def test_one_gate_per_block(blocks):
    model = ResNet(blocks=blocks, width=4)

    assert model.graph.num_gates == blocks
    assert ls.Sampler(model, ls.StochasticDepth(0.5)).count() == 2**blocks


def test_gates_sit_on_branches():
    graph = ResidualMLP(in_features=4, width=4, blocks=3).graph
    for gate in range(graph.num_gates):
        edge = graph.gate_edge(gate)
        assert edge.role == "branch"
        assert graph.node(edge.src).target == f"branches.{gate}"


def test_swapout_trains_residual_mlp():
    torch.manual_seed(0)
    model = ResidualMLP(in_features=4, width=6, blocks=2)
    model.scheme = ls.Swapout(0.9, 0.7)
    x = torch.randn(5, 4)
    first, second = model(x), model(x)

    # Swapout draws fresh per-unit masks at each training call.
    assert not torch.equal(first, second)
    model.eval()
    assert torch.equal(model(x), model(x))


def build(params: dict, split) -> torch.nn.Module:
    """Build the spec's model for the split."""
    if params["model"] == "ResNet":
        return ResNet(blocks=params["blocks"], width=params["width"])
    return ResidualMLP(
        in_features=split.input_shape[0],
        width=params["width"],
        blocks=params["blocks"],
    )


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(TEST_EPOCHS))
def test_spec_accuracy(name):
    params = load_spec(name).parameters
    kind = "images" if params["model"] == "ResNet" else "flat"
    split = digits(kind, test_fraction=params["test_fraction"], seed=params["seed"])
    torch.manual_seed(params["seed"])
    model = build(params, split)
    scheme = ls.StochasticDepth(
        p_last=params["p_last"], rule=params["rule"], scale=params["scale"]
    )
    fit(
        model,
        scheme,
        split.train,
        epochs=TEST_EPOCHS[name],
        batch_size=params["batch_size"],
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        seed=params["seed"],
        progress=False,
    )

    assert accuracy_on(model, split.test) >= params["expected_min_accuracy"]
