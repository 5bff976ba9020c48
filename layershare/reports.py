"""Reports: a spec's notebook executed by papermill and exported to HTML.

:func:`run_report` injects a spec's parameters into the ``parameters`` cell of
``notebooks/<notebook>.ipynb``, executes the notebook, and writes the executed
notebook and an HTML export of it to the output folder.

By default the notebook runs in an IPython kernel started with the same Python
interpreter that runs layershare (``sys.executable``), even when another
Python's kernel spec is registered under the name ``python3``, so the notebook
imports the same installed packages as the caller.
"""

from __future__ import annotations

import ast
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import nbformat
import papermill
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient.exceptions import DeadKernelError
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from layershare.specs import Spec, SpecError, load_spec

__all__ = ["OutputDirError", "ReportError", "ReportPaths", "run_report"]

logger = logging.getLogger(__name__)

_DEFAULT_KERNEL = "python3"

_REGISTRY_MODULE = "layershare.experiments"
"""Module whose mention in a code cell marks a notebook whose parameters are checked."""


class ReportPaths(NamedTuple):
    """Files written by :func:`run_report`."""

    notebook: Path
    """The executed notebook, with outputs."""

    html: Path
    """The executed notebook exported to HTML."""


class ReportError(RuntimeError):
    """A report's notebook failed to execute.

    When execution had started, the executed notebook, up to and including the
    failing cell, is written before this error is raised.

    Args:
        message: What failed.
        notebook: The executed notebook that shows the failure, or ``None``
            if execution did not start.
        html: Its HTML export, or ``None`` if the export failed too.
        cell_index: Index of the failing cell in the notebook, if known.
        exec_count: Execution count shown beside the failing cell, if known.
        error_name: Class name of the cell's exception, such as ``"ValueError"``.
        error_value: Message of the cell's exception.
    """

    def __init__(
        self,
        message: str,
        *,
        notebook: Path | None,
        html: Path | None = None,
        cell_index: int | None = None,
        exec_count: int | None = None,
        error_name: str | None = None,
        error_value: str | None = None,
    ) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.html = html
        self.cell_index = cell_index
        self.exec_count = exec_count
        self.error_name = error_name
        self.error_value = error_value


class OutputDirError(ValueError):
    """The output folder of a report cannot be created or written to."""


class _CurrentPythonKernelManager(AsyncKernelManager):
    """Kernel manager that starts IPython kernels with ``sys.executable``.

    jupyter_client already replaces a bare ``python`` in a kernel spec's
    command with ``sys.executable``, but a kernel spec installed elsewhere
    (for example in ``~/.local/share/jupyter/kernels``) may name another
    interpreter by absolute path, which would run the notebook without the
    caller's packages.
    """

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = super().format_kernel_cmd(extra_arguments)
        if command[1:3] == ["-m", "ipykernel_launcher"]:
            command[0] = sys.executable
        return command


def run_report(
    spec: Spec | str | os.PathLike[str],
    *,
    overrides: dict[str, object] | None = None,
    output_dir: str | os.PathLike[str] = "reports",
    kernel_name: str | None = None,
    progress: bool = True,
) -> ReportPaths:
    """Execute a spec's notebook with papermill and export the result to HTML.

    The outputs are named after the notebook with underscores turned into
    dashes: ``notebooks/implicit_ensemble.ipynb`` becomes
    ``<output_dir>/implicit-ensemble.ipynb`` and ``.html``. The notebook is
    executed into a hidden temporary file in the output folder, which replaces
    the previous report only on success and then deletes any
    ``implicit-ensemble.failed.ipynb`` and ``.html`` of an earlier failure.
    A failed run writes those ``.failed`` files and keeps the previous report.

    Before anything is written, the parameters of a notebook that uses
    ``layershare.experiments`` are checked with
    :func:`layershare.experiments.registry.check_parameters`, which builds
    the model and scheme without training.

    Args:
        spec: A loaded spec, or the name or path of one (see
            :func:`layershare.specs.load_spec`).
        overrides: Parameters to replace, keyed by name. Strings are parsed
            to each parameter's type (default: none).
        output_dir: Folder for the executed notebook and its HTML export,
            created if missing (default: ``"reports"``).
        kernel_name: Jupyter kernel to execute the notebook with (default:
            ``"python3"`` started with the interpreter running layershare).
        progress: Whether papermill shows a progress bar over the cells
            (default: ``True``).

    Returns:
        Paths of the executed notebook and its HTML export.

    Raises:
        SpecError: If the spec, an override, a parameter value or the spec's
            notebook is invalid or not found.
        OutputDirError: If the output folder cannot be created or written to.
        ReportError: If a cell raised, the kernel died, or ``kernel_name``
            names no installed kernel. When execution had started, the
            executed notebook and its HTML export are written under the
            ``.failed`` names first.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if overrides:
        spec = spec.with_overrides(overrides)
    input_path = spec.notebook_path()
    _check_experiment_parameters(spec, input_path)

    output_dir = Path(output_dir)
    stem = spec.notebook.replace("_", "-")
    paths = ReportPaths(output_dir / f"{stem}.ipynb", output_dir / f"{stem}.html")
    failed = ReportPaths(
        output_dir / f"{stem}.failed.ipynb", output_dir / f"{stem}.failed.html"
    )
    running = _create_running_paths(output_dir, stem)

    logger.info(
        "executing %s for spec %r with parameters %s",
        input_path,
        spec.name,
        spec.parameters,
    )
    try:
        _execute(input_path, running, failed, spec.parameters, kernel_name, progress)
        _record_output_path(running.notebook, paths.notebook)
        _export_html(running)
        os.replace(running.notebook, paths.notebook)
        os.replace(running.html, paths.html)
    finally:
        running.notebook.unlink(missing_ok=True)
        running.html.unlink(missing_ok=True)
    failed.notebook.unlink(missing_ok=True)
    failed.html.unlink(missing_ok=True)
    logger.info("wrote %s and %s", paths.notebook, paths.html)
    return paths


def _check_experiment_parameters(spec: Spec, notebook: Path) -> None:
    """Raise SpecError if the registry rejects the parameters the notebook gets.

    Notebooks that do not name ``layershare.experiments`` are not checked.
    The checked parameters are the defaults of the notebook's ``parameters``
    cell updated with the spec's, which are the values the notebook runs with.
    """
    cells = nbformat.read(notebook, as_version=4).cells
    code = [cell for cell in cells if cell.cell_type == "code"]
    if not any(_REGISTRY_MODULE in cell.source for cell in code):
        return

    # Imported only now, because it imports torch, which takes seconds.
    from layershare.experiments.registry import check_parameters

    parameters = {}
    for cell in code:
        if "parameters" in cell.metadata.get("tags", []):
            parameters.update(_literal_assignments(cell.source))
    parameters.update(spec.parameters)
    try:
        check_parameters(parameters)
    except (ValueError, TypeError) as error:
        raise SpecError(
            f"{error}. Set a valid value in the spec or override it",
            path=spec.path,
        ) from error


def _literal_assignments(source: str) -> dict[str, object]:
    """Return ``name = literal`` assignments of a cell, skipping other statements."""
    try:
        statements = ast.parse(source).body
    except SyntaxError:
        # A cell with IPython syntax such as magics: papermill still runs it.
        return {}
    values = {}
    for statement in statements:
        if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
            continue
        target = statement.targets[0]
        if not isinstance(target, ast.Name):
            continue
        try:
            values[target.id] = ast.literal_eval(statement.value)
        except (ValueError, TypeError):
            continue
    return values


def _create_running_paths(output_dir: Path, stem: str) -> ReportPaths:
    """Create the output folder and a hidden temporary notebook file in it.

    Creating the file checks that the folder is writable, which
    ``os.access`` does not for root.

    Raises:
        OutputDirError: If the folder cannot be created or written to.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputDirError(
            f"the output folder {output_dir} is an existing file, not a folder. "
            f"Choose another output folder (-o DIR)"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputDirError(
            f"failed to create the output folder {output_dir}: "
            f"{error.strerror or error}. Choose another output folder (-o DIR)"
        ) from error
    try:
        descriptor, name = tempfile.mkstemp(
            suffix=".ipynb", prefix=f".{stem}.running.", dir=output_dir
        )
    except OSError as error:
        raise OutputDirError(
            f"failed to write to the output folder {output_dir}: "
            f"{error.strerror or error}. Choose a writable output folder (-o DIR)"
        ) from error
    os.close(descriptor)
    notebook = Path(name)
    return ReportPaths(notebook, notebook.with_suffix(".html"))


def _execute(
    input_path: Path,
    running: ReportPaths,
    failed: ReportPaths,
    parameters: dict[str, object],
    kernel_name: str | None,
    progress: bool,
) -> None:
    """Run papermill into ``running``, turning its failures into ReportError.

    On failure, the executed notebook and its HTML export are moved to
    ``failed`` before ReportError is raised.
    """
    engine_options = {}
    if kernel_name is None:
        kernel_name = _DEFAULT_KERNEL
        engine_options["kernel_manager_class"] = _CurrentPythonKernelManager
    else:
        _check_kernel(kernel_name)

    try:
        papermill.execute_notebook(
            input_path,
            running.notebook,
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar=progress,
            cwd=input_path.parent,
            **engine_options,
        )
    except PapermillExecutionError as error:
        notebook, html = _keep_failed_run(running, failed)
        raise ReportError(
            f"cell In [{error.exec_count}] of {input_path.name} raised "
            f"{error.ename}: {error.evalue}. The executed notebook with the "
            f"error is at {notebook}, and the previous report is unchanged",
            notebook=notebook,
            html=html,
            cell_index=error.cell_index,
            exec_count=error.exec_count,
            error_name=error.ename,
            error_value=error.evalue,
        ) from error
    except DeadKernelError as error:
        notebook, html = _keep_failed_run(running, failed)
        raise ReportError(
            f"the kernel died while executing {input_path.name} ({error}). "
            f"The notebook executed so far is at {notebook}, and the previous "
            f"report is unchanged",
            notebook=notebook,
            html=html,
        ) from error


def _keep_failed_run(
    running: ReportPaths, failed: ReportPaths
) -> tuple[Path | None, Path | None]:
    """Move a failed run's notebook to ``failed`` and export it to HTML.

    Logs rather than raises its own errors, because the execution error
    matters more. Returns the paths written, each ``None`` if not written.
    """
    try:
        _record_output_path(running.notebook, failed.notebook)
        os.replace(running.notebook, failed.notebook)
    except Exception:
        logger.exception("failed to save the failed notebook %s", running.notebook)
        return None, None
    try:
        _export_html(failed)
    except Exception:
        logger.exception("failed to export %s to HTML", failed.notebook)
        return failed.notebook, None
    return failed.notebook, failed.html


def _record_output_path(notebook_file: Path, output_path: Path) -> None:
    """Replace the temporary output path that papermill recorded in a notebook."""
    notebook = nbformat.read(notebook_file, as_version=nbformat.NO_CONVERT)
    if "papermill" in notebook.metadata:
        notebook.metadata.papermill["output_path"] = str(output_path)
    nbformat.write(notebook, notebook_file)


def _check_kernel(kernel_name: str) -> None:
    """Raise ReportError unless a kernel spec named ``kernel_name`` is installed."""
    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as error:
        installed = ", ".join(sorted(KernelSpecManager().find_kernel_specs()))
        raise ReportError(
            f"kernel {kernel_name!r} not found. Installed kernels: {installed}",
            notebook=None,
        ) from error


def _export_html(paths: ReportPaths) -> None:
    """Write the HTML export of the executed notebook."""
    notebook = nbformat.read(paths.notebook, as_version=nbformat.NO_CONVERT)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    paths.html.write_text(body, encoding="utf-8")
