"""What a cache directory holds right now, file by file, for progress reports while writers run.

By default reads only each video file's attributes and the headers of its arrays (no feature
arrays), so it stays quick on large caches: a truncated file or damaged metadata is found; with
``verify`` every array is read and checked. It never changes anything.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from .files import writer_gone
from .schema import VIDEOS_DIR
from .store import STALE_TEMPORARY_S, array_problem, temporary_files, temporary_target


@dataclass(frozen=True)
class StoredVideo:
    """One complete video file: its id and the video's own name, the source it was made from and
    the decoder's warnings it was kept with, or why its attributes are unreadable."""

    video_id: str
    name: str = ""
    source_size: int = -1
    source_mtime: float = -1.0
    model_id: str = ""
    decode_warnings: list[str] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class TemporaryFile:
    """A file being written: the file it will become, seconds since its last write, whether its
    writer (on this machine) has ended, and whether the next writer removes it as left by a killed
    one (its writer ended, or no write for ``STALE_TEMPORARY_S``)."""

    path: Path
    target: str
    age_s: float
    writer_gone: bool = False

    @property
    def stale(self) -> bool:
        return self.writer_gone or self.age_s > STALE_TEMPORARY_S


def stored_videos(root: str | os.PathLike, verify: bool = False) -> list[StoredVideo]:
    """Every complete video file of the cache, sorted by id, with its source attributes; a file whose
    arrays do not open (or, ``verify``, do not read back as finite, ordered numbers) has an error."""
    folder = Path(root) / VIDEOS_DIR
    if not folder.is_dir():
        return []
    return [_stored(path, verify) for path in sorted(folder.glob("*.h5")) if not path.name.startswith(".")]


def _stored(path: Path, verify: bool) -> StoredVideo:
    try:
        with h5py.File(path, "r") as f:
            attrs = f.attrs
            problem = array_problem(f)
            deep = array_problem(f, verify=True) if verify and not problem else ""
            problem = problem or (f"{deep}; delete it, then rerun" if deep else "")
            if problem:
                return StoredVideo(path.stem, str(attrs.get("name", path.stem)), error=f"damaged file {path} ({problem})")
            return StoredVideo(path.stem, str(attrs.get("name", path.stem)), int(attrs["source_size"]),
                               float(attrs["source_mtime"]), str(attrs["model_id"]),
                               json.loads(attrs.get("decode_warnings", "[]")))
    except (OSError, KeyError, ValueError) as err:
        return StoredVideo(path.stem, path.stem, error=f"unreadable file {path} ({err})")


def pending_files(root: str | os.PathLike, now: float | None = None) -> list[TemporaryFile]:
    """The writers' temporary files in the cache and its videos folder, oldest first."""
    found = [TemporaryFile(path, temporary_target(path), age, writer_gone(path))
             for path, age in temporary_files(Path(root), now)]
    return sorted(found, key=lambda t: -t.age_s)
