import math

import pytest
import torch

from layershare import metrics

# Member A is right on all three samples, member B on sample 1 only, and
# their mean [[0.6, 0.4], [0.3, 0.7], [0.35, 0.65]] is right on samples 0, 1.
PROBS = torch.tensor(
    [
        [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
        [[0.3, 0.7], [0.4, 0.6], [0.1, 0.9]],
    ],
    dtype=torch.float64,
)
LOGITS = PROBS.log()
LABELS = torch.tensor([0, 1, 0])


def test_curve_best_order():
    curve = metrics.ensemble_curve(LOGITS, LABELS, order="best", n_resamples=99)
    assert list(curve.columns) == ["size", "order", "value", "ci_low", "ci_high"]
    assert curve["size"].tolist() == [1, 2]
    assert curve["value"].tolist() == pytest.approx([1.0, 2 / 3])
    assert (curve["order"] == "best").all()


def test_curve_length_order():
    curve = metrics.ensemble_curve(
        LOGITS, LABELS, order="length", lengths=[5, 2], n_resamples=99
    )
    assert curve["value"].tolist() == pytest.approx([1 / 3, 2 / 3])


def test_curve_nll():
    curve = metrics.ensemble_curve(
        LOGITS, LABELS, order="best", metric="nll", n_resamples=99
    )
    first = -(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3
    both = -(math.log(0.6) + math.log(0.7) + math.log(0.35)) / 3
    assert curve["value"].tolist() == pytest.approx([first, both])


def test_curve_nll_tiny_probabilities():
    logits = torch.tensor([[[0.0, 800.0]], [[0.0, 800.0]]])
    curve = metrics.ensemble_curve(
        logits, torch.tensor([0]), metric="nll", n_resamples=99
    )
    assert curve["value"].tolist() == pytest.approx([800.0, 800.0])


def test_curve_constant_rows_zero_width():
    curve = metrics.ensemble_curve(LOGITS, LABELS, order="best", n_resamples=99)
    assert curve["ci_low"][0] == 1.0
    assert curve["ci_high"][0] == 1.0


def test_curve_full_size_order_free():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 30, 3, generator=generator)
    labels = torch.randint(0, 3, (30,), generator=generator)
    probs = torch.softmax(logits.double(), -1).mean(0)
    expected = (probs.argmax(-1) == labels).double().mean().item()
    for order in ("random", "best"):
        curve = metrics.ensemble_curve(logits, labels, order=order, n_resamples=99)
        assert curve["value"].iloc[-1] == pytest.approx(expected)


def test_curve_random_seeded():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 40, 3, generator=generator)
    labels = torch.randint(0, 3, (40,), generator=generator)
    first = metrics.ensemble_curve(logits, labels, seed=7, n_resamples=99)
    again = metrics.ensemble_curve(logits, labels, seed=7, n_resamples=99)
    assert first.equals(again)


def test_curve_random_follows_randperm():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 40, 3, generator=generator)
    labels = torch.randint(0, 3, (40,), generator=generator)
    first = torch.randperm(5, generator=torch.Generator().manual_seed(11))[0]
    expected = (logits[first].argmax(-1) == labels).double().mean().item()
    curve = metrics.ensemble_curve(logits, labels, seed=11, n_resamples=99)
    assert curve["value"].iloc[0] == pytest.approx(expected)


def test_curve_interval_matches_normal_approximation():
    # 300 of 400 samples right: the 95 % interval of a proportion is about
    # 0.75 +- 1.96 * sqrt(0.75 * 0.25 / 400) = 0.75 +- 0.0424.
    logits = torch.zeros(1, 400, 2)
    logits[0, :300, 0] = 1.0
    logits[0, 300:, 1] = 1.0
    labels = torch.zeros(400, dtype=torch.long)
    curve = metrics.ensemble_curve(logits, labels, n_resamples=4999)
    half_width = 1.96 * math.sqrt(0.75 * 0.25 / 400)
    assert curve["ci_low"][0] == pytest.approx(0.75 - half_width, abs=0.01)
    assert curve["ci_high"][0] == pytest.approx(0.75 + half_width, abs=0.01)


def test_curve_no_nan_many_members():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(100, 50, 4, generator=generator) * 3
    labels = torch.randint(0, 4, (50,), generator=generator)
    curve = metrics.ensemble_curve(logits, labels, n_resamples=199)
    assert not curve.isna().any().any()
    assert curve["size"].iloc[0] == 1
    assert curve["size"].iloc[-1] == 100
    assert len(curve) <= 32


def test_curve_sizes_log_uniform():
    sizes = metrics.curve_sizes(1000, 4)
    assert sizes.tolist() == [1, 10, 100, 1000]


def test_curve_length_needs_lengths():
    with pytest.raises(ValueError, match="needs lengths"):
        metrics.ensemble_curve(LOGITS, LABELS, order="length")


def test_curve_unknown_order():
    with pytest.raises(ValueError, match="'worst'"):
        metrics.ensemble_curve(LOGITS, LABELS, order="worst")


def test_curve_across_chunks():
    # More members than one chunk of 256: compare with the mean of all
    # probabilities up to each size.
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(300, 20, 3, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (20,), generator=generator)
    sizes = [1, 256, 257, 300]
    curve = metrics.ensemble_curve(
        logits, labels, order="length", lengths=[0] * 300, sizes=sizes, n_resamples=99
    )
    probs = torch.softmax(logits, -1)
    expected = [
        (probs[:k].mean(0).argmax(-1) == labels).double().mean().item() for k in sizes
    ]
    assert curve["size"].tolist() == sizes
    assert curve["value"].tolist() == pytest.approx(expected)


def test_curve_nll_across_chunks():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(260, 10, 3, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (10,), generator=generator)
    curve = metrics.ensemble_curve(
        logits,
        labels,
        order="length",
        lengths=[0] * 260,
        metric="nll",
        sizes=[260],
        n_resamples=99,
    )
    probs = torch.softmax(logits, -1).mean(0)
    expected = -probs[torch.arange(10), labels].log().mean().item()
    assert curve["value"].tolist() == pytest.approx([expected])
