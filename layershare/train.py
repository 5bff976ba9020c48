"""A plain, seeded training loop that applies a scheme's train-time rule.

:func:`fit` attaches the scheme to the model (so training draws gates and
``eval()`` uses the scheme's inference rule), trains with SGD and Nesterov
momentum or with Adam, and can save a checkpoint (a ``state_dict`` file) after
training. Datasets of ``(input, label)`` pairs train in mini-batches; a
``torch_geometric`` graph trains full-batch on its labelled nodes
(:func:`fit_graph`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch_geometric.data import Data
from tqdm.auto import tqdm

__all__ = [
    "OPTIMIZERS",
    "History",
    "accuracy_on",
    "fit",
    "fit_graph",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
"""Optimizers accepted by :func:`fit` and :func:`fit_graph`."""


@dataclass
class History:
    """Per-epoch training record.

    Attributes:
        loss: Mean training loss of each epoch.
        train_accuracy: Training accuracy of each epoch, measured on the
            mini-batches as they were trained (with sampled gates).
        test_accuracy: Test accuracy after each epoch in eval mode, when a test
            set was given.
    """

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


def fit(
    model: nn.Module,
    scheme,
    train: Dataset | Data,
    *,
    test: Dataset | Data | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint: str | PathLike | None = None,
    progress: bool = True,
    optimizer: str = "sgd",
    max_grad_norm: float | None = None,
) -> History:
    """Train a gated model with a scheme's train-time rule.

    SGD with Nesterov momentum (or Adam) and a cosine learning-rate schedule
    over all steps. The data order and every gate draw follow ``seed``. Before
    each epoch, ``model.set_epoch(epoch)`` is called when the model defines
    it, as PyTorch's ``DistributedSampler.set_epoch`` is; the HM-RNN anneals
    its hard-sigmoid slope there.

    Args:
        model: A :class:`~layershare.nn.GatedModel`; its ``scheme`` is set to
            ``scheme``.
        scheme: The sampling scheme, or ``None`` to train the plain network.
        train: Training set of ``(input, label)`` pairs, or a
            ``torch_geometric.data.Data`` graph, which :func:`fit_graph`
            trains full-batch (``batch_size`` is then unused).
        test: Optional test set, evaluated after each epoch; for a graph, a
            graph whose ``test_mask`` nodes are evaluated (default: ``None``).
        epochs: Passes over the training set (default: 10).
        batch_size: Mini-batch size (default: 64).
        lr: Initial learning rate (default: 0.05).
        momentum: Nesterov momentum of SGD; 0 gives plain SGD (default: 0.9).
        weight_decay: L2 penalty (default: 5e-4).
        seed: Seed for data order and gate draws (default: 0).
        device: Where to train (default: the model's device).
        checkpoint: Path of a ``state_dict`` file written after training
            (default: ``None``).
        progress: Show a tqdm progress bar; it is also hidden when stderr is
            not a terminal (default: ``True``).
        optimizer: ``"sgd"`` or ``"adam"`` (default: ``"sgd"``).
        max_grad_norm: Clip the gradients' total 2-norm to this value before
            each step, or ``None`` for no clipping (default: ``None``).

    Returns:
        The :class:`History` of the run.

    Raises:
        ValueError: When ``epochs`` or ``batch_size`` is not a positive int,
            ``lr`` or ``max_grad_norm`` is not positive, or ``optimizer`` is
            not one of :data:`OPTIMIZERS`.
    """
    _check_options(epochs, lr, optimizer, max_grad_norm)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, but got {batch_size!r}")
    if isinstance(train, Data):
        return fit_graph(
            model,
            scheme,
            train,
            test=test,
            epochs=epochs,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            seed=seed,
            device=device,
            checkpoint=checkpoint,
            progress=progress,
            optimizer=optimizer,
            max_grad_norm=max_grad_norm,
        )

    device = _prepare(model, scheme, device, seed)
    loader = DataLoader(
        train,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(train) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    step, schedule = _optimizer(
        model, optimizer, lr, momentum, weight_decay, epochs * len(loader)
    )
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    bar = tqdm(
        range(epochs), desc="training", disable=not progress or None, unit="epoch"
    )
    for epoch in bar:
        _start_epoch(model, epoch)
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            step.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            step.step()
            schedule.step()
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        history.loss.append(total_loss / seen)
        history.train_accuracy.append(correct / seen)
        _end_epoch(model, test, device, epoch, history, bar)
    model.eval()
    if checkpoint is not None:
        save_checkpoint(model, checkpoint)
    return history


def fit_graph(
    model: nn.Module,
    scheme,
    graph: Data,
    *,
    test: Data | None = None,
    epochs: int = 100,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint: str | PathLike | None = None,
    progress: bool = True,
    optimizer: str = "sgd",
    max_grad_norm: float | None = None,
) -> History:
    """Train a node classifier full-batch on one graph's labelled nodes.

    Each epoch is one optimizer step on the whole graph: the model runs as
    ``model(graph.x, graph.edge_index)``, and the loss covers the nodes of
    ``graph.train_mask`` (every node when the graph has no mask). Gate draws
    follow ``seed``, and ``model.set_epoch(epoch)`` is called before each
    epoch when the model defines it.

    Args:
        model: A :class:`~layershare.nn.GatedModel` whose forward takes
            ``(x, edge_index)``; its ``scheme`` is set to ``scheme``.
        scheme: The sampling scheme, or ``None`` to train the plain network.
        graph: The graph, with ``x``, ``edge_index``, ``y`` and optionally a
            boolean ``train_mask``.
        test: Graph whose ``test_mask`` nodes are evaluated after each epoch;
            when ``None``, ``graph`` itself is evaluated if it has a
            ``test_mask`` (default: ``None``).
        epochs: Training steps (default: 100).
        lr: Initial learning rate (default: 0.01).
        momentum: Nesterov momentum of SGD (default: 0.9).
        weight_decay: L2 penalty (default: 5e-4).
        seed: Seed for gate draws and any other randomness in the model
            (default: 0).
        device: Where to train (default: the model's device).
        checkpoint: Path of a ``state_dict`` file written after training
            (default: ``None``).
        progress: Show a tqdm progress bar (default: ``True``).
        optimizer: ``"sgd"`` or ``"adam"`` (default: ``"sgd"``).
        max_grad_norm: Clip the gradients' total 2-norm, or ``None``
            (default: ``None``).

    Returns:
        The :class:`History`. Its train accuracy is measured on the training
        nodes with the step's sampled gates.
    """
    _check_options(epochs, lr, optimizer, max_grad_norm)
    if test is None and getattr(graph, "test_mask", None) is not None:
        test = graph
    device = _prepare(model, scheme, device, seed)
    graph = graph.to(device)
    train_mask = getattr(graph, "train_mask", None)
    if train_mask is None:
        train_mask = torch.ones(graph.num_nodes, dtype=torch.bool, device=device)
    step, schedule = _optimizer(model, optimizer, lr, momentum, weight_decay, epochs)
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    bar = tqdm(
        range(epochs), desc="training", disable=not progress or None, unit="epoch"
    )
    for epoch in bar:
        _start_epoch(model, epoch)
        logits = model(graph.x, graph.edge_index)[train_mask]
        labels = graph.y[train_mask]
        loss = loss_fn(logits, labels)
        step.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        step.step()
        schedule.step()
        history.loss.append(loss.item())
        correct = (logits.argmax(1) == labels).sum().item()
        history.train_accuracy.append(correct / len(labels))
        _end_epoch(model, test, device, epoch, history, bar)
    model.eval()
    if checkpoint is not None:
        save_checkpoint(model, checkpoint)
    return history


def _check_options(
    epochs: int, lr: float, optimizer: str, max_grad_norm: float | None
) -> None:
    """Raise ValueError for a training option out of range."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, but got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, but got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {OPTIMIZERS}, but got {optimizer!r}"
        )
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(
            f"max_grad_norm must be positive or None, but got {max_grad_norm!r}"
        )


def _prepare(model: nn.Module, scheme, device, seed: int) -> torch.device:
    """Move the model, attach the scheme and seed torch; return the device."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to(device)
    model.scheme = scheme
    torch.manual_seed(seed)
    return torch.device(device)


def _optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    steps: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Build the optimizer and its cosine schedule over ``steps`` steps."""
    if name == "adam":
        optimizer = torch.optim.Adam(
            model.parameters(), lr=lr, weight_decay=weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=momentum,
            nesterov=momentum > 0,
            weight_decay=weight_decay,
        )
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)


def _start_epoch(model: nn.Module, epoch: int) -> None:
    """Put the model in training mode and pass it the epoch, if it takes one."""
    model.train()
    set_epoch = getattr(model, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)


def _end_epoch(model, test, device, epoch: int, history: History, bar) -> None:
    """Record the test accuracy, if any, and show the epoch's numbers."""
    status = {"loss": f"{history.loss[-1]:.3f}"}
    if test is not None:
        history.test_accuracy.append(accuracy_on(model, test, device=device))
        status["test"] = f"{history.test_accuracy[-1]:.3f}"
    bar.set_postfix(status)
    logger.debug("epoch %d: %s", epoch, status)


@torch.no_grad()
def accuracy_on(
    model: nn.Module, data: Dataset | Data, *, batch_size: int = 1024, device=None
) -> float:
    """Return the eval-mode accuracy (the inference rule) of a model.

    Args:
        model: The model. Its training mode is restored afterwards.
        data: A dataset of ``(input, label)`` pairs, or a graph whose
            ``test_mask`` nodes (every node when it has no mask) are scored
            with ``model(x, edge_index)``.
        batch_size: Samples per forward for datasets (default: 1024).
        device: Where to compute (default: the model's device).

    Returns:
        The fraction of correct predictions, 0 for an empty dataset.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        if isinstance(data, Data):
            return _graph_accuracy(model, data.to(device))
        correct, seen = 0, 0
        for x, y in DataLoader(data, batch_size=batch_size):
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
            seen += len(y)
        return correct / max(seen, 1)
    finally:
        model.train(was_training)


def _graph_accuracy(model: nn.Module, graph: Data) -> float:
    """Return the accuracy on a graph's test nodes, or on every node."""
    mask = getattr(graph, "test_mask", None)
    if mask is None:
        mask = torch.ones(graph.num_nodes, dtype=torch.bool, device=graph.y.device)
    predictions = model(graph.x, graph.edge_index).argmax(1)
    correct = (predictions[mask] == graph.y[mask]).sum().item()
    return correct / max(int(mask.sum()), 1)


def save_checkpoint(model: nn.Module, path: str | PathLike) -> Path:
    """Write the model's ``state_dict`` to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    logger.info("saved checkpoint %s", path)
    return path


def load_checkpoint(model: nn.Module, path: str | PathLike) -> nn.Module:
    """Load a ``state_dict`` file into ``model`` with ``weights_only=True``."""
    state = torch.load(Path(path), weights_only=True, map_location="cpu")
    model.load_state_dict(state)
    return model
