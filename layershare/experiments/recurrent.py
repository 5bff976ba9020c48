"""The recurrent-model experiment: train, then inspect what replaces edge gates.

The recurrent models of the zoo (:class:`~layershare.models.HMRNN`,
:class:`~layershare.models.LowRankGRUClassifier`,
:class:`~layershare.models.ZoneoutClassifier`) keep their time loop inside one
graph node, so their graph has no edge gates and an implicit ensemble of one
member. :func:`run_recurrent` trains such a model and reports, next to its
accuracy, what each model has instead:

* a low-rank model's parameter counts against its full-rank equivalent
  (Miceli Barone 2016, arXiv 1603.03116), from its ``parameter_counts()``;
* the boundaries an HM-RNN detects and the rate at which each layer ends a
  segment (Chung, Ahn and Bengio 2016, arXiv 1609.01704);
* the accuracy of a zoneout model under three inference rules: the expectation
  of the masks (eval mode), no zoneout, and the mean softmax of seeded mask
  draws (Krueger et al. 2016, arXiv 1606.01305).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from layershare.experiments.registry import (
    Task,
    build_model,
    build_scheme,
    load_task,
    train_model,
)
from layershare.metrics import accuracy, ensemble_probabilities
from layershare.nn.zoneout import Zoneout
from layershare.train import History

__all__ = ["RecurrentRun", "run_recurrent"]

logger = logging.getLogger(__name__)


@dataclass
class RecurrentRun:
    """Everything the recurrent-model report shows, computed in one run.

    Attributes:
        model: The trained model, in eval mode.
        history: The training history.
        curves: The history in long form, one row per epoch and quantity, with
            columns ``epoch`` (from 1), ``quantity`` (``"training loss"``,
            ``"train accuracy"`` or ``"test accuracy"``) and ``value``.
        accuracy: Test accuracy of the eval model.
        logits: Test logits of the eval model ``[N, C]``.
        labels: Test labels ``[N]``.
        confusion: Counts ``[C, C]``; entry ``[i, j]`` counts test samples of
            class ``i`` predicted as class ``j``.
        parameters: For a model with ``parameter_counts()``, one row per layer
            with columns ``layer`` (counted from 1), ``rank``, ``parameters``,
            ``full_rank_parameters`` and ``ratio`` (parameters over full-rank
            parameters). For any other model, one row per child module with
            columns ``module``, ``type`` and ``parameters``.
        boundaries: HM-RNN boundaries on a few test sequences ``[S, T, L - 1]``,
            each 0 or 1, or ``None`` for a model without boundary detectors.
        boundary_inputs: Those sequences ``[S, T, input_size]``, or ``None``.
        boundary_labels: Their labels ``[S]``, or ``None``.
        boundary_rate: Fraction of test steps at which each layer with a
            detector ends a segment ``[L - 1]``, or ``None``.
        zoneout: For a model with zoneout cells, one row per inference rule
            with columns ``inference``, ``z_cell``, ``z_hidden`` and
            ``test accuracy``, else ``None``. A GRU has no cell state, so its
            ``z_cell`` is NaN.
        skipped: Analyses that did not apply to the model, keyed by
            ``"low_rank"``, ``"boundaries"``, ``"zoneout"`` or
            ``"stochastic"``, each with the reason as a sentence.
    """

    model: nn.Module
    history: History
    curves: pd.DataFrame
    accuracy: float
    logits: Tensor
    labels: Tensor
    confusion: Tensor
    parameters: pd.DataFrame
    boundaries: Tensor | None = None
    boundary_inputs: Tensor | None = None
    boundary_labels: Tensor | None = None
    boundary_rate: Tensor | None = None
    zoneout: pd.DataFrame | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def boundary_frame(self) -> pd.DataFrame:
        """Stack each kept sequence's input and boundaries into heatmap rows.

        Returns:
            One row per sequence and signal, one column per time step. The
            rows of a sequence with label ``y`` are ``"label y: input"`` (the
            input features' mean at each step, the pixel for the digits
            sequences) and ``"label y: layer l"`` for each layer ``l`` with a
            detector, counted from 1.

        Raises:
            ValueError: When the run has no boundaries.
        """
        if self.boundaries is None:
            raise ValueError(
                f"the run has no boundaries because "
                f"{self.skipped.get('boundaries', 'none were recorded')}"
            )
        rows, names = [], []
        sequences = zip(
            self.boundary_inputs, self.boundaries, self.boundary_labels, strict=True
        )
        for inputs, marks, label in sequences:
            rows.append(inputs.mean(dim=-1))
            names.append(f"label {int(label)}: input")
            for layer in range(marks.shape[-1]):
                rows.append(marks[:, layer])
                names.append(f"label {int(label)}: layer {layer + 1}")
        return pd.DataFrame(torch.stack(rows).numpy(), index=names)


def run_recurrent(
    params: Mapping[str, Any],
    *,
    boundary_sequences: int = 4,
    zoneout_draws: int = 10,
    progress: bool = True,
) -> RecurrentRun:
    """Train a recurrent model and run the analyses that apply to it.

    Every analysis leaves the trained model as it was: zoneout rates and
    training flags changed for an evaluation are restored afterwards, and the
    seeded mask draws do not advance torch's global random number generator.

    Args:
        params: Report parameters: ``model`` and its arguments (such as
            ``hidden_size``, ``hidden_sizes``, ``ranks``), ``scheme`` and its
            rates, ``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
            ``optimizer``, ``max_grad_norm``, ``seed`` and ``test_fraction``.
        boundary_sequences: Test sequences whose HM-RNN boundaries are kept,
            the first test sequence of each class in class order (default: 4).
        zoneout_draws: Zoneout mask draws averaged for stochastic inference
            (default: 10).
        progress: Show a progress bar while training (default: ``True``).

    Returns:
        A :class:`RecurrentRun`.

    Raises:
        ValueError: When ``boundary_sequences`` or ``zoneout_draws`` is not a
            positive int, or the parameters name an unknown model or scheme.
    """
    _check_positive("boundary_sequences", boundary_sequences)
    _check_positive("zoneout_draws", zoneout_draws)

    task = load_task(params)
    model = build_model(params, task)
    scheme = build_scheme(params)
    history = train_model(model, scheme, task, params, progress=progress)
    model.eval()

    logits = task.full_logits(model)
    num_classes = logits.shape[-1]
    run = RecurrentRun(
        model=model,
        history=history,
        curves=_curves(history),
        accuracy=float(accuracy(logits, task.labels)),
        logits=logits,
        labels=task.labels,
        confusion=_confusion(logits.argmax(-1), task.labels, num_classes),
        parameters=_parameter_table(model),
    )
    name = type(model).__name__
    if not hasattr(model, "parameter_counts"):
        run.skipped["low_rank"] = (
            f"{name} has no low-rank maps, so the table counts the parameters "
            f"of each child module."
        )
    _add_boundaries(run, task, boundary_sequences)
    _add_zoneout(run, task, zoneout_draws, params.get("seed", 0))
    logger.info("%s reached test accuracy %.4f", name, run.accuracy)
    return run


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, but got {value!r}")


def _curves(history: History) -> pd.DataFrame:
    """Turn a training history into long form, one row per epoch and quantity."""
    series = {
        "training loss": history.loss,
        "train accuracy": history.train_accuracy,
        "test accuracy": history.test_accuracy,
    }
    rows = [
        {"epoch": epoch, "quantity": quantity, "value": value}
        for quantity, values in series.items()
        for epoch, value in enumerate(values, start=1)
    ]
    return pd.DataFrame(rows, columns=["epoch", "quantity", "value"])


def _confusion(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Count (label, prediction) pairs into a ``[C, C]`` matrix."""
    pairs = labels.long() * num_classes + predictions.long()
    counts = torch.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _parameter_table(model: nn.Module) -> pd.DataFrame:
    """Tabulate low-rank layers against full rank, else each child's parameters."""
    if hasattr(model, "parameter_counts"):
        table = pd.DataFrame(model.parameter_counts())
        table["layer"] += 1
        table["ratio"] = table["parameters"] / table["full_rank_parameters"]
        return table
    rows = [
        {
            "module": child_name,
            "type": type(child).__name__,
            "parameters": sum(p.numel() for p in child.parameters()),
        }
        for child_name, child in model.named_children()
    ]
    return pd.DataFrame(rows, columns=["module", "type", "parameters"])


def _first_of_each_class(labels: Tensor, count: int) -> Tensor:
    """Return the index of each class's first sample, in class order, up to count."""
    indices = [int(torch.nonzero(labels == c)[0]) for c in labels.unique()]
    return torch.tensor(indices[:count], dtype=torch.long)


def _add_boundaries(run: RecurrentRun, task: Task, sequences: int) -> None:
    """Record an HM-RNN's boundaries on a few test sequences and its rates."""
    model = run.model
    if not hasattr(model, "boundaries"):
        run.skipped["boundaries"] = (
            f"{type(model).__name__} has no boundary detectors "
            f"(no `boundaries` method), so there are no segments to show."
        )
        return

    picked = _first_of_each_class(task.labels, sequences)
    run.boundary_inputs = task.inputs[picked]
    run.boundary_labels = task.labels[picked]
    run.boundaries = model.boundaries(run.boundary_inputs)
    run.boundary_rate = model.boundaries(task.inputs).mean(dim=(0, 1))


def _zoneout_cells(model: nn.Module) -> list[nn.Module]:
    """Return the modules whose class declares ``layershare_zoneout = True``."""
    return [m for m in model.modules() if getattr(type(m), "layershare_zoneout", False)]


def _rates(cell: nn.Module) -> tuple[float | None, float]:
    """Return a cell's ``(z_cell, z_hidden)``; ``z_cell`` is ``None`` for a GRU."""
    return getattr(cell, "z_cell", None), cell.z_hidden


@contextmanager
def _zoneout_off(cells: Sequence[nn.Module], model: nn.Module) -> Iterator[None]:
    """Set every zoneout rate to 0 for the block, then restore each cell's rates."""
    saved = [_rates(cell) for cell in cells]
    Zoneout(0.0, 0.0).configure(model)
    try:
        yield
    finally:
        for cell, (z_cell, z_hidden) in zip(cells, saved, strict=True):
            cell.z_hidden = z_hidden
            if z_cell is not None:
                cell.z_cell = z_cell


@contextmanager
def _cells_training(cells: Sequence[nn.Module], seed: int) -> Iterator[None]:
    """Put only the zoneout cells in training mode, on a forked, seeded RNG."""
    modes = [cell.training for cell in cells]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for cell in cells:
            cell.train()
        try:
            yield
        finally:
            for cell, mode in zip(cells, modes, strict=True):
                cell.train(mode)


def _add_zoneout(run: RecurrentRun, task: Task, draws: int, seed: int) -> None:
    """Compare the expectation rule with no zoneout and with seeded mask draws."""
    model = run.model
    cells = _zoneout_cells(model)
    if not cells:
        run.skipped["zoneout"] = (
            f"{type(model).__name__} has no zoneout cells, so there is no "
            f"inference rule to compare."
        )
        return

    z_cell, z_hidden = _rates(cells[0])
    rows = [("expectation (eval)", z_cell, z_hidden, run.accuracy)]
    with _zoneout_off(cells, model):
        off = accuracy(task.full_logits(model), task.labels)
    rows.append(("zoneout off", 0.0 if z_cell is not None else None, 0.0, float(off)))

    # A draw equals the expectation when every rate is 0 or 1.
    rates = [rate for cell in cells for rate in _rates(cell) if rate is not None]
    if all(rate in (0.0, 1.0) for rate in rates):
        run.skipped["stochastic"] = (
            f"every zoneout rate is 0 or 1 ({rates}), so each mask draw equals "
            f"the expectation and stochastic inference adds nothing."
        )
    else:
        with _cells_training(cells, seed):
            sampled = torch.stack([task.full_logits(model) for _ in range(draws)])
        single = float(accuracy(sampled, task.labels).mean())
        mean = float(accuracy(ensemble_probabilities(sampled), task.labels))
        rows.append((f"one mask draw (mean of {draws})", z_cell, z_hidden, single))
        rows.append((f"mean softmax of {draws} mask draws", z_cell, z_hidden, mean))
    columns = ["inference", "z_cell", "z_hidden", "test accuracy"]
    # astype turns a GRU's missing z_cell into NaN.
    run.zoneout = pd.DataFrame(rows, columns=columns).astype({"z_cell": float})
