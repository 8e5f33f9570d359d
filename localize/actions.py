"""Action names as a user gives them: parsed, checked and deduplicated, each problem one line."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from t3al.cache import T3alError
from t3al.manifests import class_name_problem

COMMENT = "#"  # a line of --actions-file starting with it is a comment


class ActionsError(T3alError, ValueError):
    """Action names that cannot be localized (none, or one that cannot name a class)."""


@dataclass
class Actions:
    """The vocabulary to localize, in the order given, and notes on what was dropped."""

    names: list[str]
    notes: list[str] = field(default_factory=list)


def _clean(name: str) -> str:
    return " ".join(name.split())


def split_names(text: str) -> list[str]:
    """Comma-separated names, a name in double quotes keeping its commas (``"pick up, put down", run``)."""
    return next(csv.reader([text], skipinitialspace=True), [])


def _file_names(file: str | Path) -> list[str]:
    """The lines of ``file`` (UTF-8, a BOM dropped), comment lines (``#``) left out."""
    try:
        lines = Path(file).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ActionsError(f"--actions-file {file}: cannot read it as UTF-8 text ({error})") from None
    return [line for line in lines if not line.lstrip().startswith(COMMENT)]


def parse_actions(text: str | None = None, file: str | Path | None = None) -> Actions:
    """Names from ``text`` (comma-separated, double quotes around a name with commas) then ``file``
    (one per line, UTF-8, ``#`` lines are comments): surrounding and repeated whitespace dropped,
    empty names and repeats dropped with a note; none, or a name with a control character or
    nothing visible, is an ActionsError. (How many tokens a prompt may have is the model's to
    say: stage one counts them.)"""
    given: list[str] = []
    if text is not None:
        given += split_names(text)
    if file is not None:
        given += _file_names(file)
    cleaned = [_clean(name) for name in given]
    names = list(dict.fromkeys(name for name in cleaned if name))
    if not names:
        raise ActionsError('no actions to localize: give --actions "pole vault, high jump" or --actions-file FILE '
                           "(one name per line)")
    for name in names:
        if problem := class_name_problem(name):
            raise ActionsError(f"action name {ascii(name)} {problem}")
    notes = []
    empty = sum(1 for name in cleaned if not name)
    if empty:
        notes.append(f"{empty} empty action name(s) ignored")
    repeated = [name for name in names if cleaned.count(name) > 1]
    if repeated:
        notes.append(f"repeated action name(s) localized once: {', '.join(repeated)}")
    return Actions(names, notes)
