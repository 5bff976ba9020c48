import itertools

import pytest
import torch
from torch import nn

import layershare as ls
from layershare import metrics
from layershare.metrics import probes


def _model(scheme=None):
    torch.manual_seed(0)
    return ls.models.ResidualMLP(
        in_features=6, width=5, blocks=3, num_classes=3, scheme=scheme
    )


def _data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 6, generator=generator)
    y = torch.randint(0, 3, (12,), generator=generator)
    return x, y


class Tied(nn.Module):
    """A weight-tied residual net: h <- h + f(h), repeated ``steps`` times."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.f = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
        self.head = nn.Linear(4, 3)

    def forward(self, x, steps=3):
        h = x
        for _ in range(steps):
            h = h + self.f(h)
        return self.head(h)


def test_paths_sum_to_full_gradient():
    model = _model(ls.StochasticDepth(p_last=0.5))
    x, y = _data()
    first_input = {}

    def hook(_module, args, _output):
        first_input.setdefault("h", args[0])

    handle = model.branches[0].register_forward_hook(hook)
    model.eval()
    loss = nn.functional.cross_entropy(model(x), y)
    (full,) = torch.autograd.grad(loss, first_input["h"])
    handle.remove()
    total = sum(
        probes.path_gradient(model, x, y, path)
        for k in range(4)
        for path in itertools.combinations(range(3), k)
    )
    assert torch.allclose(total, full, atol=1e-6)


def test_gradient_by_length_rows():
    model = _model()
    x, y = _data()
    table = probes.gradient_by_path_length(model, x, y, samples_per_length=2)
    assert table["length"].tolist() == [0, 1, 1, 2, 2, 3]
    assert all(len(p) == k for k, p in zip(table["length"], table["path"], strict=True))
    assert (table["gradient_norm"] > 0).all()


def test_gradient_by_length_keeps_mode():
    model = _model()
    model.train()
    x, y = _data()
    probes.gradient_by_path_length(model, x, y, lengths=[1])
    assert model.training


def test_residual_blocks_reject_plain():
    with pytest.raises(TypeError, match="no gated graph"):
        probes.residual_blocks(nn.Linear(3, 3))


def test_apply_blocks_shared_input():
    model = _model()
    x, _ = _data()
    outputs = probes.apply_blocks(model, x, model.branches, at=0)
    model.eval()
    with torch.no_grad():
        shared = model.stem(x)
        expected = model.branches[2](shared)
    assert outputs.shape == (3, 12, 5)
    assert torch.allclose(outputs[2], expected)


def test_record_calls_residual_steps():
    model = _model(ls.StochasticDepth(p_last=0.5))
    x, _ = _data()
    states, updates = probes.record_calls(model, x, list(model.branches))
    weights = model.scheme.inference_weights(model.graph)
    assert states.shape == (3, 12, 5)
    for t in range(2):
        expected = states[t] + weights[t] * updates[t]
        assert torch.allclose(states[t + 1], expected, atol=1e-6)


def test_record_calls_tied_steps():
    model = Tied()
    x = torch.randn(5, 4)
    states, updates = probes.record_calls(model, x, model.f, steps=4)
    assert states.shape == (4, 5, 4)
    assert torch.allclose(states[3], states[2] + updates[2])
    ratios = metrics.step_ratio(updates, states)
    expected = (updates[0].norm(dim=-1) / states[0].norm(dim=-1)).mean()
    assert ratios[0].item() == pytest.approx(expected.item())


def test_unrolled_logits_tied():
    model = Tied()
    x = torch.randn(5, 4)
    logits = probes.unrolled_logits(model, x, [1, 2])
    with torch.no_grad():
        h = x + model.f(x)
        one = model.head(h)
        two = model.head(h + model.f(h))
    assert logits.shape == (2, 5, 3)
    assert torch.allclose(logits[0], one)
    assert torch.allclose(logits[1], two)


def test_identity_lesion_plain_net():
    torch.manual_seed(3)
    layers = [nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(3)]
    model = nn.Sequential(*layers, nn.Linear(4, 2))
    x = torch.randn(6, 4)
    logits = probes.identity_lesion_logits(model, x, layers, [(1,), (0, 2)])
    with torch.no_grad():
        without_1 = model[3](layers[2](layers[0](x)))
        without_0_2 = model[3](layers[1](x))
    assert torch.allclose(logits[0], without_1)
    assert torch.allclose(logits[1], without_0_2)
    assert torch.allclose(model(x), model[3](layers[2](layers[1](layers[0](x)))))


def test_lesion_members_table():
    model = _model(ls.StochasticDepth(p_last=0.5))
    x, y = _data()
    members, removed = ls.lesion_members(model.graph, 1)
    logits = ls.evaluate(model, members, x, rule="inference")
    weights = model.scheme.inference_weights(model.graph)
    model.eval()
    with torch.no_grad():
        h = model.stem(x)
        h = h + weights[0] * model.branches[0](h)
        h = h + weights[2] * model.branches[2](h)
        without_1 = model.head(h)
    table = metrics.lesion_table(logits, y, removed)
    expected = (without_1.argmax(-1) == y).double().mean().item()
    assert table["removed"].tolist() == [(0,), (1,), (2,)]
    assert table["accuracy"][1] == pytest.approx(expected)


def test_tied_paths_sum_to_full_gradient():
    tied = pytest.importorskip("layershare.models.tied")
    torch.manual_seed(4)
    model = tied.TiedResNet(steps=3, width=4, scheme=ls.StochasticDepth(p_last=0.5))
    x = torch.randn(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    first_input = {}

    def hook(_module, args, _output):
        first_input.setdefault("h", args[0])

    handle = model.branch.register_forward_hook(hook)
    model.eval()
    loss = nn.functional.cross_entropy(model(x), y)
    (full,) = torch.autograd.grad(loss, first_input["h"])
    handle.remove()
    total = sum(
        probes.path_gradient(model, x, y, path)
        for k in range(4)
        for path in itertools.combinations(range(3), k)
    )
    assert torch.allclose(total, full, atol=1e-7)


def test_tied_unrolled_more_steps():
    tied = pytest.importorskip("layershare.models.tied")
    torch.manual_seed(5)
    model = tied.TiedResNet(steps=2, width=4)
    x = torch.randn(3, 1, 8, 8)
    logits = probes.unrolled_logits(model, x, [1, 4])
    model.eval()
    with torch.no_grad():
        h = model.stem(x)
        for t in range(4):
            h = h + model.branch(h, t)
        four = model.head(h)
    assert logits.shape == (2, 3, 10)
    assert torch.allclose(logits[1], four, atol=1e-6)
    assert model.steps == 2


def test_tied_step_states():
    tied = pytest.importorskip("layershare.models.tied")
    torch.manual_seed(6)
    model = tied.TiedResNet(steps=3, width=4)
    x = torch.randn(5, 1, 8, 8)
    states, updates = probes.record_calls(model, x, model.branch)
    assert states.shape == (3, 5, 4, 8, 8)
    assert torch.allclose(states[1], states[0] + updates[0], atol=1e-6)
    ratios = metrics.step_ratio(updates, states)
    assert ratios.shape == (3,)


def test_fractal_columns_match_members():
    fractal = pytest.importorskip("layershare.models.fractal")
    torch.manual_seed(7)
    model = fractal.FractalNet(
        columns=3, blocks=2, width=4, scheme=ls.DropPath(local=0.15, global_ratio=0.5)
    )
    x = torch.randn(4, 1, 8, 8)
    logits = probes.column_logits(model, x)
    columns = ls.Sampler(model, model.scheme).columns()
    model.eval()
    with torch.no_grad():
        deepest = model(x, member=columns[2])
    assert logits.shape == (3, 4, 10)
    assert torch.allclose(logits[2], deepest, atol=1e-6)
