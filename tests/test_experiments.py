"""The experiment registry builds every spec's data, model and scheme."""

from __future__ import annotations

import pytest
import torch

import layershare as ls
from layershare.experiments import (
    MODELS,
    PARAMETER_NAMES,
    build_model,
    build_scheme,
    collect_parameters,
    load_task,
    train_model,
)
from layershare.specs import list_specs, spec_names


@pytest.mark.parametrize("name", spec_names())
def test_spec_names_known_parameters(name):
    spec = next(s for s in list_specs() if s.name == name)
    unknown = sorted(set(spec.parameters) - PARAMETER_NAMES)
    assert unknown == []


@pytest.mark.parametrize("name", spec_names())
def test_spec_notebook_exists(name):
    spec = next(s for s in list_specs() if s.name == name)
    assert spec.notebook_path().is_file()


@pytest.mark.parametrize("name", spec_names())
def test_spec_model_runs_on_its_data(name):
    params = next(s for s in list_specs() if s.name == name).parameters
    task = load_task(params)
    model = build_model(params, task)
    model.scheme = build_scheme(params)
    model.eval()
    logits = task.full_logits(model)
    assert logits.shape == (len(task.labels), task.num_classes)
    assert torch.isfinite(logits).all()


def test_every_model_has_a_spec():
    models = {s.parameters["model"] for s in list_specs()}
    assert sorted(set(MODELS) - models) == []


def test_collect_parameters_keeps_known_names():
    namespace = {"blocks": 3, "epochs": 1, "plt": object(), "_": None}
    assert collect_parameters(namespace) == {"blocks": 3, "epochs": 1}


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match="unknown model 'VGG'"):
        load_task({"model": "VGG"})


def test_unknown_scheme_rejected():
    with pytest.raises(ValueError, match="unknown scheme 'dropout'"):
        build_scheme({"scheme": "dropout"})


@pytest.mark.parametrize("name", spec_names())
def test_spec_members_match_evaluate(name):
    params = next(s for s in list_specs() if s.name == name).parameters
    task = load_task(params)
    model = build_model(params, task)
    scheme = build_scheme(params)
    model.scheme = scheme
    model.eval()
    sampler = ls.Sampler(model, scheme if scheme is not None else ls.StochasticDepth())
    members = sampler.sample(3, seed=1)
    inputs = task.inputs if task.node_mask is not None else task.inputs[:5]
    out = ls.evaluate(model, members, inputs, extra_inputs=task.extra_inputs)
    for i, member in enumerate(members):
        with torch.no_grad():
            if task.node_mask is None:
                expected = model(inputs, member=member)
            else:
                expected = model(inputs[0], *task.extra_inputs, member=member)[None]
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)


# Epochs at which each spec's accuracy floor must already hold; the specs
# themselves train longer.
TEST_EPOCHS = {
    "fractalnet-drop-path-digits": 6,
    "hmrnn-none-digits": 5,
    "lowrankgru-none-digits": 5,
    "lowrankhighway-stochastic-depth-digits": 6,
    "residualmlp-stochastic-depth-digits": 4,
    "resnet-stochastic-depth-digits": 8,
    "tiedgcn-drop-path-karate": 60,
    "tiedresnet-stochastic-depth-digits": 6,
    "zoneoutlstm-zoneout-digits": 6,
}


def test_every_spec_has_test_epochs():
    assert sorted(TEST_EPOCHS) == spec_names()


@pytest.mark.parametrize("name", sorted(TEST_EPOCHS))
def test_spec_reaches_accuracy_floor(name):
    params = dict(next(s for s in list_specs() if s.name == name).parameters)
    params["epochs"] = TEST_EPOCHS[name]
    task = load_task(params)
    model = build_model(params, task)
    train_model(model, build_scheme(params), task, params, progress=False)
    accuracy = ls.metrics.accuracy(task.full_logits(model), task.labels).item()
    assert accuracy >= params["expected_min_accuracy"]
