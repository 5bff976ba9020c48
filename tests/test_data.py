"""Tests of the real datasets in layershare.data."""

from __future__ import annotations

import os

import pytest
import torch
from sklearn.datasets import load_digits

from layershare.data import DIGITS_KINDS, digits, karate_club

NUM_DIGITS = 1797


@pytest.fixture(scope="module")
def digit_images():
    """Return sklearn's digits as [N, 8, 8] float64 images and int labels."""
    bunch = load_digits()
    return torch.as_tensor(bunch.images), torch.as_tensor(bunch.target)


@pytest.mark.parametrize(
    ("kind", "input_shape"),
    [("images", (1, 8, 8)), ("flat", (64,)), ("sequences", (64, 1))],
)
def test_digits_shapes(kind, input_shape):
    split = digits(kind)
    train_inputs, train_labels = split.train.tensors
    test_inputs, test_labels = split.test.tensors

    assert split.input_shape == input_shape
    assert split.num_classes == 10
    assert train_inputs.shape == (len(train_labels), *input_shape)
    assert test_inputs.shape == (len(test_labels), *input_shape)
    assert len(train_labels) + len(test_labels) == NUM_DIGITS


def test_digits_dtypes_and_range():
    inputs, labels = digits().train.tensors

    assert inputs.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert inputs.min().item() == 0.0
    assert inputs.max().item() == 1.0
    assert set(labels.tolist()) == set(range(10))


def test_digits_pixels_scaled_from_sklearn(digit_images):
    images, labels = digit_images
    inputs, split_labels = digits(test_fraction=0.5, seed=3).test.tensors

    # Find each test image among sklearn's images and compare pixel by pixel.
    flat_sklearn = images.reshape(len(images), -1)
    for row in range(5):
        matches = (flat_sklearn / 16 == inputs[row].double().reshape(-1)).all(dim=1)
        index = int(matches.nonzero()[0])
        assert torch.allclose(inputs[row, 0].double(), images[index] / 16)
        assert split_labels[row] == labels[index]


def test_digits_kinds_share_split():
    images = digits("images", seed=5).test.tensors[0]
    flat = digits("flat", seed=5).test.tensors[0]
    sequences = digits("sequences", seed=5).test.tensors[0]

    assert torch.equal(images.reshape(len(images), 64), flat)
    assert torch.equal(sequences.squeeze(-1), flat)


def test_digits_sequences_row_major(digit_images):
    images, _ = digit_images
    sequence = digits("sequences").train.tensors[0][0, :, 0].double()
    image = digits("images").train.tensors[0][0, 0].double()

    # Step 8 * r + c of the sequence is pixel (r, c) of the image.
    assert sequence[8 * 2 + 5] == image[2, 5]
    assert sequence[8 * 7 + 0] == image[7, 0]


def test_digits_split_stratified():
    split = digits(test_fraction=0.2, seed=0)
    all_counts = torch.bincount(torch.as_tensor(load_digits().target), minlength=10)
    test_counts = torch.bincount(split.test.tensors[1], minlength=10)

    # Each class's test share is 20% of the class, up to rounding.
    expected = all_counts.double() * 0.2
    assert (test_counts.double() - expected).abs().max() <= 1.0
    assert len(split.test) == 360


def test_digits_same_seed_same_split():
    first = digits(seed=7)
    second = digits(seed=7)

    assert torch.equal(first.train.tensors[0], second.train.tensors[0])
    assert torch.equal(first.test.tensors[1], second.test.tensors[1])


def test_digits_seeds_differ():
    first = digits(seed=0).test.tensors[0]
    second = digits(seed=1).test.tensors[0]

    assert not torch.equal(first, second)


def test_digits_test_fraction_sets_size():
    split = digits(test_fraction=0.5)

    # scikit-learn rounds the test size up: ceil(0.5 * 1797) = 899.
    assert len(split.test) == 899
    assert len(split.train) == 898


def test_digits_bad_kind():
    with pytest.raises(ValueError, match="'pixels'") as info:
        digits("pixels")
    for kind in DIGITS_KINDS:
        assert repr(kind) in str(info.value)


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1, 1.5])
def test_digits_test_fraction_out_of_range(test_fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        digits(test_fraction=test_fraction)


@pytest.mark.parametrize("test_fraction", [0.001, 0.999])
def test_digits_test_fraction_too_few_per_class(test_fraction):
    with pytest.raises(ValueError, match="at least 10"):
        digits(test_fraction=test_fraction)


@pytest.mark.parametrize("seed", [1.5, "0", True])
def test_digits_bad_seed(seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        digits(seed=seed)


def test_karate_club_graph():
    graph = karate_club()

    assert graph.num_nodes == 34
    assert graph.x.shape == (34, 34)
    assert graph.edge_index.shape == (2, 156)
    assert torch.bincount(graph.y).tolist() == [13, 12, 4, 5]


def test_karate_club_masks_partition_nodes():
    graph = karate_club(train_per_class=3)

    assert graph.train_mask.dtype == torch.bool
    assert not (graph.train_mask & graph.test_mask).any()
    assert (graph.train_mask | graph.test_mask).all()
    assert torch.bincount(graph.y[graph.train_mask]).tolist() == [3, 3, 3, 3]


def test_karate_club_seeds():
    first = karate_club(seed=0).train_mask
    again = karate_club(seed=0).train_mask
    other = karate_club(seed=1).train_mask

    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_karate_club_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    karate_club()

    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("train_per_class", [0, 4])
def test_karate_club_train_per_class_range(train_per_class):
    with pytest.raises(ValueError, match="between 1 and 3"):
        karate_club(train_per_class=train_per_class)
