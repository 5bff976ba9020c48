"""Tests of experiment specs: loading, overrides and errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from layershare.specs import (
    Spec,
    SpecError,
    ensembles_dir,
    list_specs,
    load_spec,
    spec_names,
)

DEFAULT = "resnet-stochastic-depth-digits"


def write_spec(folder: Path, name: str, text: str) -> Path:
    """Write a spec file and return its path."""
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def small_spec(tmp_path):
    """Return the path of a valid spec with one parameter of each type."""
    return write_spec(
        tmp_path,
        "small",
        """
        [experiment]
        name = "small"
        notebook = "demo"
        description = "A small spec."

        [parameters]
        blocks = 3
        lr = 0.1
        augment = true
        model = "ResNet"
        widths = [8, 16]
        """,
    )


def test_load_default_by_name():
    spec = load_spec(DEFAULT)

    assert spec.name == DEFAULT
    assert spec.notebook == "implicit_ensemble"
    assert spec.path == ensembles_dir() / f"{DEFAULT}.toml"
    assert spec.description


def test_default_parameters():
    parameters = load_spec(DEFAULT).parameters

    assert parameters["model"] == "ResNet"
    assert parameters["blocks"] == 8
    assert parameters["scheme"] == "stochastic_depth"
    assert parameters["p_last"] == 0.5
    assert isinstance(parameters["lr"], float)
    assert isinstance(parameters["epochs"], int)


def test_load_by_path_matches_name():
    path = ensembles_dir() / f"{DEFAULT}.toml"

    assert load_spec(path) == load_spec(DEFAULT)
    assert load_spec(str(path)) == load_spec(DEFAULT)


def test_spec_names_lists_default():
    assert DEFAULT in spec_names()


def test_list_specs_reads_folder(small_spec):
    specs = list_specs(small_spec.parent)

    assert [spec.name for spec in specs] == ["small"]


def test_override_int_from_string(small_spec):
    spec = load_spec(small_spec).with_overrides({"blocks": "6"})

    assert spec.parameters["blocks"] == 6
    assert type(spec.parameters["blocks"]) is int


def test_override_float_from_string(small_spec):
    spec = load_spec(small_spec).with_overrides({"lr": "1"})

    assert spec.parameters["lr"] == 1.0
    assert type(spec.parameters["lr"]) is float


def test_override_float_from_int(small_spec):
    spec = load_spec(small_spec).with_overrides({"lr": 2})

    assert type(spec.parameters["lr"]) is float


@pytest.mark.parametrize(
    ("text", "expected"),
    [("false", False), ("False", False), ("0", False), ("true", True), ("yes", True)],
)
def test_override_bool_from_string(small_spec, text, expected):
    spec = load_spec(small_spec).with_overrides({"augment": text})

    assert spec.parameters["augment"] is expected


def test_override_string_kept(small_spec):
    spec = load_spec(small_spec).with_overrides({"model": "123"})

    assert spec.parameters["model"] == "123"


def test_override_list_from_string(small_spec):
    spec = load_spec(small_spec).with_overrides({"widths": "[4, 4, 8]"})

    assert spec.parameters["widths"] == [4, 4, 8]


def test_override_keeps_original(small_spec):
    spec = load_spec(small_spec)
    spec.with_overrides({"blocks": 5})

    assert spec.parameters["blocks"] == 3


def test_override_unknown_key(small_spec):
    with pytest.raises(SpecError, match="unknown parameter 'blockz'") as info:
        load_spec(small_spec).with_overrides({"blockz": "6"})

    assert "blocks, lr, model, widths" in str(info.value)
    assert str(small_spec) in str(info.value)
    assert info.value.key == "parameters.blockz"


@pytest.mark.parametrize(
    ("key", "value", "type_name"),
    [
        ("blocks", "abc", "an integer"),
        ("blocks", "6.5", "an integer"),
        ("blocks", True, "an integer"),
        ("lr", "fast", "a number"),
        ("augment", "maybe", "a boolean"),
        ("model", 3, "a string"),
        ("widths", "8", "a list"),
    ],
)
def test_override_wrong_type(small_spec, key, value, type_name):
    with pytest.raises(SpecError, match=f"'{key}' must be {type_name}") as info:
        load_spec(small_spec).with_overrides({key: value})

    assert repr(value) in str(info.value)
    assert info.value.key == f"parameters.{key}"


def test_spec_error_is_value_error():
    assert issubclass(SpecError, ValueError)


def test_missing_name_lists_available():
    with pytest.raises(SpecError, match="'no-such-spec' not found") as info:
        load_spec("no-such-spec")

    assert DEFAULT in str(info.value)


def test_missing_path(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "absent.toml")


def test_invalid_toml(tmp_path):
    path = write_spec(tmp_path, "broken", "[experiment\nname = 1\n")

    with pytest.raises(SpecError, match="invalid TOML") as info:
        load_spec(path)

    assert info.value.path == path


def test_missing_section(tmp_path):
    path = write_spec(tmp_path, "bare", '[experiment]\nname = "x"\nnotebook = "y"\n')

    with pytest.raises(SpecError, match=r"missing section \[parameters\]"):
        load_spec(path)


def test_unknown_section(tmp_path):
    path = write_spec(
        tmp_path,
        "extra",
        """
        [experiment]
        name = "x"
        notebook = "y"
        [parameters]
        [training]
        epochs = 3
        """,
    )

    with pytest.raises(SpecError, match="unknown section 'training'"):
        load_spec(path)


def test_missing_experiment_key(tmp_path):
    path = write_spec(tmp_path, "nameless", '[experiment]\nname = "x"\n[parameters]\n')

    with pytest.raises(SpecError, match="missing key 'notebook'") as info:
        load_spec(path)

    assert info.value.key == "experiment.notebook"


def test_nested_parameter_rejected(tmp_path):
    path = write_spec(
        tmp_path,
        "nested",
        """
        [experiment]
        name = "x"
        notebook = "y"
        [parameters]
        optimizer = { name = "sgd", lr = 0.1 }
        """,
    )

    with pytest.raises(SpecError, match="'optimizer' must be a boolean") as info:
        load_spec(path)

    assert info.value.key == "parameters.optimizer"


def test_notebook_path_beside_spec(tmp_path):
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "notebooks").mkdir()
    notebook = tmp_path / "notebooks" / "demo.ipynb"
    notebook.write_text("{}", encoding="utf-8")
    path = write_spec(
        tmp_path / "ensembles",
        "demo",
        '[experiment]\nname = "demo"\nnotebook = "demo"\n[parameters]\n',
    )

    assert load_spec(path).notebook_path() == notebook


def test_notebook_path_missing():
    spec = Spec(name="x", notebook="no_such_notebook")

    with pytest.raises(SpecError, match="'no_such_notebook' not found") as info:
        spec.notebook_path()

    assert info.value.key == "experiment.notebook"
