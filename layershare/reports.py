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

import logging
import os
import sys
from pathlib import Path
from typing import NamedTuple

import nbformat
import papermill
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient.exceptions import DeadKernelError
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from layershare.specs import Spec, load_spec

__all__ = ["ReportError", "ReportPaths", "run_report"]

logger = logging.getLogger(__name__)

_DEFAULT_KERNEL = "python3"


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
    ``<output_dir>/implicit-ensemble.ipynb`` and ``.html``. Existing files of
    those names are overwritten.

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
        SpecError: If the spec, an override or the spec's notebook is invalid
            or not found.
        ReportError: If a cell raised, the kernel died, or ``kernel_name``
            names no installed kernel. When execution had started, the
            executed notebook and its HTML export are written first.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if overrides:
        spec = spec.with_overrides(overrides)
    input_path = spec.notebook_path()

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = spec.notebook.replace("_", "-")
    paths = ReportPaths(output_dir / f"{stem}.ipynb", output_dir / f"{stem}.html")

    logger.info(
        "executing %s for spec %r with parameters %s",
        input_path,
        spec.name,
        spec.parameters,
    )
    _execute(input_path, paths, spec.parameters, kernel_name, progress)
    _export_html(paths)
    logger.info("wrote %s and %s", paths.notebook, paths.html)
    return paths


def _execute(
    input_path: Path,
    paths: ReportPaths,
    parameters: dict[str, object],
    kernel_name: str | None,
    progress: bool,
) -> None:
    """Run papermill, turning its failures into ReportError."""
    engine_options = {}
    if kernel_name is None:
        kernel_name = _DEFAULT_KERNEL
        engine_options["kernel_manager_class"] = _CurrentPythonKernelManager
    else:
        _check_kernel(kernel_name)

    try:
        papermill.execute_notebook(
            input_path,
            paths.notebook,
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar=progress,
            cwd=input_path.parent,
            **engine_options,
        )
    except PapermillExecutionError as error:
        html = _export_html_after_failure(paths)
        raise ReportError(
            f"cell In [{error.exec_count}] of {input_path.name} raised "
            f"{error.ename}: {error.evalue}. The executed notebook with the "
            f"error is at {paths.notebook}",
            notebook=paths.notebook,
            html=html,
            cell_index=error.cell_index,
            exec_count=error.exec_count,
            error_name=error.ename,
            error_value=error.evalue,
        ) from error
    except DeadKernelError as error:
        html = _export_html_after_failure(paths)
        raise ReportError(
            f"the kernel died while executing {input_path.name} ({error}). "
            f"The notebook executed so far is at {paths.notebook}",
            notebook=paths.notebook,
            html=html,
        ) from error


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


def _export_html_after_failure(paths: ReportPaths) -> Path | None:
    """Export what a failed run wrote, logging rather than raising on failure."""
    if not paths.notebook.is_file():
        return None
    try:
        _export_html(paths)
    except Exception:
        # The execution error matters more than the export's, so log this one.
        logger.exception("failed to export %s to HTML", paths.notebook)
        return None
    return paths.html
