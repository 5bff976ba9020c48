"""A plain, seeded training loop that applies a scheme's train-time rule.

:func:`fit` attaches the scheme to the model (so training draws gates and
``eval()`` uses the scheme's inference rule), trains with SGD and Nesterov
momentum, and can save a checkpoint (a ``state_dict`` file) after training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

__all__ = ["History", "accuracy_on", "fit", "load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)


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
    train: Dataset,
    *,
    test: Dataset | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint: str | PathLike | None = None,
    progress: bool = True,
) -> History:
    """Train a gated model with a scheme's train-time rule.

    SGD with Nesterov momentum and a cosine learning-rate schedule over all
    steps. The data order and every gate draw follow ``seed``.

    Args:
        model: A :class:`~layershare.nn.GatedModel`; its ``scheme`` is set to
            ``scheme``.
        scheme: The sampling scheme, or ``None`` to train the plain network.
        train: Training set of ``(input, label)`` pairs.
        test: Optional test set, evaluated after each epoch (default: ``None``).
        epochs: Passes over the training set (default: 10).
        batch_size: Mini-batch size (default: 64).
        lr: Initial learning rate (default: 0.05).
        momentum: Nesterov momentum (default: 0.9).
        weight_decay: L2 penalty (default: 5e-4).
        seed: Seed for data order and gate draws (default: 0).
        device: Where to train (default: the model's device).
        checkpoint: Path of a ``state_dict`` file written after training
            (default: ``None``).
        progress: Show a tqdm progress bar; it is also hidden when stderr is
            not a terminal (default: ``True``).

    Returns:
        The :class:`History` of the run.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, but got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, but got {lr!r}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to(device)
    model.scheme = scheme

    torch.manual_seed(seed)
    loader = DataLoader(
        train,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(train) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=momentum,
        nesterov=True,
        weight_decay=weight_decay,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, epochs * len(loader)
    )
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    bar = tqdm(
        range(epochs), desc="training", disable=not progress or None, unit="epoch"
    )
    for epoch in bar:
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        history.loss.append(total_loss / seen)
        history.train_accuracy.append(correct / seen)
        status = {"loss": f"{history.loss[-1]:.3f}"}
        if test is not None:
            history.test_accuracy.append(accuracy_on(model, test, device=device))
            status["test"] = f"{history.test_accuracy[-1]:.3f}"
        bar.set_postfix(status)
        logger.debug("epoch %d: %s", epoch, status)
    model.eval()
    if checkpoint is not None:
        save_checkpoint(model, checkpoint)
    return history


@torch.no_grad()
def accuracy_on(
    model: nn.Module, data: Dataset, *, batch_size: int = 1024, device=None
) -> float:
    """Return the eval-mode accuracy (the inference rule) of a model on a dataset."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    correct, seen = 0, 0
    for x, y in DataLoader(data, batch_size=batch_size):
        correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
        seen += len(y)
    model.train(was_training)
    return correct / max(seen, 1)


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
