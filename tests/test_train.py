"""The training loop: seeding, checkpoints, options, epoch hook and graphs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import layershare as ls
from layershare.data import karate_club
from layershare.models import ResidualMLP, TiedGCN
from layershare.train import accuracy_on, fit, load_checkpoint


@pytest.fixture
def data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 5, generator=generator)
    return TensorDataset(x, (x[:, 0] > 0).long())


def small_model(seed: int = 0) -> ResidualMLP:
    torch.manual_seed(seed)
    return ResidualMLP(in_features=5, width=6, blocks=3, num_classes=2)


def train(model, data, **options):
    defaults = {"epochs": 2, "batch_size": 16, "seed": 3, "progress": False}
    return fit(model, ls.StochasticDepth(0.5), data, **(defaults | options))


def test_same_seed_same_weights(data):
    first, second = small_model(), small_model()
    train(first, data)
    train(second, data)
    for a, b in zip(
        first.state_dict().values(), second.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_other_seed_other_weights(data):
    first, second = small_model(), small_model()
    train(first, data, seed=3)
    train(second, data, seed=4)

    assert not torch.equal(first.stem.weight, second.stem.weight)


def test_report_notebook_call(data):
    # The keyword arguments the report notebook passes.
    model = small_model()
    history = ls.train.fit(
        model,
        ls.StochasticDepth(0.5),
        data,
        test=data,
        epochs=2,
        batch_size=16,
        lr=0.05,
        weight_decay=5e-4,
        seed=0,
        progress=False,
    )

    assert len(history.loss) == 2
    assert len(history.test_accuracy) == 2
    assert history.test_accuracy[-1] == accuracy_on(model, data)


def test_scheme_attached_and_eval_mode(data):
    model = small_model()
    scheme = ls.StochasticDepth(0.5)
    fit(model, scheme, data, epochs=1, batch_size=16, progress=False)

    assert model.scheme is scheme
    assert not model.training


def test_checkpoint_round_trip(data, tmp_path):
    model = small_model()
    path = tmp_path / "run" / "model.pt"
    train(model, data, checkpoint=path)
    state = torch.load(path, weights_only=True)
    fresh = load_checkpoint(small_model(seed=1), path)

    assert set(state) == set(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value)


def test_adam_changes_weights(data):
    model = small_model()
    before = model.stem.weight.clone()
    train(model, data, optimizer="adam", lr=0.01, max_grad_norm=1.0)

    assert not torch.equal(model.stem.weight, before)


def test_clipping_bounds_first_step(data):
    # One SGD step without momentum history moves the weights by lr times
    # the clipped gradient, whose total norm is at most max_grad_norm.
    model = small_model()
    before = [p.clone() for p in model.parameters()]
    fit(
        model,
        None,
        data,
        epochs=1,
        batch_size=48,
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        max_grad_norm=1e-3,
        progress=False,
    )
    step = torch.cat(
        [(p - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    )

    assert step.norm().item() <= 1e-3 + 1e-6


def test_set_epoch_called_each_epoch(data):
    model = small_model()
    epochs = []
    model.set_epoch = epochs.append
    train(model, data, epochs=3)

    assert epochs == [0, 1, 2]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("epochs", 0, "epochs must be a positive int"),
        ("batch_size", 0, "batch_size must be a positive int"),
        ("lr", 0.0, "lr must be positive"),
        ("optimizer", "rmsprop", "optimizer must be one of"),
        ("max_grad_norm", 0.0, "max_grad_norm must be positive"),
    ],
)
def test_bad_options_rejected(data, option, value, message):
    with pytest.raises(ValueError, match=message):
        train(small_model(), data, **{option: value})


def test_graph_trains_full_batch():
    graph = karate_club()
    torch.manual_seed(0)
    model = TiedGCN(layers=2)
    history = fit(
        model,
        ls.DropPath(0.2, 0.0),
        graph,
        epochs=5,
        lr=0.01,
        optimizer="adam",
        progress=False,
    )

    # One step per epoch; the loss covers the 8 training nodes.
    assert len(history.loss) == 5
    assert len(history.test_accuracy) == 5
    assert history.test_accuracy[-1] == accuracy_on(model, graph)


def test_graph_accuracy_counts_test_nodes():
    graph = karate_club()
    torch.manual_seed(0)
    model = TiedGCN(layers=2).eval()
    with torch.no_grad():
        predictions = model(graph.x, graph.edge_index).argmax(1)
    mask = graph.test_mask
    expected = (predictions[mask] == graph.y[mask]).sum().item() / 26

    assert int(mask.sum()) == 26
    assert accuracy_on(model, graph) == expected
