"""TiedResNet: tie groups, tying switches, per-step batch norm, steps at inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import layershare as ls
from layershare.data import digits
from layershare.models import TiedResNet


def by_hand(model: TiedResNet, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Run the unrolled net step by step, choosing batch norms by hand."""
    branch = model.branch
    h = model.stem(x)
    for t in range(steps):
        i = min(t, len(branch.bn1) - 1)
        update = branch.conv1(torch.relu(branch.bn1[i](h)))
        h = h + branch.conv2(torch.relu(branch.bn2[i](update)))
    return model.head(h)


def test_tied_weights_form_one_tie_group():
    model = TiedResNet(steps=3, width=4)

    assert model.graph.ties() == {"branch": ["branch", "branch_1", "branch_2"]}


def test_untied_has_no_tie_group():
    model = TiedResNet(steps=3, width=4, tie_weights=False)

    assert model.graph.ties() == {}
    assert model.graph.num_gates == 3


@pytest.mark.parametrize(
    ("tie_weights", "tie_bn", "expected"),
    [
        # stem 1*w*9, head BN 2w + linear w*10 + 10 = 36 + 8 + 40 + 10 = 94 for
        # w = 4. One branch: two convs 2 * w*w*9 = 288, each BN copy 2 * 2w = 16.
        (True, False, 94 + 288 + 3 * 16),
        (True, True, 94 + 288 + 16),
        (False, False, 94 + 3 * (288 + 16)),
    ],
)
def test_parameter_counts(tie_weights, tie_bn, expected):
    model = TiedResNet(steps=3, width=4, tie_weights=tie_weights, tie_bn=tie_bn)

    assert sum(p.numel() for p in model.parameters()) == expected


def test_tie_bn_needs_tied_weights():
    with pytest.raises(ValueError, match="tie_bn=True needs tie_weights=True"):
        TiedResNet(tie_weights=False, tie_bn=True)


def test_forward_matches_hand_unroll():
    torch.manual_seed(0)
    model = TiedResNet(steps=3, width=4).eval()
    x = torch.randn(2, 1, 8, 8)

    torch.testing.assert_close(model(x), by_hand(model, x, 3))


def test_member_drops_a_step():
    torch.manual_seed(0)
    model = TiedResNet(steps=3, width=4).eval()
    branch = model.branch
    x = torch.randn(2, 1, 8, 8)
    h = model.stem(x)
    for t in (0, 2):
        update = branch.conv1(torch.relu(branch.bn1[t](h)))
        h = h + branch.conv2(torch.relu(branch.bn2[t](update)))
    member = ls.Members.from_codes([0b101], 3)[0]

    torch.testing.assert_close(model(x, member=member), model.head(h))


def test_unrolled_changes_and_restores_steps():
    model = TiedResNet(steps=3, width=4)
    with model.unrolled(5):
        assert model.graph.num_gates == 5
        assert len(model.graph.ties()["branch"]) == 5
    assert model.steps == 3
    assert model.graph.num_gates == 3


def test_extra_steps_reuse_last_norm():
    torch.manual_seed(0)
    model = TiedResNet(steps=3, width=4).eval()
    x = torch.randn(2, 1, 8, 8)
    with model.unrolled(5):
        out = model(x)

    torch.testing.assert_close(out, by_hand(model, x, 5))


def test_untied_rejects_extra_steps():
    model = TiedResNet(steps=3, width=4, tie_weights=False)
    with pytest.raises(ValueError, match="cannot unroll 4"):
        model.steps = 4


def test_steps_sampler_follows_unroll():
    model = TiedResNet(steps=3, width=4)
    scheme = ls.StochasticDepth(p_last=0.5)
    with model.unrolled(5):
        assert ls.Sampler(model, scheme).count() == 2**5
    assert ls.Sampler(model, scheme).count() == 2**3


def calibrate(model: TiedResNet, x: torch.Tensor) -> torch.Tensor:
    """Set every batch norm's statistics to those of one full batch.

    Returns the train-mode output on that batch.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def train_images() -> torch.Tensor:
    return digits("images").train.tensors[0]


def test_per_step_statistics_by_hand(train_images):
    torch.manual_seed(0)
    model = TiedResNet(steps=3, width=4)
    calibrate(model, train_images)
    branch = model.branch
    with torch.no_grad():
        h = model.stem(train_images)
        for t in range(3):
            mean = h.mean(dim=(0, 2, 3))
            torch.testing.assert_close(branch.bn1[t].running_mean, mean)
            h = h + branch.conv2(batch_norm_relu(branch.conv1(batch_norm_relu(h))))


def batch_norm_relu(h: torch.Tensor) -> torch.Tensor:
    """Normalize with the batch's own statistics (the affine starts at 1, 0)."""
    return torch.relu(F.batch_norm(h, None, None, training=True))


def test_per_step_norm_matches_train_mode(train_images):
    torch.manual_seed(0)
    model = TiedResNet(steps=3, width=4, tie_bn=False)
    train_out = calibrate(model, train_images)
    with torch.no_grad():
        eval_out = model.eval()(train_images)

    # Only the unbiased (n / (n - 1)) variance of the running statistics
    # differs, with n = 1437 * 64 values per channel.
    torch.testing.assert_close(eval_out, train_out, rtol=1e-3, atol=1e-3)


def test_tied_norm_misses_train_mode(train_images):
    torch.manual_seed(0)
    model = TiedResNet(steps=3, width=4, tie_bn=True)
    train_out = calibrate(model, train_images)
    with torch.no_grad():
        eval_out = model.eval()(train_images)

    # One set of statistics averaged over the steps fits none of them.
    assert (eval_out - train_out).abs().max() > 1e-2
