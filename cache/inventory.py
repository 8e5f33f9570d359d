"""What a cache directory holds right now, file by file, for progress reports while writers run.

Reads only the attributes of each video file (no feature arrays), so it stays quick on large
caches, and never changes anything.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py

from .schema import VIDEOS_DIR


@dataclass(frozen=True)
class StoredVideo:
    """One complete video file: the source it was made from, or why its attributes are unreadable."""

    video_id: str
    source_size: int = -1
    source_mtime: float = -1.0
    model_id: str = ""
    error: str = ""


@dataclass(frozen=True)
class TemporaryFile:
    """A file being written (``.<name>.*.tmp``): the file it will become and seconds since its last write."""

    path: Path
    target: str
    age_s: float


def stored_videos(root: str | os.PathLike) -> list[StoredVideo]:
    """Every complete video file of the cache, sorted by id, with its source attributes."""
    folder = Path(root) / VIDEOS_DIR
    if not folder.is_dir():
        return []
    return [_stored(path) for path in sorted(folder.glob("*.h5")) if not path.name.startswith(".")]


def _stored(path: Path) -> StoredVideo:
    try:
        with h5py.File(path, "r") as f:
            attrs = f.attrs
            return StoredVideo(path.stem, int(attrs["source_size"]), float(attrs["source_mtime"]),
                               str(attrs["model_id"]))
    except (OSError, KeyError) as err:
        return StoredVideo(path.stem, error=f"unreadable file {path} ({err})")


def temporary_files(root: str | os.PathLike, now: float | None = None) -> list[TemporaryFile]:
    """The writers' temporary files in the cache and its videos folder, oldest first."""
    now = time.time() if now is None else now
    found = []
    for folder in (Path(root), Path(root) / VIDEOS_DIR):
        for path in folder.glob(".*.tmp") if folder.is_dir() else ():
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:  # renamed into place since it was listed
                continue
            found.append(TemporaryFile(path, path.name[1:].rsplit(".", 2)[0], age))
    return sorted(found, key=lambda t: -t.age_s)
