"""Tests of report execution: parameter checks, output folder and failed runs.

Only the tests marked slow start a kernel. The others replace
``papermill.execute_notebook``, so they check what run_report does around it.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from layershare.cli import main
from layershare.experiments.registry import check_parameters
from layershare.reports import OutputDirError, ReportError, run_report
from layershare.specs import SpecError, load_spec, spec_names

DEFAULT = "resnet-stochastic-depth-digits"


@pytest.fixture
def no_kernel(monkeypatch):
    """Make any papermill run fail the test, so a check must come first."""

    def execute_notebook(*args, **kwargs):
        pytest.fail("papermill started although the input is invalid")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def fake_papermill(monkeypatch, *, fail: bool, text: str = "new"):
    """Replace papermill with a function that writes a notebook with ``text``.

    With ``fail``, it raises PapermillExecutionError after writing, as
    papermill does when a cell raises.
    """

    def execute_notebook(input_path, output_path, **kwargs):
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["papermill"] = {"output_path": str(output_path)}
        notebook.cells = [nbformat.v4.new_markdown_cell(text)]
        nbformat.write(notebook, output_path)
        if fail:
            raise PapermillExecutionError(
                cell_index=0,
                exec_count=1,
                source="raise RuntimeError('boom')",
                ename="RuntimeError",
                evalue="boom",
                traceback=[],
            )

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def write_previous_report(folder):
    """Write a previous good report into ``folder`` and return its paths."""
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / "implicit-ensemble.ipynb"
    html = folder / "implicit-ensemble.html"
    notebook.write_text("previous notebook", encoding="utf-8")
    html.write_text("previous html", encoding="utf-8")
    return notebook, html


@pytest.mark.parametrize("name", spec_names())
def test_check_parameters_accepts_spec(name):
    check_parameters(load_spec(name).parameters)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("blocks", 0, "blocks must be a positive int, but got 0"),
        ("blocks", -3, "blocks must be a positive int, but got -3"),
        ("p_last", 1.5, "p_last must be between 0 and 1, but got 1.5"),
        ("scheme", "nonsense", "unknown scheme 'nonsense'"),
        ("model", "VGG", "unknown model 'VGG'"),
        ("model", [1], "unknown model [1]"),
        ("test_fraction", 1.5, "test_fraction must be strictly between 0 and 1"),
        ("epochs", 0, "'epochs': must be >= 1, but got 0"),
        ("lr", 0.0, "'lr': must be > 0.0, but got 0.0"),
        ("lr", -1.0, "'lr': must be > 0.0, but got -1.0"),
        ("batch_size", 0, "'batch_size': must be >= 1, but got 0"),
        ("weight_decay", -1.0, "'weight_decay': must be >= 0.0"),
        ("bn_batches", 0, "'bn_batches': must be >= 1"),
        ("sample_members", 0, "'sample_members': must be >= 1"),
        ("max_members", 0, "'max_members': must be >= 1"),
        ("expected_min_accuracy", 2.0, "must be >= 0.0 and <= 1.0, but got 2.0"),
        ("seed", -1, "'seed': must be >= 0 and <= 4294967295, but got -1"),
        ("epochs", 2.5, "'epochs': expected int, but got 2.5"),
    ],
)
def test_check_parameters_rejects(name, value, message):
    parameters = dict(load_spec(DEFAULT).parameters, **{name: value})

    with pytest.raises(ValueError) as info:
        check_parameters(parameters)

    assert message in str(info.value)


def test_check_parameters_names_model():
    parameters = dict(load_spec(DEFAULT).parameters, blocks=0)

    with pytest.raises(ValueError, match="invalid parameter for model 'ResNet'"):
        check_parameters(parameters)


def test_check_parameters_names_scheme():
    parameters = dict(load_spec(DEFAULT).parameters, p_last=1.5)

    with pytest.raises(ValueError, match="for scheme 'stochastic_depth'"):
        check_parameters(parameters)


def test_check_parameters_missing_model():
    with pytest.raises(ValueError, match="missing parameter 'model'"):
        check_parameters({"scheme": "none"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("blocks", "0", "blocks must be a positive int, but got 0"),
        ("blocks", "-3", "blocks must be a positive int, but got -3"),
        ("p_last", "1.5", "p_last must be between 0 and 1, but got 1.5"),
        ("scheme", "nonsense", "invalid parameter 'scheme': unknown scheme"),
        ("model", "VGG", "invalid parameter 'model': unknown model 'VGG'"),
        ("epochs", "-1", "invalid parameter 'epochs': must be >= 1, but got -1"),
        ("lr", "0", "invalid parameter 'lr': must be > 0.0, but got 0.0"),
    ],
)
def test_cli_rejects_before_kernel(no_kernel, tmp_path, capsys, name, value, message):
    status = main(["report", "-p", name, value, "-o", str(tmp_path / "out")])

    error = capsys.readouterr().err
    assert status == 2
    assert message in error
    assert "Traceback" not in error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_rejection_keeps_report(no_kernel, tmp_path, capsys):
    notebook, html = write_previous_report(tmp_path)

    status = main(["report", "-p", "blocks", "0", "-o", str(tmp_path)])

    assert status == 2
    assert notebook.read_text(encoding="utf-8") == "previous notebook"
    assert html.read_text(encoding="utf-8") == "previous html"
    assert sorted(os.listdir(tmp_path)) == [html.name, notebook.name]


def test_recurrent_spec_checked(no_kernel):
    with pytest.raises(SpecError, match="z_cell must be between 0 and 1"):
        run_report("zoneoutlstm-zoneout-digits", overrides={"z_cell": "2"})


def test_notebook_defaults_fill_spec(monkeypatch, tmp_path):
    # The model needs hidden_size, which the recurrent notebook's parameters
    # cell sets, so a spec without it is valid.
    fake_papermill(monkeypatch, fail=False)
    spec = load_spec("zoneoutlstm-zoneout-digits")
    parameters = dict(spec.parameters)
    del parameters["hidden_size"]
    spec = dataclasses.replace(spec, parameters=parameters)
    with pytest.raises(ValueError, match="needs the parameters"):
        check_parameters(parameters)

    paths = run_report(spec, output_dir=tmp_path, progress=False)

    assert paths.notebook.is_file()


def test_output_dir_is_file(no_kernel, tmp_path, capsys):
    existing = tmp_path / "report.txt"
    existing.write_text("", encoding="utf-8")

    status = main(["report", "-o", str(existing)])

    error = capsys.readouterr().err
    assert status == 2
    assert f"{existing} is an existing file, not a folder" in error
    assert "Traceback" not in error
    assert error.count("\n") == 1


def test_output_dir_under_file(no_kernel, tmp_path, capsys):
    existing = tmp_path / "report.txt"
    existing.write_text("", encoding="utf-8")

    status = main(["report", "-o", str(existing / "sub")])

    error = capsys.readouterr().err
    assert status == 2
    assert "failed to create the output folder" in error
    assert "Traceback" not in error


def test_output_dir_not_writable(no_kernel, monkeypatch, tmp_path):
    # Simulated, because root may write to a read-only folder.
    def mkstemp(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("layershare.reports.tempfile.mkstemp", mkstemp)

    with pytest.raises(OutputDirError, match="failed to write to the output folder"):
        run_report(DEFAULT, output_dir=tmp_path)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root may write to a read-only folder",
)
def test_output_dir_read_only(no_kernel, tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        status = main(["report", "-o", str(tmp_path)])
    finally:
        tmp_path.chmod(0o700)

    error = capsys.readouterr().err
    assert status == 2
    assert "failed to write to the output folder" in error


def test_output_error_is_value_error():
    assert issubclass(OutputDirError, ValueError)


def test_success_replaces_report(monkeypatch, tmp_path):
    notebook, html = write_previous_report(tmp_path)
    (tmp_path / "implicit-ensemble.failed.ipynb").write_text("", encoding="utf-8")
    fake_papermill(monkeypatch, fail=False, text="new report")

    paths = run_report(DEFAULT, output_dir=tmp_path, progress=False)

    written = nbformat.read(paths.notebook, as_version=4)
    assert paths.notebook == notebook
    assert written.cells[0].source == "new report"
    assert written.metadata.papermill.output_path == str(notebook)
    assert "new report" in html.read_text(encoding="utf-8")
    assert sorted(os.listdir(tmp_path)) == [html.name, notebook.name]


def test_failure_keeps_report(monkeypatch, tmp_path):
    notebook, html = write_previous_report(tmp_path)
    fake_papermill(monkeypatch, fail=True, text="failed run")

    with pytest.raises(ReportError) as info:
        run_report(DEFAULT, output_dir=tmp_path, progress=False)

    failed = tmp_path / "implicit-ensemble.failed.ipynb"
    failed_html = tmp_path / "implicit-ensemble.failed.html"
    assert notebook.read_text(encoding="utf-8") == "previous notebook"
    assert html.read_text(encoding="utf-8") == "previous html"
    assert info.value.notebook == failed
    assert info.value.html == failed_html
    assert str(failed) in str(info.value)
    assert "RuntimeError: boom" in str(info.value)
    assert nbformat.read(failed, as_version=4).cells[0].source == "failed run"
    assert "failed run" in failed_html.read_text(encoding="utf-8")
    assert sorted(os.listdir(tmp_path)) == sorted(
        [html.name, notebook.name, failed.name, failed_html.name]
    )


def test_cli_failure_names_files(monkeypatch, tmp_path, capsys):
    fake_papermill(monkeypatch, fail=True)

    status = main(["report", "-o", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 1
    assert str(tmp_path / "implicit-ensemble.failed.ipynb") in error
    assert str(tmp_path / "implicit-ensemble.failed.html") in error
    assert "Traceback" not in error


def test_unexpected_error_removes_temporary(monkeypatch, tmp_path):
    def execute_notebook(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)

    with pytest.raises(KeyboardInterrupt):
        run_report(DEFAULT, output_dir=tmp_path, progress=False)

    assert os.listdir(tmp_path) == []


def test_unchecked_notebook(no_kernel, tmp_path):
    # A notebook that does not use layershare.experiments is not checked, so
    # the run reaches papermill, which no_kernel turns into a failure.
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "notebooks").mkdir()
    spec = tmp_path / "ensembles" / "plain.toml"
    spec.write_text(
        textwrap.dedent(
            """
            [experiment]
            name = "plain"
            notebook = "plain"

            [parameters]
            model = "VGG"
            """
        ),
        encoding="utf-8",
    )
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "plain.ipynb")

    with pytest.raises(pytest.fail.Exception, match="papermill started"):
        run_report(spec, output_dir=tmp_path / "out", progress=False)
