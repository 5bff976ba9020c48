"""Tests of the layershare command."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import nbformat
import pytest

from layershare.cli import DEFAULT_SPEC, main


@pytest.fixture
def demo_repository(tmp_path):
    """Return a spec path in a folder laid out like the repository.

    The spec's notebook prints its parameters and raises when ``fail`` is set.
    """
    (tmp_path / "ensembles").mkdir()
    (tmp_path / "notebooks").mkdir()
    spec = tmp_path / "ensembles" / "demo.toml"
    spec.write_text(
        textwrap.dedent(
            """
            [experiment]
            name = "demo"
            notebook = "demo_report"
            description = "A notebook that prints its parameters."

            [parameters]
            blocks = 8
            fail = false
            """
        ),
        encoding="utf-8",
    )

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "blocks = 1\nfail = False", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell("import sys\nprint(sys.executable)\nprint(blocks)"),
        nbformat.v4.new_code_cell(
            "if fail:\n    raise RuntimeError(f'failed with {blocks} blocks')"
        ),
    ]
    nbformat.write(notebook, tmp_path / "notebooks" / "demo_report.ipynb")
    return spec


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])

    output = capsys.readouterr().out
    assert info.value.code == 0
    assert "report" in output
    assert "specs" in output


def test_report_help_lists_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", "--help"])

    output = capsys.readouterr().out
    assert info.value.code == 0
    for option in ("-p NAME VALUE", "--output-dir", "--no-progress", "--kernel"):
        assert option in output
    assert DEFAULT_SPEC in output


def test_no_command_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main([])

    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_module_runs_help():
    result = subprocess.run(
        [sys.executable, "-m", "layershare", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0
    assert "usage: layershare" in result.stdout


def test_specs_lists_default(capsys):
    assert main(["specs"]) == 0

    output = capsys.readouterr().out
    assert DEFAULT_SPEC in output
    assert "stochastic depth" in output


def test_report_unknown_parameter(capsys):
    assert main(["report", "-p", "blockz", "6"]) == 2

    error = capsys.readouterr().err
    assert "unknown parameter 'blockz'" in error
    assert "blocks" in error
    assert "Traceback" not in error
    assert error.count("\n") == 1


def test_report_parameter_wrong_type(capsys):
    assert main(["report", "-p", "blocks", "abc"]) == 2

    error = capsys.readouterr().err
    assert "'blocks' must be an integer, but got 'abc'" in error


def test_report_unknown_spec(capsys):
    assert main(["report", "no-such-spec"]) == 2

    error = capsys.readouterr().err
    assert "'no-such-spec' not found" in error
    assert DEFAULT_SPEC in error


def test_report_parameter_needs_value(capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", "-p", "blocks"])

    assert info.value.code == 2
    assert "-p" in capsys.readouterr().err


@pytest.mark.slow
def test_report_writes_files(demo_repository, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status = main(
        ["report", str(demo_repository), "-p", "blocks", "3", "-o", str(output_dir)]
    )

    output = capsys.readouterr().out
    notebook = output_dir / "demo-report.ipynb"
    html = output_dir / "demo-report.html"
    assert status == 0
    assert str(notebook) in output
    assert str(html) in output
    assert html.read_text(encoding="utf-8").lstrip().startswith("<!DOCTYPE html>")

    # The injected parameter reached the kernel, which ran this interpreter.
    printed = nbformat.read(notebook, as_version=4).cells[2].outputs[0].text
    assert printed == f"{sys.executable}\n3\n"


@pytest.mark.slow
def test_report_failing_cell(demo_repository, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status = main(
        ["report", str(demo_repository), "-p", "fail", "true", "-o", str(output_dir)]
    )

    error = capsys.readouterr().err
    assert status == 1
    assert "RuntimeError: failed with 8 blocks" in error
    assert str(output_dir / "demo-report.failed.ipynb") in error
    assert "Traceback" not in error
    assert (output_dir / "demo-report.failed.html").is_file()


@pytest.mark.slow
def test_report_failure_keeps_previous(demo_repository, tmp_path, capsys):
    output_dir = tmp_path / "out"
    good = ["report", str(demo_repository), "-o", str(output_dir)]
    assert main(good) == 0
    previous = (output_dir / "demo-report.ipynb").read_bytes()

    status = main([*good, "-p", "fail", "true"])

    assert status == 1
    assert (output_dir / "demo-report.ipynb").read_bytes() == previous
    assert (output_dir / "demo-report.failed.ipynb").is_file()

    # A later success removes the files of the failed run.
    assert main(good) == 0
    assert not (output_dir / "demo-report.failed.ipynb").exists()
    assert not (output_dir / "demo-report.failed.html").exists()
