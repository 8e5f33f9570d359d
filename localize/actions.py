"""Action names as a user gives them: parsed, checked and deduplicated, each problem one line."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAX_NAME = 200  # characters; the text encoder reads 77 tokens of "a video of action <name>"


class ActionsError(ValueError):
    """Action names that cannot be localized (none, or one too long)."""


@dataclass
class Actions:
    """The vocabulary to localize, in the order given, and notes on what was dropped."""

    names: list[str]
    notes: list[str] = field(default_factory=list)


def _clean(name: str) -> str:
    return " ".join(name.split())


def parse_actions(text: str | None = None, file: str | Path | None = None) -> Actions:
    """Names from ``text`` (comma-separated) then ``file`` (one per line, UTF-8): surrounding and
    repeated whitespace dropped, empty names and repeats dropped with a note; none, or a name longer
    than MAX_NAME characters, is an ActionsError."""
    given: list[str] = []
    if text is not None:
        given += text.split(",")
    if file is not None:
        try:
            given += Path(file).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ActionsError(f"--actions-file {file}: cannot read it as UTF-8 text ({error})") from None
    cleaned = [_clean(name) for name in given]
    names = list(dict.fromkeys(name for name in cleaned if name))
    if not names:
        raise ActionsError('no actions to localize: give --actions "pole vault, high jump" or --actions-file FILE '
                           "(one name per line)")
    long = [name for name in names if len(name) > MAX_NAME]
    if long:
        raise ActionsError(f"action name of {len(long[0])} characters ({long[0][:40]}...): at most {MAX_NAME}, "
                           "as the text encoder reads only the first 77 tokens of its prompt")
    notes = []
    empty = sum(1 for name in cleaned if not name)
    if empty:
        notes.append(f"{empty} empty action name(s) ignored")
    repeated = [name for name in names if cleaned.count(name) > 1]
    if repeated:
        notes.append(f"repeated action name(s) localized once: {', '.join(repeated)}")
    return Actions(names, notes)
