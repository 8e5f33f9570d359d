"""Sweeps: named rows of settings (one TOML file per paper table), checked here, resolved by the run spec.

A sweep file holds a ``description``, an optional ``preset`` and ``rows``, a list of tables each
with a ``name`` and any AdaptConfig fields, applied over the preset::

    description = "Losses (paper Table 5)"
    rows = [{name = "BCE on scores", separation = "bce", representation = "none"}, ...]
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from t3al.cache import write_atomically
from t3al.evaluate.report import format_table

from t3al.manifests import read_text

from ..config import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

ROW_NAME = re.compile(r"^[\w .,=+()\-]+$")  # also a folder name, on any system: no / \ : and no leading dot
SWEEP_KEYS = {"description", "preset", "rows"}


@dataclass(frozen=True)
class Sweep:
    """A named set of configurations: row name -> settings over the preset."""

    name: str
    description: str
    rows: dict[str, dict[str, Any]]
    preset: str | None = None


def sweep_names() -> list[str]:
    """Names of the shipped sweeps (TOML files in t3al.adapt.sweeps)."""
    folder = resources.files("t3al.adapt.sweeps")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_sweep(name_or_path: str | Path) -> Sweep:
    """A shipped sweep by name (``table5``), or the user's own sweep file by path."""
    path = Path(name_or_path)
    if str(name_or_path) in sweep_names():
        text = resources.files("t3al.adapt.sweeps").joinpath(f"{name_or_path}.toml").read_text(encoding="utf-8")
        return parse_sweep(text, str(name_or_path), f"sweep {name_or_path}")
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: no such sweep file")
        return parse_sweep(read_text(path, ConfigError), path.stem, str(path))
    raise ConfigError(f"unknown sweep {name_or_path!r}; choose one of {', '.join(sweep_names())} or a .toml file")


def parse_sweep(text: str, name: str, source: str) -> Sweep:
    """Check a sweep file's layout: known top-level keys, rows with unique, folder-safe names."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from err
    unknown = sorted(set(values) - SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; a sweep has {', '.join(sorted(SWEEP_KEYS))}")
    rows = values.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{source}: 'rows' must be a non-empty list of tables, e.g. rows = [{{name = \"T3AL\"}}]")
    named: dict[str, dict[str, Any]] = {}
    for position, row in enumerate(rows, 1):
        settings = dict(row)
        row_name = settings.pop("name", None)
        if not isinstance(row_name, str) or not ROW_NAME.match(row_name) or row_name.startswith("."):
            raise ConfigError(f"{source}: row {position} needs a name of letters, digits, spaces and "
                              f"_ .,=+()- (it names the row's output folder); got {row_name!r}")
        if row_name in named:
            raise ConfigError(f"{source}: two rows are named {row_name!r}")
        named[row_name] = settings
    return Sweep(name, str(values.get("description", "")), named, values.get("preset"))


def write_tables(documents: Mapping[str, dict], folder: Path) -> dict[str, Path]:
    """The sweep's paper-style table as Markdown and CSV files (rows = configurations)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / "table.md", "csv": folder / "table.csv"}
    for fmt, path in paths.items():
        text = format_table(documents, fmt)
        write_atomically(path, text if text.endswith("\n") else text + "\n")
    return paths
