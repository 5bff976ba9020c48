"""run_recurrent on the three recurrent models, trained one epoch on tiny sizes."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from layershare.data import digits
from layershare.experiments import run_recurrent

# scikit-learn's 1797 digits with test_fraction 0.2: ceil(0.2 * 1797) test
# sequences of 64 one-pixel steps.
TEST_SIZE = 360
STEPS = 64
CLASSES = 10


def tiny(model: str, **extra) -> dict:
    """Return report parameters for one short, seeded epoch."""
    return {
        "model": model,
        "scheme": "none",
        "optimizer": "adam",
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.02,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "seed": 0,
        "test_fraction": 0.2,
        **extra,
    }


@pytest.fixture(scope="module")
def one_thread():
    """Train on one intra-op thread, which runs these small kernels faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lowrank(one_thread):
    params = tiny("LowRankGRUClassifier", hidden_size=8, ranks=[2, 1], diagonal=True)
    return run_recurrent(params, progress=False)


@pytest.fixture(scope="module")
def hmrnn(one_thread):
    params = tiny("HMRNN", hidden_sizes=[4, 4, 4], slope_rate=0.2)
    return run_recurrent(params, boundary_sequences=3, progress=False)


ZONEOUT = {"cell": "lstm", "hidden_size": 8, "z_cell": 0.5, "z_hidden": 0.05}


@pytest.fixture(scope="module")
def zoneout(one_thread):
    params = tiny("ZoneoutClassifier", scheme="zoneout", **ZONEOUT)
    return run_recurrent(params, zoneout_draws=4, progress=False)


@pytest.fixture(params=["lowrank", "hmrnn", "zoneout"])
def run(request):
    return request.getfixturevalue(request.param)


def test_run_shapes(run):
    assert run.logits.shape == (TEST_SIZE, CLASSES)
    assert run.labels.shape == (TEST_SIZE,)
    assert run.confusion.shape == (CLASSES, CLASSES)


def test_run_eval_mode(run):
    assert not run.model.training


def test_confusion_rows_count_labels(run):
    expected = torch.bincount(run.labels, minlength=CLASSES)

    assert torch.equal(run.confusion.sum(dim=1), expected)


def test_confusion_diagonal_is_accuracy(run):
    correct = int(run.confusion.diagonal().sum())

    assert correct / TEST_SIZE == pytest.approx(run.accuracy)


def test_accuracy_matches_logits(run):
    correct = (run.logits.argmax(dim=1) == run.labels).sum().item()

    assert run.accuracy == pytest.approx(correct / TEST_SIZE)


def test_curves_one_epoch(run):
    assert list(run.curves["epoch"]) == [1, 1, 1]
    assert set(run.curves["quantity"]) == {
        "training loss",
        "train accuracy",
        "test accuracy",
    }


def test_curves_last_test_accuracy(run):
    rows = run.curves[run.curves["quantity"] == "test accuracy"]

    assert rows["value"].iloc[-1] == pytest.approx(run.accuracy)


def test_lowrank_counts_by_hand(lowrank):
    # Layer 1 reads one pixel: W is Linear(1, 3 * 8), 24 weights + 24 biases.
    # Each of U_z, U_r, U_h at rank 2 has U [8, 2], V [2, 8] and d [8]: 40.
    # Layer 2 reads layer 1: Linear(8, 24) is 192 + 24; at rank 1 each U
    # has 8 + 8 + 8 = 24. Full rank, each U is an 8 x 8 matrix: 64.
    table = lowrank.parameters

    assert list(table["layer"]) == [1, 2]
    assert list(table["rank"]) == [2, 1]
    assert table["parameters"].iloc[0] == 48 + 3 * 40
    assert table["parameters"].iloc[1] == 216 + 3 * 24
    assert table["full_rank_parameters"].iloc[0] == 48 + 3 * 64
    assert table["full_rank_parameters"].iloc[1] == 216 + 3 * 64


def test_lowrank_ratio(lowrank):
    ratio = lowrank.parameters["ratio"]

    assert ratio.iloc[0] == pytest.approx(168 / 240)
    assert ratio.iloc[1] == pytest.approx(288 / 408)


def test_lowrank_skips(lowrank):
    assert "low_rank" not in lowrank.skipped
    assert "boundaries" in lowrank.skipped
    assert "zoneout" in lowrank.skipped
    assert lowrank.boundaries is None
    assert lowrank.zoneout is None


def test_child_table_for_hmrnn(hmrnn):
    table = hmrnn.parameters
    total = sum(p.numel() for p in hmrnn.model.parameters())

    assert list(table["module"]) == ["rnn", "output", "head"]
    assert table["parameters"].sum() == total


def test_hmrnn_boundary_shape(hmrnn):
    # Three layers: the two lower ones have boundary detectors.
    assert hmrnn.boundaries.shape == (3, STEPS, 2)
    assert hmrnn.boundary_rate.shape == (2,)


def test_hmrnn_boundaries_binary(hmrnn):
    marks = hmrnn.boundaries

    assert torch.all((marks == 0) | (marks == 1))


def test_hmrnn_boundary_rate_range(hmrnn):
    assert torch.all(hmrnn.boundary_rate >= 0)
    assert torch.all(hmrnn.boundary_rate <= 1)


def test_hmrnn_first_of_each_class(hmrnn):
    x, y = digits("sequences", test_fraction=0.2, seed=0).test.tensors
    first = [next(i for i in range(len(y)) if y[i] == c) for c in range(3)]

    assert hmrnn.boundary_labels.tolist() == [0, 1, 2]
    assert torch.equal(hmrnn.boundary_inputs, x[first])


def test_hmrnn_boundary_frame(hmrnn):
    frame = hmrnn.boundary_frame()

    # Per sequence: one input row and one row per detecting layer.
    assert frame.shape == (3 * 3, STEPS)
    assert list(frame.index[:3]) == [
        "label 0: input",
        "label 0: layer 1",
        "label 0: layer 2",
    ]


def test_boundary_frame_without_boundaries(lowrank):
    with pytest.raises(ValueError, match="no boundary detectors"):
        lowrank.boundary_frame()


def test_zoneout_table_rows(zoneout):
    table = zoneout.zoneout

    assert list(table["inference"]) == [
        "expectation (eval)",
        "zoneout off",
        "one mask draw (mean of 4)",
        "mean softmax of 4 mask draws",
    ]
    assert list(table["z_cell"]) == [0.5, 0.0, 0.5, 0.5]
    assert list(table["z_hidden"]) == [0.05, 0.0, 0.05, 0.05]


def test_zoneout_expectation_row(zoneout):
    assert zoneout.zoneout["test accuracy"].iloc[0] == zoneout.accuracy


def test_zoneout_rates_restored(zoneout):
    cell = zoneout.model.recurrence.cell

    assert cell.z_cell == 0.5
    assert cell.z_hidden == 0.05
    assert not cell.training


def zoneout_copy(run, z_cell: float, z_hidden: float):
    """Return a copy of the trained model with the cell's rates replaced."""
    model = copy.deepcopy(run.model)
    model.recurrence.cell.z_cell = z_cell
    model.recurrence.cell.z_hidden = z_hidden
    return model


def test_zoneout_off_by_hand(zoneout):
    x, y = digits("sequences", test_fraction=0.2, seed=0).test.tensors
    model = zoneout_copy(zoneout, 0.0, 0.0)
    with torch.no_grad():
        expected = (model(x).argmax(dim=1) == y).double().mean().item()

    assert zoneout.zoneout["test accuracy"].iloc[1] == pytest.approx(expected)


def test_zoneout_draws_by_hand(zoneout):
    # Four draws after torch.manual_seed(seed), the softmax averaged.
    x, y = digits("sequences", test_fraction=0.2, seed=0).test.tensors
    model = zoneout_copy(zoneout, 0.5, 0.05)
    model.recurrence.cell.train()
    torch.manual_seed(0)
    with torch.no_grad():
        probabilities = [torch.softmax(model(x), dim=1) for _ in range(4)]
    single = [(p.argmax(dim=1) == y).double().mean().item() for p in probabilities]
    mean = torch.stack(probabilities).mean(dim=0)
    expected = (mean.argmax(dim=1) == y).double().mean().item()

    assert zoneout.zoneout["test accuracy"].iloc[2] == pytest.approx(sum(single) / 4)
    assert zoneout.zoneout["test accuracy"].iloc[3] == pytest.approx(expected)


def test_zoneout_skips(zoneout):
    assert "boundaries" in zoneout.skipped
    assert "zoneout" not in zoneout.skipped
    assert "stochastic" not in zoneout.skipped


def test_zoneout_gru_has_no_cell_rate(one_thread):
    params = tiny("ZoneoutClassifier", scheme="zoneout", cell="gru", hidden_size=4)
    run = run_recurrent(params, zoneout_draws=2, progress=False)

    assert math.isnan(run.zoneout["z_cell"].iloc[0])
    assert run.zoneout["z_hidden"].iloc[0] == 0.05


def test_zero_rates_skip_draws(one_thread):
    params = tiny("ZoneoutClassifier", cell="lstm", hidden_size=4)
    run = run_recurrent(params, progress=False)

    assert "stochastic" in run.skipped
    assert len(run.zoneout) == 2


def test_global_rng_untouched_by_draws(one_thread):
    # The mask draws use a forked generator, so the global stream after a
    # run does not depend on the number of draws.
    params = tiny("ZoneoutClassifier", scheme="zoneout", **ZONEOUT)
    run_recurrent(params, zoneout_draws=1, progress=False)
    after_one = torch.rand(3)
    run_recurrent(params, zoneout_draws=5, progress=False)
    after_five = torch.rand(3)

    assert torch.equal(after_one, after_five)


@pytest.mark.parametrize("name", ["boundary_sequences", "zoneout_draws"])
@pytest.mark.parametrize("value", [0, 1.5, True])
def test_invalid_counts(name, value):
    params = tiny("HMRNN", hidden_sizes=[4, 4])

    with pytest.raises(ValueError, match=name):
        run_recurrent(params, **{name: value}, progress=False)
