"""The one reader of the user's text files (manifests, class lists, split lists, annotation and
detection CSVs, settings and sweep TOML): UTF-8, with or without the byte-order mark spreadsheet
programs save, and one line naming the file when it cannot be read or is not UTF-8 text."""
from __future__ import annotations

import os
from pathlib import Path


def read_text(path: str | os.PathLike, error: type[Exception] = ValueError) -> str:
    """The text of ``path`` decoded as UTF-8, a leading byte-order mark dropped; ``error`` (the
    caller's error class) is raised with one line naming the file when it cannot be."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not a UTF-8 text file (byte 0x{data[err.start]:02x} at offset {err.start}); "
                    "save it as UTF-8") from None
