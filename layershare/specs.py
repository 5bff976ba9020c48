"""Experiment specs: TOML files in ``ensembles/`` that each describe one experiment.

A spec names the notebook that runs the experiment and the papermill
parameters it runs with::

    [experiment]
    name = "resnet-stochastic-depth-digits"
    notebook = "implicit_ensemble"     # notebooks/implicit_ensemble.ipynb
    description = "One line shown by `layershare specs`."

    [parameters]                       # a flat table, injected by papermill
    model = "ResNet"
    blocks = 8
    p_last = 0.5

A spec is loaded by file path or by name, the name being the file's stem in
the repository's ``ensembles/`` folder. Overrides keep each parameter's type:
the string ``"6"`` becomes the int ``6`` for an int parameter, and ``"abc"``
for that parameter raises :class:`SpecError`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = [
    "Spec",
    "SpecError",
    "ensembles_dir",
    "list_specs",
    "load_spec",
    "notebooks_dir",
    "spec_names",
]

Scalar = bool | int | float | str
ParameterValue = Scalar | list[Scalar]

# The folder that contains the package, which is the repository root when
# layershare is installed with `pip install -e .` or run from a checkout.
_REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

_EXPERIMENT_KEYS = {"name": True, "notebook": True, "description": False}
"""Keys of the ``[experiment]`` table, mapped to whether each is required."""

_SECTIONS = ("experiment", "parameters")

_TYPE_NAMES = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
}

_TRUE_STRINGS = frozenset({"true", "yes", "on", "1"})
_FALSE_STRINGS = frozenset({"false", "no", "off", "0"})


class SpecError(ValueError):
    """A spec file is missing, unreadable or invalid, or an override does not fit.

    Args:
        problem: What is wrong and what to do.
        path: The spec file involved, if any.
        key: The key involved, such as ``"parameters.blocks"``, if any.
    """

    def __init__(
        self, problem: str, *, path: Path | None = None, key: str | None = None
    ) -> None:
        super().__init__(f"{path}: {problem}" if path is not None else problem)
        self.problem = problem
        self.path = path
        self.key = key


@dataclass(frozen=True)
class Spec:
    """One experiment: the notebook that runs it and its parameters.

    Attributes:
        name: Name of the experiment, from ``[experiment] name``.
        notebook: Stem of the notebook in ``notebooks/`` that runs it.
        description: One line that describes what the experiment measures.
        parameters: Papermill parameters, injected into the notebook's
            ``parameters`` cell.
        path: The file the spec was read from, or ``None`` if built in code.
    """

    name: str
    notebook: str
    description: str = ""
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    path: Path | None = None

    def with_overrides(self, overrides: Mapping[str, object]) -> Spec:
        """Return a copy of the spec with some parameters replaced.

        Each override must name an existing parameter. A string value is
        parsed to the parameter's type: ``"6"`` to ``6`` for an int, ``"1"``
        to ``1.0`` for a float, ``"false"`` to ``False`` for a bool, and
        ``"[1, 2]"`` to a list. Any other value must already have the
        parameter's type, except that an int may replace a float.

        Args:
            overrides: New values, keyed by parameter name.

        Returns:
            A new spec. The original is unchanged.

        Raises:
            SpecError: If a key is not a parameter of the spec, or a value
                cannot be converted to the parameter's type.
        """
        parameters = dict(self.parameters)
        for key, value in overrides.items():
            if key not in parameters:
                known = ", ".join(sorted(parameters)) or "none"
                raise SpecError(
                    f"unknown parameter {key!r}. Known parameters: {known}",
                    path=self.path,
                    key=f"parameters.{key}",
                )
            parameters[key] = _convert(key, value, parameters[key], self.path)
        return dataclasses.replace(self, parameters=parameters)

    def notebook_path(self) -> Path:
        """Find the notebook that runs this spec.

        The notebook is looked up in the ``notebooks/`` folder beside the
        spec's ``ensembles/`` folder, then in :func:`notebooks_dir`.

        Returns:
            Path of ``<notebook>.ipynb``.

        Raises:
            SpecError: If no such notebook exists.
        """
        folders = [notebooks_dir()]
        if self.path is not None:
            folders.insert(0, self.path.resolve().parent.parent / "notebooks")
        for folder in folders:
            candidate = folder / f"{self.notebook}.ipynb"
            if candidate.is_file():
                return candidate

        available = sorted({p.stem for f in folders for p in f.glob("*.ipynb")})
        raise SpecError(
            f"notebook {self.notebook!r} not found in "
            f"{', '.join(str(f) for f in dict.fromkeys(folders))}. "
            f"Available notebooks: {', '.join(available) or 'none'}",
            path=self.path,
            key="experiment.notebook",
        )


def ensembles_dir() -> Path:
    """Return the repository's ``ensembles/`` folder, which contains the specs.

    NOTE: Specs and notebooks are not packaged into the wheel. With a regular
    (non-editable) install, the ``ensembles/`` folder of the current working
    directory is used instead.
    """
    return _repository_dir("ensembles")


def notebooks_dir() -> Path:
    """Return the repository's ``notebooks/`` folder, which contains the notebooks.

    Like :func:`ensembles_dir`, this falls back to the current working
    directory when the package does not sit in a repository checkout.
    """
    return _repository_dir("notebooks")


def spec_names(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """List the names of the specs in a folder, sorted.

    Args:
        directory: Folder to list (default: :func:`ensembles_dir`).

    Returns:
        File stems of the ``*.toml`` files, each a valid ``load_spec`` name.
    """
    folder = Path(directory) if directory is not None else ensembles_dir()
    return sorted(path.stem for path in folder.glob("*.toml"))


def list_specs(directory: str | os.PathLike[str] | None = None) -> list[Spec]:
    """Load every spec in a folder, sorted by file name.

    Args:
        directory: Folder to read (default: :func:`ensembles_dir`).

    Returns:
        The specs, one per ``*.toml`` file.

    Raises:
        SpecError: If any of the files is not a valid spec.
    """
    folder = Path(directory) if directory is not None else ensembles_dir()
    return [load_spec(folder / f"{name}.toml") for name in spec_names(folder)]


def load_spec(path_or_name: str | os.PathLike[str]) -> Spec:
    """Read a spec from a TOML file, given by path or by name.

    A plain name such as ``"resnet-stochastic-depth-digits"`` resolves to
    ``ensembles/<name>.toml`` in the repository. Anything that ends in
    ``.toml``, contains a path separator or is a :class:`os.PathLike` is
    read as a path.

    Args:
        path_or_name: Path of a spec file, or name of a spec in ``ensembles/``.

    Returns:
        The spec.

    Raises:
        SpecError: If the file does not exist, is not valid TOML, or does not
            have the sections, keys and value types of a spec.

    Example:
        >>> spec = load_spec("resnet-stochastic-depth-digits")
        >>> spec.with_overrides({"blocks": "6"}).parameters["blocks"]
        6
    """
    path = _resolve(path_or_name)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"invalid TOML: {error}", path=path) from error
    except OSError as error:
        raise SpecError(f"failed to read the file: {error}", path=path) from error
    return _parse(document, path)


def _repository_dir(name: str) -> Path:
    """Return ``name`` in the repository root, else in the working directory."""
    folder = _REPOSITORY_ROOT / name
    return folder if folder.is_dir() else Path.cwd() / name


def _resolve(path_or_name: str | os.PathLike[str]) -> Path:
    """Turn a spec path or name into the path of an existing file."""
    text = os.fspath(path_or_name)
    is_path = (
        not isinstance(path_or_name, str)
        or text.endswith(".toml")
        or os.sep in text
        or "/" in text
    )
    path = Path(text) if is_path else ensembles_dir() / f"{text}.toml"
    if path.is_file():
        return path

    folder = path.parent if is_path else ensembles_dir()
    available = ", ".join(spec_names(folder)) or "none"
    kind = "spec file" if is_path else "spec"
    raise SpecError(
        f"{kind} {text!r} not found (looked for {path}). "
        f"Available specs in {folder}: {available}"
    )


def _parse(document: dict[str, Any], path: Path) -> Spec:
    """Check a TOML document's layout and build a spec from it."""
    unknown = sorted(set(document) - set(_SECTIONS))
    if unknown:
        raise SpecError(
            f"unknown section {unknown[0]!r}. A spec has the sections "
            f"{', '.join(f'[{name}]' for name in _SECTIONS)}",
            path=path,
            key=unknown[0],
        )
    for section in _SECTIONS:
        if not isinstance(document.get(section), dict):
            raise SpecError(f"missing section [{section}]", path=path, key=section)

    experiment = document["experiment"]
    for key in experiment:
        if key not in _EXPERIMENT_KEYS:
            raise SpecError(
                f"unknown key {key!r} in [experiment]. Known keys: "
                f"{', '.join(_EXPERIMENT_KEYS)}",
                path=path,
                key=f"experiment.{key}",
            )
    for key, required in _EXPERIMENT_KEYS.items():
        if required and key not in experiment:
            raise SpecError(
                f"missing key {key!r} in [experiment]",
                path=path,
                key=f"experiment.{key}",
            )
        if key in experiment and not isinstance(experiment[key], str):
            raise SpecError(
                f"[experiment] {key} must be a string, but got {experiment[key]!r}",
                path=path,
                key=f"experiment.{key}",
            )

    parameters = document["parameters"]
    for key, value in parameters.items():
        _check_parameter(key, value, path)

    return Spec(
        name=experiment["name"],
        notebook=experiment["notebook"],
        description=experiment.get("description", ""),
        parameters=dict(parameters),
        path=path,
    )


def _check_parameter(key: str, value: object, path: Path | None) -> None:
    """Raise SpecError unless ``value`` is a scalar or a list of scalars."""
    scalars = (bool, int, float, str)
    if isinstance(value, scalars):
        return
    if isinstance(value, list) and all(isinstance(item, scalars) for item in value):
        return
    raise SpecError(
        f"parameter {key!r} must be a boolean, integer, number, string or a "
        f"list of those, because [parameters] is a flat table of papermill "
        f"parameters, but got {value!r}",
        path=path,
        key=f"parameters.{key}",
    )


def _convert(
    key: str, value: object, current: ParameterValue, path: Path | None
) -> ParameterValue:
    """Convert an override to the type of the parameter's current value."""
    expected = type(current)
    error = SpecError(
        f"parameter {key!r} must be {_TYPE_NAMES[expected]}, but got {value!r}",
        path=path,
        key=f"parameters.{key}",
    )

    if isinstance(value, str) and expected is not str:
        try:
            value = _parse_string(value, expected)
        except ValueError:
            raise error from None

    # Values must now have the type, except that an int may replace a float.
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is list and isinstance(value, tuple):
        value = list(value)
    if type(value) is not expected:
        raise error
    if expected is list:
        _check_parameter(key, value, path)
    return value


def _parse_string(text: str, expected: type) -> ParameterValue:
    """Parse a command-line string to ``expected``, raising ValueError if it fails."""
    text = text.strip()
    if expected is bool:
        if text.lower() in _TRUE_STRINGS:
            return True
        if text.lower() in _FALSE_STRINGS:
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if expected is int:
        return int(text)
    if expected is float:
        return float(text)

    # A list is written as a TOML array, for example "[1, 2, 3]".
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError as decode_error:
        raise ValueError(str(decode_error)) from None
