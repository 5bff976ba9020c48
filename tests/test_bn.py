"""recalibrate_bn: per-member batch-norm statistics, weights and modes kept."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import layershare as ls
from layershare.models import ResidualMLP


@pytest.fixture
def model() -> ResidualMLP:
    torch.manual_seed(0)
    net = ResidualMLP(in_features=5, width=6, blocks=3, num_classes=4)
    net.scheme = ls.StochasticDepth(p_last=0.5)
    return net


@pytest.fixture
def data() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(40, 5)


def member(code: int) -> ls.Member:
    return ls.Members.from_codes([code], 3)[0]


def branch_in_train_mode(branch: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Run a branch with each batch norm using the batch's own statistics."""
    for layer in branch.body:
        if isinstance(layer, torch.nn.BatchNorm1d):
            h = F.batch_norm(h, None, None, layer.weight, layer.bias, training=True)
        else:
            h = layer(h)
    return h


def test_weights_bit_identical(model, data):
    before = {name: p.clone() for name, p in model.named_parameters()}
    ls.recalibrate_bn(model, member(0b101), data, batch_size=16)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


def test_statistics_by_hand(model, data):
    ls.recalibrate_bn(model, member(0b101), data, batch_size=16)

    # Branch 2's first batch norm receives stem(x) + F_0(stem(x)) (branch 1 is
    # dropped). The cumulative average weighs the batches of 16, 16 and 8
    # equally.
    with torch.no_grad():
        inputs = []
        for x in data.split(16):
            h = model.stem(x)
            inputs.append(h + branch_in_train_mode(model.branches[0], h))
    means = torch.stack([h.mean(0) for h in inputs]).mean(0)
    variances = torch.stack([h.var(0) for h in inputs]).mean(0)
    norm = model.branches[2].body[0]

    torch.testing.assert_close(norm.running_mean, means)
    torch.testing.assert_close(norm.running_var, variances)


def test_batches_limits_the_data(model, data):
    ls.recalibrate_bn(model, member(0b111), data, batches=1, batch_size=16)
    with torch.no_grad():
        expected = model.eval().stem(data[:16]).mean(0)

    torch.testing.assert_close(model.branches[0].body[0].running_mean, expected)
    assert model.branches[0].body[0].num_batches_tracked.item() == 1


def test_member_a_b_a_identical(model, data):
    model.eval()
    x = data[:10]
    a, b = member(0b011), member(0b110)
    ls.recalibrate_bn(model, a, data, batch_size=16)
    first = model(x, member=a)
    ls.recalibrate_bn(model, b, data, batch_size=16)
    other = model(x, member=b)
    ls.recalibrate_bn(model, a, data, batch_size=16)

    assert torch.equal(model(x, member=a), first)
    assert not torch.equal(other, first)


def test_modes_and_momentum_restored(model, data):
    model.train()
    model.head.eval()
    model.branches[1].body[0].momentum = 0.3
    ls.recalibrate_bn(model, member(0b111), data)

    assert model.training
    assert not model.head.training
    assert model.branches[0].body[0].training
    assert model.branches[1].body[0].momentum == 0.3
    assert model.branches[0].body[0].momentum == 0.1


def test_accepts_datasets_and_loaders(model, data):
    labels = torch.zeros(len(data), dtype=torch.long)
    dataset = TensorDataset(data, labels)
    ls.recalibrate_bn(model, member(0b111), data, batch_size=8)
    expected = model.branches[2].body[0].running_mean.clone()
    ls.recalibrate_bn(model, member(0b111), dataset, batch_size=8)
    from_dataset = model.branches[2].body[0].running_mean.clone()
    ls.recalibrate_bn(model, member(0b111), DataLoader(dataset, batch_size=8))

    assert torch.equal(from_dataset, expected)
    assert torch.equal(model.branches[2].body[0].running_mean, expected)


def test_none_uses_inference_rule(model, data):
    ls.recalibrate_bn(model, None, data)
    survival = ls.StochasticDepth(p_last=0.5).survival(3)
    with torch.no_grad():
        h = model.stem(data)
        h = h + survival[0] * branch_in_train_mode(model.branches[0], h)

    torch.testing.assert_close(model.branches[1].body[0].running_mean, h.mean(0))


def test_bad_batches_rejected(model, data):
    with pytest.raises(ValueError, match="batches must be a positive int"):
        ls.recalibrate_bn(model, None, data, batches=0)


def test_empty_data_rejected(model):
    with pytest.raises(ValueError, match="no samples"):
        ls.recalibrate_bn(model, None, torch.zeros(0, 5))
