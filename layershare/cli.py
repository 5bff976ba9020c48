"""The ``layershare`` command: run reports from specs and list the specs.

Examples::

    layershare specs
    layershare report
    layershare report resnet-stochastic-depth-digits -p blocks 6 -p epochs 3

Spec and report errors print one line to stderr. The exit status is 0 on
success, 1 when a report's notebook fails, and 2 for an invalid spec,
parameter, output folder or command line.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from layershare.specs import SpecError, ensembles_dir, list_specs, load_spec

__all__ = ["DEFAULT_SPEC", "build_parser", "main"]

DEFAULT_SPEC = "resnet-stochastic-depth-digits"
"""Spec that ``layershare report`` runs when none is named."""

_EXIT_REPORT_FAILED = 1
_EXIT_INVALID_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``layershare`` command."""
    parser = argparse.ArgumentParser(
        prog="layershare",
        description=(
            "Implicit ensembles and layer sharing: run experiment specs from "
            "ensembles/ as papermill reports."
        ),
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log progress messages of layershare and papermill to stderr",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    report = commands.add_parser(
        "report",
        help="execute a spec's notebook and write it as .ipynb and .html",
        description=(
            "Execute the notebook named by a spec with papermill, with the "
            "spec's parameters and any -p overrides, and write the executed "
            "notebook and its HTML export to the output folder."
        ),
    )
    report.add_argument(
        "spec",
        nargs="?",
        default=DEFAULT_SPEC,
        metavar="SPEC",
        help=(
            "name of a spec in ensembles/ or path of a spec file "
            f"(default: {DEFAULT_SPEC})"
        ),
    )
    report.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help=(
            "set parameter NAME of the spec to VALUE, parsed to the type the "
            "spec gives it. Repeat to set several parameters"
        ),
    )
    report.add_argument(
        "-o",
        "--output-dir",
        default="reports",
        metavar="DIR",
        help="folder for the executed notebook and its HTML (default: reports)",
    )
    report.add_argument(
        "--kernel",
        default=None,
        metavar="NAME",
        help=(
            "Jupyter kernel to run the notebook in (default: python3, started "
            "with the Python that runs this command)"
        ),
    )
    report.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="hide the progress bar over notebook cells",
    )
    report.set_defaults(handler=_run_report)

    specs = commands.add_parser(
        "specs",
        help="list the specs in ensembles/ with their descriptions",
        description="List the specs in ensembles/ with their descriptions.",
    )
    specs.set_defaults(handler=_list_specs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``layershare`` command.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except SpecError as error:
        print(f"layershare: error: {error}", file=sys.stderr)
        return _EXIT_INVALID_INPUT


def _run_report(args: argparse.Namespace) -> int:
    """Execute a spec's report and print where its files were written."""
    spec = load_spec(args.spec).with_overrides(dict(args.parameter))

    # Imported only now, because papermill and nbconvert take about a second
    # to import, which invalid input and the other commands need not wait for.
    from layershare.reports import OutputDirError, ReportError, run_report

    progress = args.progress and sys.stderr.isatty()

    # SIGTERM (from `timeout` or a job scheduler) would otherwise end the
    # process without running the cleanup that removes the temporary notebook.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        paths = run_report(
            spec,
            output_dir=args.output_dir,
            kernel_name=args.kernel,
            progress=progress,
        )
    except OutputDirError as error:
        print(f"layershare: error: {error}", file=sys.stderr)
        return _EXIT_INVALID_INPUT
    except ReportError as error:
        print(f"layershare: error: {error}", file=sys.stderr)
        if error.html is not None:
            print(f"layershare: HTML of the failed run: {error.html}", file=sys.stderr)
        return _EXIT_REPORT_FAILED

    print(f"notebook: {paths.notebook}")
    print(f"html:     {paths.html}")
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit, so that ``finally`` blocks run."""
    raise SystemExit(128 + signum)


def _list_specs(args: argparse.Namespace) -> int:
    """Print each spec's name and description, one spec per line."""
    specs = list_specs()
    if not specs:
        print(f"no specs found in {ensembles_dir()}", file=sys.stderr)
        return 0
    width = max(len(spec.path.stem) for spec in specs)
    for spec in specs:
        print(f"{spec.path.stem:<{width}}  {spec.description}")
    return 0
