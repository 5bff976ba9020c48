"""The engine: members, plain calls and batched evaluation match hand-built nets."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch

import layershare as ls
from layershare.models import ResidualMLP


@pytest.fixture
def model() -> ResidualMLP:
    torch.manual_seed(0)
    net = ResidualMLP(in_features=5, width=6, blocks=3, num_classes=4)
    net.scheme = ls.StochasticDepth(p_last=0.5)
    return net.eval()


def by_hand(model: ResidualMLP, x: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Run the residual chain directly, branch l scaled by weights[l]."""
    h = model.stem(x)
    for branch, w in zip(model.branches, weights, strict=True):
        h = h + w * branch(h)
    return model.head(h)


def test_member_matches_hand_computation(model):
    x = torch.randn(7, 5)
    member = ls.Members.from_codes([0b101], 3)[0]
    expected = by_hand(model, x, [1.0, 0.0, 1.0])
    torch.testing.assert_close(model(x, member=member), expected, rtol=0, atol=1e-6)


def test_eval_uses_survival_rates(model):
    x = torch.randn(7, 5)
    survival = [1 - (block / 3) * 0.5 for block in (1, 2, 3)]
    torch.testing.assert_close(model(x), by_hand(model, x, survival), rtol=0, atol=1e-6)


def test_train_scale_member_divides_by_survival(model):
    model.scheme = ls.StochasticDepth(p_last=0.5, scale="train")
    x = torch.randn(7, 5)
    member = ls.Members.from_codes([0b011], 3)[0]
    expected = by_hand(model, x, [1 / (1 - 0.5 / 3), 1 / (1 - 1.0 / 3), 0.0])
    torch.testing.assert_close(model(x, member=member), expected, rtol=0, atol=1e-5)


def test_train_scale_eval_keeps_every_branch(model):
    model.scheme = ls.StochasticDepth(p_last=0.5, scale="train")
    x = torch.randn(7, 5)
    torch.testing.assert_close(
        model(x), by_hand(model, x, [1.0] * 3), rtol=0, atol=1e-6
    )


def test_evaluate_matches_member_calls(model):
    x = torch.randn(9, 5)
    members = ls.Sampler(model, model.scheme).enumerate()
    out = ls.evaluate(model, members, x)
    assert out.shape == (8, 9, 4)
    for i, member in enumerate(members):
        torch.testing.assert_close(out[i], model(x, member=member), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("batch_size", "max_rows"), [(1, 1), (2, 5), (4, 64), (9, 10**6)]
)
def test_evaluate_chunking_invariant(model, batch_size, max_rows):
    x = torch.randn(9, 5)
    members = ls.Sampler(model, model.scheme).enumerate()
    reference = torch.stack([model(x, member=m) for m in members]).detach()
    out = ls.evaluate(model, members, x, batch_size=batch_size, max_rows=max_rows)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-5)


def test_evaluate_mean_reduction(model):
    x = torch.randn(9, 5)
    members = ls.Sampler(model, model.scheme).enumerate()
    full = ls.evaluate(model, members, x)
    mean = ls.evaluate(model, members, x, reduce="mean", max_rows=20)
    torch.testing.assert_close(mean, torch.softmax(full, -1).mean(0), rtol=0, atol=1e-6)


def test_evaluate_votes_reduction(model):
    x = torch.randn(9, 5)
    members = ls.Sampler(model, model.scheme).enumerate()
    full = ls.evaluate(model, members, x)
    votes = ls.evaluate(model, members, x, reduce="votes", max_rows=20)
    expected = torch.nn.functional.one_hot(full.argmax(-1), 4).sum(0).to(votes.dtype)
    torch.testing.assert_close(votes, expected)


def test_evaluate_restores_training_mode(model):
    model.train()
    ls.evaluate(model, ls.Members.from_codes([7], 3), torch.randn(4, 5))
    assert model.training


def test_inference_rule_all_kept_is_eval_model(model):
    x = torch.randn(6, 5)
    full = ls.Members.from_codes([0b111], 3)
    out = ls.evaluate(model, full, x, rule="inference")[0]
    torch.testing.assert_close(out, model(x).detach(), rtol=0, atol=1e-6)


def test_training_draw_follows_manual_seed(model):
    model.train()
    x = torch.randn(16, 5)
    torch.manual_seed(3)
    first = model(x)
    torch.manual_seed(3)
    second = model(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def train_without_batch_norm(model: ResidualMLP) -> None:
    """Put gates in training mode but batch norm in eval, so rows stay independent."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.eval()


@pytest.mark.parametrize(
    ("granularity", "distinct_rows"), [("batch", 1), ("sample", 8)]
)
def test_granularity_sets_draws_per_row(granularity, distinct_rows):
    torch.manual_seed(0)
    model = ResidualMLP(in_features=5, width=32, blocks=3, num_classes=4)
    model.scheme = ls.StochasticDepth(
        p_last=0.5, rule="uniform", granularity=granularity
    )
    train_without_batch_norm(model)
    x = torch.randn(1, 5).expand(256, 5)
    torch.manual_seed(0)
    rows = model(x).detach()
    assert len(torch.unique(rows.round(decimals=5), dim=0)) == distinct_rows


def test_member_with_wrong_gate_count_rejected(model):
    with pytest.raises(ls.MemberError, match="3"):
        model(torch.randn(2, 5), member=ls.Members.from_codes([1], 2)[0])


def test_several_members_in_call_rejected(model):
    with pytest.raises(ls.MemberError, match="ls.evaluate"):
        model(torch.randn(2, 5), member=ls.Members.from_codes([1, 2], 3))


def test_keyword_inputs_rejected(model):
    with pytest.raises(TypeError, match="positionally"):
        model(x=torch.randn(2, 5))


def test_bad_reduce_rejected(model):
    with pytest.raises(ValueError, match="reduce"):
        ls.evaluate(
            model, ls.Members.from_codes([1], 3), torch.randn(2, 5), reduce="max"
        )


def test_bad_rule_rejected(model):
    with pytest.raises(ValueError, match="rule"):
        ls.evaluate(
            model, ls.Members.from_codes([1], 3), torch.randn(2, 5), rule="test"
        )


def test_bn_data_matches_per_member_recalibration(model):
    x, train = torch.randn(6, 5), torch.randn(40, 5)
    members = ls.Sampler(model, model.scheme).enumerate()
    out = ls.evaluate(model, members, x, bn_data=train, bn_batches=1)
    for i, member in enumerate(members):
        copy = deepcopy(model)
        # Re-estimate by hand: cumulative batch statistics of the member's forward.
        for module in copy.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.reset_running_stats()
                module.momentum = None
                module.train()
        with torch.no_grad():
            copy(train, member=member)
        copy.eval()
        torch.testing.assert_close(out[i], copy(x, member=member), rtol=0, atol=1e-5)


def test_bn_data_restores_running_statistics(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    members = ls.Members.from_codes([1, 6], 3)
    ls.evaluate(model, members, torch.randn(6, 5), bn_data=torch.randn(40, 5))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_wrong_input_shape_names_node(model):
    with pytest.raises(ls.ModelExecutionError, match=r"node 'stem'.*\(2, 7\) float32"):
        model(torch.randn(2, 7))


def test_wrong_input_dtype_names_dtype(model):
    members = ls.Members.from_codes([1], 3)
    with pytest.raises(ls.ModelExecutionError, match="float64"):
        ls.evaluate(model, members, torch.randn(2, 5, dtype=torch.float64))


def test_no_samples_rejected(model):
    with pytest.raises(ls.MemberError, match="0 samples"):
        ls.evaluate(model, ls.Members.from_codes([1], 3), torch.randn(0, 5))


def test_dropped_branch_not_computed(model):
    calls = []
    for index, branch in enumerate(model.branches):
        branch.register_forward_hook(lambda *_, index=index: calls.append(index))
    model(torch.randn(4, 5), member=ls.Members.from_codes([0b101], 3)[0])
    assert calls == [0, 2]


def test_skipping_dead_branches_keeps_outputs(model):
    x = torch.randn(6, 5)
    members = ls.Sampler(model, model.scheme).enumerate()
    skipped = ls.evaluate(model, members, x, max_rows=6)
    try:
        ls.engine.GateInterpreter.skip_dead = False
        computed = ls.evaluate(model, members, x, max_rows=6)
    finally:
        ls.engine.GateInterpreter.skip_dead = True
    torch.testing.assert_close(skipped, computed, rtol=0, atol=0)
