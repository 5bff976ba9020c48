"""Names that specs and notebooks use for models, schemes and data.

A spec's ``[parameters]`` table names a ``model`` and a ``scheme`` from the
tables below and gives their arguments; :func:`collect_parameters` picks the
known names out of a notebook's namespace, so the parameters papermill
injects reach the experiment whatever the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from layershare import models
from layershare.data import digits, karate_club
from layershare.nn.zoneout import Zoneout
from layershare.schemes import DropPath, Scheme, StochasticDepth
from layershare.swapout import Swapout
from layershare.train import History, fit

__all__ = [
    "MODELS",
    "PARAMETER_NAMES",
    "SCHEMES",
    "Task",
    "build_model",
    "build_scheme",
    "check_parameters",
    "collect_parameters",
    "load_task",
    "train_model",
]

Params = Mapping[str, Any]


@dataclass
class Task:
    """Data of one experiment, in the forms training and evaluation need.

    Attributes:
        train: What :func:`~layershare.train.fit` trains on (a dataset or a
            torch_geometric graph).
        test: What ``fit`` reports test accuracy on.
        inputs: The first input of ``ls.evaluate``: test inputs ``[N, *]``, or
            a graph's node features with a leading batch dimension.
        labels: Test labels ``[N]``.
        extra_inputs: Further forward inputs, such as ``edge_index``.
        node_mask: For node classification, the test nodes among the outputs.
        bn_data: Training inputs for batch-norm re-estimation, or ``None``.
        input_shape: Shape of one input, without the batch dimension.
        num_classes: Number of classes.
    """

    train: Any
    test: Any
    inputs: Tensor
    labels: Tensor
    extra_inputs: tuple[Tensor, ...] = ()
    node_mask: Tensor | None = None
    bn_data: Tensor | None = None
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0

    def select(self, outputs: Tensor) -> Tensor:
        """Reduce ``ls.evaluate`` outputs to ``[M, N, C]`` over the test samples."""
        if self.node_mask is None:
            return outputs
        return outputs[:, 0, self.node_mask]

    def full_logits(self, model: nn.Module) -> Tensor:
        """Return the eval model's test logits ``[N, C]``."""
        with torch.no_grad():
            if self.node_mask is None:
                return model(self.inputs)
            return model(self.inputs[0], *self.extra_inputs)[self.node_mask]


def _digits_task(kind: str, params: Params) -> Task:
    split = digits(
        kind, test_fraction=params.get("test_fraction", 0.2), seed=params.get("seed", 0)
    )
    x, y = split.test.tensors
    return Task(
        train=split.train,
        test=split.test,
        inputs=x,
        labels=y,
        bn_data=split.train.tensors[0],
        input_shape=split.input_shape,
        num_classes=split.num_classes,
    )


def _karate_task(params: Params) -> Task:
    graph = karate_club(
        train_per_class=params.get("train_per_class", 2), seed=params.get("seed", 0)
    )
    return Task(
        train=graph,
        test=graph,
        inputs=graph.x[None],
        labels=graph.y[graph.test_mask],
        extra_inputs=(graph.edge_index,),
        node_mask=graph.test_mask,
        input_shape=(graph.num_features,),
        num_classes=int(graph.y.max()) + 1,
    )


@dataclass(frozen=True)
class ModelEntry:
    """Registry entry of a model: its data kind, builder and spec parameters."""

    data: str
    build: Callable[[Params, Task], nn.Module]
    parameters: tuple[str, ...] = field(default=())


def _seq(p: Params, key: str, default: Any) -> tuple:
    return tuple(p.get(key, default))


#: Model name -> data kind ("images", "flat", "sequences" or "karate") and builder.
MODELS: dict[str, ModelEntry] = {
    "ResNet": ModelEntry(
        "images",
        lambda p, t: models.ResNet(
            blocks=p["blocks"],
            width=p["width"],
            in_channels=t.input_shape[0],
            num_classes=t.num_classes,
        ),
        ("blocks", "width"),
    ),
    "ResidualMLP": ModelEntry(
        "flat",
        lambda p, t: models.ResidualMLP(
            in_features=t.input_shape[0],
            width=p["width"],
            blocks=p["blocks"],
            num_classes=t.num_classes,
        ),
        ("blocks", "width"),
    ),
    "FractalNet": ModelEntry(
        "images",
        lambda p, t: models.FractalNet(
            columns=p["columns"],
            blocks=p["blocks"],
            width=p["width"],
            in_channels=t.input_shape[0],
            num_classes=t.num_classes,
        ),
        ("columns", "blocks", "width"),
    ),
    "TiedResNet": ModelEntry(
        "images",
        lambda p, t: models.TiedResNet(
            steps=p["steps"],
            width=p["width"],
            in_channels=t.input_shape[0],
            num_classes=t.num_classes,
            tie_weights=p.get("tie_weights", True),
            tie_bn=p.get("tie_bn", False),
        ),
        ("steps", "width", "tie_weights", "tie_bn"),
    ),
    "LowRankHighwayNet": ModelEntry(
        "flat",
        lambda p, t: models.LowRankHighwayNet(
            in_features=t.input_shape[0],
            width=p["width"],
            ranks=_seq(p, "ranks", (8, 8, 8, 8)),
            diagonal=p.get("diagonal", True),
            num_classes=t.num_classes,
        ),
        ("width", "ranks", "diagonal"),
    ),
    "LowRankGRUClassifier": ModelEntry(
        "sequences",
        lambda p, t: models.LowRankGRUClassifier(
            input_size=t.input_shape[-1],
            hidden_size=p["hidden_size"],
            ranks=_seq(p, "ranks", (8,)),
            diagonal=p.get("diagonal", True),
            num_classes=t.num_classes,
        ),
        ("hidden_size", "ranks", "diagonal"),
    ),
    "ZoneoutClassifier": ModelEntry(
        "sequences",
        lambda p, t: models.ZoneoutClassifier(
            cell=p.get("cell", "lstm"),
            input_size=t.input_shape[-1],
            hidden_size=p["hidden_size"],
            num_classes=t.num_classes,
        ),
        ("cell", "hidden_size"),
    ),
    "HMRNN": ModelEntry(
        "sequences",
        lambda p, t: models.HMRNN(
            input_size=t.input_shape[-1],
            hidden_sizes=_seq(p, "hidden_sizes", (64, 64)),
            num_classes=t.num_classes,
            slope_rate=p.get("slope_rate", 0.04),
        ),
        ("hidden_sizes", "slope_rate"),
    ),
    "TiedGCN": ModelEntry(
        "karate",
        lambda p, t: models.TiedGCN(
            in_channels=t.input_shape[0],
            hidden=p["hidden"],
            layers=p["layers"],
            num_classes=t.num_classes,
            tie_weights=p.get("tie_weights", True),
        ),
        ("hidden", "layers", "tie_weights"),
    ),
}

#: Scheme name -> builder taking the parameters.
SCHEMES: dict[str, Callable[[Params], Scheme | None]] = {
    "stochastic_depth": lambda p: StochasticDepth(
        p_last=p.get("p_last", 0.5),
        rule=p.get("rule", "linear"),
        scale=p.get("scale", "test"),
        granularity=p.get("granularity", "batch"),
    ),
    "drop_path": lambda p: DropPath(
        local=p.get("local", 0.15),
        global_ratio=p.get("global_ratio", 0.0),
        granularity=p.get("granularity", "batch"),
    ),
    "swapout": lambda p: Swapout(
        theta1=p.get("theta1", 0.5),
        theta2=p.get("theta2", 0.5),
        schedule=p.get("schedule", "constant"),
        granularity=p.get("granularity", "batch"),
    ),
    "zoneout": lambda p: Zoneout(p.get("z_cell", 0.5), p.get("z_hidden", 0.05)),
    "none": lambda p: None,
}

_SCHEME_PARAMETERS = ("p_last", "rule", "scale", "granularity", "local", "global_ratio")
_SCHEME_PARAMETERS += ("theta1", "theta2", "schedule", "z_cell", "z_hidden")
_TRAINING_PARAMETERS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "seed",
    "optimizer",
)
_TRAINING_PARAMETERS += ("max_grad_norm", "test_fraction", "train_per_class")
_ANALYSIS_PARAMETERS = ("sample_members", "max_members", "expected_min_accuracy")
_ANALYSIS_PARAMETERS += ("recalibrate_bn", "bn_batches")

#: Every parameter name a spec may set.
PARAMETER_NAMES: frozenset[str] = frozenset(
    ("model", "scheme")
    + _SCHEME_PARAMETERS
    + _TRAINING_PARAMETERS
    + _ANALYSIS_PARAMETERS
    + tuple(name for entry in MODELS.values() for name in entry.parameters)
)


def collect_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the known parameter names out of a namespace (a notebook's globals)."""
    return {
        name: namespace[name] for name in sorted(PARAMETER_NAMES) if name in namespace
    }


def _lookup(table: Mapping[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(table)}")
    return table[name]


def load_task(params: Params) -> Task:
    """Load the data the parameters' model needs (nothing is downloaded)."""
    entry = _lookup(MODELS, "model", params["model"])
    if entry.data == "karate":
        return _karate_task(params)
    return _digits_task(entry.data, params)


def build_model(params: Params, task: Task) -> nn.Module:
    """Build the model named by ``params["model"]`` for a task, seeded."""
    entry = _lookup(MODELS, "model", params["model"])
    missing = [
        name for name in entry.parameters if name not in params and name in _REQUIRED
    ]
    if missing:
        raise ValueError(f"model {params['model']!r} needs the parameters {missing}")
    torch.manual_seed(params.get("seed", 0))
    return entry.build(params, task)


_REQUIRED = frozenset(
    ("blocks", "width", "columns", "steps", "hidden_size", "hidden", "layers")
)


def build_scheme(params: Params) -> Scheme | None:
    """Build the scheme named by ``params["scheme"]`` (``"none"`` gives ``None``)."""
    return _lookup(SCHEMES, "scheme", params.get("scheme", "none"))(params)


def check_parameters(params: Params) -> None:
    """Check the model, scheme and data parameters of an experiment without training.

    Loads the data and builds the model and the scheme, so each constructor
    checks its own arguments. Each step takes well under a second for the
    digits and karate club data. The global torch random state is restored.

    Raises:
        ValueError: If ``model`` is missing or unknown, ``scheme`` is
            unknown, or the data, model or scheme constructor rejects a value.
        TypeError: If a constructor rejects the type of a value.
    """
    if "model" not in params:
        raise ValueError(
            f"missing parameter 'model'. Set it to one of: {', '.join(sorted(MODELS))}"
        )
    model = params["model"]
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(
            f"invalid parameter 'model': unknown model {model!r}. "
            f"Choose one of: {', '.join(sorted(MODELS))}"
        )
    scheme = params.get("scheme", "none")
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(
            f"invalid parameter 'scheme': unknown scheme {scheme!r}. "
            f"Choose one of: {', '.join(sorted(SCHEMES))}"
        )

    _check_run_parameters(params)
    with torch.random.fork_rng(devices=[]):
        try:
            task = load_task(params)
        except (ValueError, TypeError) as error:
            raise _with_context(
                error, f"invalid data parameter for model {model!r}"
            ) from error
        try:
            build_model(params, task)
        except (ValueError, TypeError) as error:
            raise _with_context(
                error, f"invalid parameter for model {model!r}"
            ) from error
        try:
            build_scheme(params)
        except (ValueError, TypeError) as error:
            raise _with_context(
                error, f"invalid parameter for scheme {scheme!r}"
            ) from error


#: Training and analysis parameters: name -> (type, lowest value, whether the
#: lowest value is allowed, highest allowed value or None).
_RUN_LIMITS: dict[str, tuple[type, float, bool, float | None]] = {
    "epochs": (int, 1, True, None),
    "batch_size": (int, 1, True, None),
    "lr": (float, 0.0, False, None),
    "weight_decay": (float, 0.0, True, None),
    "max_grad_norm": (float, 0.0, False, None),
    "seed": (int, 0, True, 2**32 - 1),
    "sample_members": (int, 1, True, None),
    "max_members": (int, 1, True, None),
    "bn_batches": (int, 1, True, None),
    "expected_min_accuracy": (float, 0.0, True, 1.0),
}


def _check_run_parameters(params: Params) -> None:
    """Reject training and analysis values that no run could use."""
    for name, (kind, low, low_allowed, high) in _RUN_LIMITS.items():
        value = params.get(name)
        if value is None:
            continue
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and not isinstance(value, int)):
            raise ValueError(
                f"invalid parameter {name!r}: expected {kind.__name__}, but got "
                f"{value!r}"
            )
        too_low = value < low or (value == low and not low_allowed)
        if too_low or (high is not None and value > high):
            bound = f">= {low}" if low_allowed else f"> {low}"
            if high is not None:
                bound += f" and <= {high}"
            raise ValueError(
                f"invalid parameter {name!r}: must be {bound}, but got {value!r}"
            )


def _with_context(error: Exception, context: str) -> Exception:
    """Return a ValueError or TypeError, as ``error`` is, prefixed with ``context``."""
    kind = TypeError if isinstance(error, TypeError) else ValueError
    return kind(f"{context}: {error}")


def train_model(
    model: nn.Module,
    scheme: Scheme | None,
    task: Task,
    params: Params,
    *,
    progress: bool = True,
) -> History:
    """Train with :func:`~layershare.train.fit` and the spec's training parameters."""
    return fit(
        model,
        scheme,
        task.train,
        test=task.test,
        epochs=params["epochs"],
        batch_size=params.get("batch_size", 64),
        lr=params.get("lr", 0.05),
        weight_decay=params.get("weight_decay", 5e-4),
        seed=params.get("seed", 0),
        optimizer=params.get("optimizer", "sgd"),
        max_grad_norm=params.get("max_grad_norm"),
        progress=progress,
    )
