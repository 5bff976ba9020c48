"""Real datasets that ship with installed packages, so nothing downloads.

Two sources are covered:

- scikit-learn's handwritten digits (``sklearn.datasets.load_digits``): 1797
  grey-scale 8x8 images of the digits 0-9 with pixel values 0..16, offered as
  images for convolutional nets, flat vectors for MLPs, and pixel sequences
  for recurrent nets.
- Zachary's karate club graph (``torch_geometric.datasets.KarateClub``): 34
  members of a club, 156 directed edges, and 4 community labels, for node
  classification with graph nets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset
from torch_geometric.data import Data
from torch_geometric.datasets import KarateClub

__all__ = ["DIGITS_KINDS", "DataSplit", "digits", "karate_club"]

DIGITS_KINDS = ("images", "flat", "sequences")
"""Layouts accepted by :func:`digits`."""

# Largest pixel value in scikit-learn's digits: each pixel counts the set
# pixels of a 4x4 block of the original 32x32 bitmap.
_DIGITS_MAX_PIXEL = 16.0


@dataclass(frozen=True)
class DataSplit:
    """A train and a test set of one dataset.

    Attributes:
        train: Training inputs (float32) and labels (int64).
        test: Test inputs (float32) and labels (int64).
        num_classes: Number of classes. Labels run from 0 to ``num_classes - 1``.
        input_shape: Shape of one input, without the batch dimension.
    """

    train: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]


def digits(
    kind: str = "images",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplit:
    """Load scikit-learn's handwritten digits as a stratified train/test split.

    Pixel values are scaled from 0..16 to [0, 1]. The split keeps each digit's
    share of the data the same in both parts, and the same ``seed`` always
    gives the same split.

    Args:
        kind: Layout of each input (default: ``"images"``). ``"images"`` gives
            ``[1, 8, 8]`` images, ``"flat"`` gives ``[64]`` vectors, and
            ``"sequences"`` gives ``[64, 1]`` sequences of one pixel per step,
            read row by row, for recurrent models.
        test_fraction: Fraction of the 1797 samples in the test set, strictly
            between 0 and 1 (default: ``0.2``). Both parts must contain at least
            one sample of each of the 10 digits.
        seed: Seed of the split (default: ``0``).

    Returns:
        The split, with float32 inputs and int64 labels.

    Raises:
        ValueError: If ``kind`` is not one of :data:`DIGITS_KINDS`, or if
            ``test_fraction`` leaves either part with fewer samples than
            classes.
        TypeError: If ``seed`` is not an int or ``test_fraction`` is not a
            number.

    Shape:
        - images: inputs ``[N, 1, 8, 8]``, labels ``[N]``
        - flat: inputs ``[N, 64]``, labels ``[N]``
        - sequences: inputs ``[N, 64, 1]``, labels ``[N]``

    Example:
        >>> split = digits("flat", seed=1)
        >>> split.input_shape, split.num_classes
        ((64,), 10)
        >>> len(split.train) + len(split.test)
        1797
    """
    if kind not in DIGITS_KINDS:
        raise ValueError(
            f"kind must be one of {', '.join(map(repr, DIGITS_KINDS))}, "
            f"but got {kind!r}"
        )
    _check_seed(seed)
    bunch = load_digits()
    num_samples, num_classes = len(bunch.target), len(bunch.target_names)
    _check_test_fraction(test_fraction, num_samples, num_classes)

    # Scale to [0, 1] and lay out each sample as requested.
    pixels = torch.as_tensor(bunch.data, dtype=torch.float32) / _DIGITS_MAX_PIXEL
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    input_shape = {"images": (1, 8, 8), "flat": (64,), "sequences": (64, 1)}[kind]
    inputs = pixels.reshape(num_samples, *input_shape)

    # Split indices, not tensors, so that the split is the same for every kind.
    train_index, test_index = train_test_split(
        range(num_samples),
        test_size=test_fraction,
        random_state=seed,
        stratify=bunch.target,
    )
    train_index = torch.as_tensor(train_index)
    test_index = torch.as_tensor(test_index)

    return DataSplit(
        train=TensorDataset(inputs[train_index], labels[train_index]),
        test=TensorDataset(inputs[test_index], labels[test_index]),
        num_classes=num_classes,
        input_shape=input_shape,
    )


def karate_club(*, train_per_class: int = 2, seed: int = 0) -> Data:
    """Load Zachary's karate club graph with seeded train and test node masks.

    The graph comes from ``torch_geometric.datasets.KarateClub``, which builds
    it in memory, so nothing is downloaded or written to disk. Its 34 nodes
    fall into 4 communities of 13, 12, 4 and 5 members. For semi-supervised
    node classification, ``train_per_class`` nodes of each community are drawn
    for training and every other node is a test node.

    Args:
        train_per_class: Labelled training nodes per community (default: ``2``),
            at least 1 and less than the smallest community's size, so that
            each community keeps test nodes.
        seed: Seed of the draw of training nodes (default: ``0``).

    Returns:
        The graph as a :class:`torch_geometric.data.Data` with ``x`` (one-hot
        node features ``[34, 34]``), ``edge_index`` ``[2, 156]``, ``y``
        ``[34]``, and boolean ``train_mask`` and ``test_mask`` ``[34]``, which
        are disjoint and cover every node.

    Raises:
        ValueError: If ``train_per_class`` is out of range.
        TypeError: If ``train_per_class`` or ``seed`` is not an int.

    Example:
        >>> graph = karate_club(train_per_class=1)
        >>> graph.num_nodes, int(graph.train_mask.sum())
        (34, 4)
    """
    _check_seed(seed)
    if not isinstance(train_per_class, int) or isinstance(train_per_class, bool):
        raise TypeError(
            f"train_per_class must be an int, but got {type(train_per_class).__name__}"
        )
    graph = KarateClub()[0]
    class_sizes = torch.bincount(graph.y)
    max_per_class = int(class_sizes.min()) - 1
    if not 1 <= train_per_class <= max_per_class:
        raise ValueError(
            f"train_per_class must be between 1 and {max_per_class}, so that "
            f"each of the {len(class_sizes)} communities keeps test nodes, "
            f"but got {train_per_class}"
        )

    # Draw the training nodes of each community with one seeded generator.
    generator = torch.Generator().manual_seed(seed)
    train_mask = torch.zeros(graph.num_nodes, dtype=torch.bool)
    for label in range(len(class_sizes)):
        nodes = (graph.y == label).nonzero().flatten()
        order = torch.randperm(len(nodes), generator=generator)
        train_mask[nodes[order[:train_per_class]]] = True

    graph.train_mask = train_mask
    graph.test_mask = ~train_mask
    return graph


def _check_seed(seed: object) -> None:
    """Raise TypeError unless ``seed`` is an int (bool is rejected)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, but got {type(seed).__name__}")


def _check_test_fraction(
    test_fraction: float, num_samples: int, num_classes: int
) -> None:
    """Check that ``test_fraction`` leaves every class in both parts of the split."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, float | int):
        raise TypeError(
            f"test_fraction must be a float, but got {type(test_fraction).__name__}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1, but got {test_fraction}"
        )

    # scikit-learn rounds the test size up and gives the rest to training.
    num_test = math.ceil(test_fraction * num_samples)
    num_train = num_samples - num_test
    if min(num_test, num_train) < num_classes:
        low = num_classes / num_samples
        high = 1.0 - low
        raise ValueError(
            f"test_fraction={test_fraction} gives {num_train} training and "
            f"{num_test} test samples, but a stratified split needs at least "
            f"{num_classes} (one per class) in each; use a value between "
            f"{low:.4f} and {high:.4f}"
        )
