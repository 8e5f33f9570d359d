"""Which files of a folder stage one extracts, under which cache ids, and which of them a shard takes.

Kept free of torch and open_clip: ``t3al-extract status`` lists folders with these rules too.
"""
from __future__ import annotations

import errno
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from t3al.cache import CacheError, check_video_name, safe_video_id

log = logging.getLogger("t3al.extract")
VIDEO_SUFFIXES = frozenset(".3g2 .3gp .asf .avi .flv .m2ts .m4v .mkv .mov .mp4 .mpeg .mpg .mts .ogv .ts .webm "
                           ".wmv".split())


@dataclass(frozen=True)
class VideoFile:
    """One input file, its name (the file's stem) and the id it gets in the cache (``safe_video_id``)."""

    path: Path
    video_id: str
    name: str = ""

    @property
    def stat(self) -> os.stat_result:
        return self.path.stat()


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def in_shard(video_id: str, shard: tuple[int, int]) -> bool:
    """Deterministic split by a hash of the id: stable when videos are added or listed differently."""
    index, count = shard
    return zlib.crc32(video_id.encode("utf-8")) % count == index


def is_other_file(path: Path) -> bool:
    """A regular file whose extension is not a video's (``readme.txt``, ``cover.jpg``)."""
    return path.suffix.lower() not in VIDEO_SUFFIXES and path.is_file()


def list_videos(folder: Path, only_videos: bool = False) -> tuple[list[VideoFile], list[tuple[str, Path, str]]]:
    """Candidate files of ``folder`` (sorted; hidden ones are skipped with one log line; with
    ``only_videos``, files whose extension is not a video's are left out too) and the ones refused
    before decoding.

    Refused: dangling symbolic links, folders named like video files, names that cannot name a
    video and names that give several files one id (which file would the cache key mean?). Other
    folders are not searched (one log line each). A file named ``my clip.mp4`` gets the id
    ``safe_video_id("my clip")``; its name stays in the cache.
    """
    by_id: dict[str, list[Path]] = {}
    refused = []
    entries = sorted(folder.iterdir())
    hidden = [p.name for p in entries if p.name.startswith(".")]
    if hidden:
        log.info("%s: %d hidden entr%s skipped: %s", folder, len(hidden), "y" if len(hidden) == 1 else "ies",
                 ", ".join(hidden[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else ""))
    for path in (p for p in entries if not p.name.startswith(".") and not (only_videos and is_other_file(p))):
        reason = _not_a_file(path)
        if reason is None:
            try:
                by_id.setdefault(safe_video_id(path.stem), []).append(path)
            except CacheError as err:
                refused.append((path.name, path, str(err)))
        elif reason:
            refused.append((_id_of(path.stem), path, reason))
    videos = []
    for video_id, paths in sorted(by_id.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            refused.extend((video_id, p, f"name clash: {names} share the video id {video_id!r}; rename one")
                           for p in paths)
        else:
            videos.append(VideoFile(paths[0], video_id, check_video_name(paths[0].stem)))
    return videos, refused


def _not_a_file(path: Path) -> str | None:
    """None for a regular file (or a link to one); why it is refused; "" for a folder left out."""
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        try:
            path.stat()
        except OSError as err:
            if err.errno == errno.ELOOP:
                return f"symbolic link loop (to {os.readlink(path)})"
        return f"dangling symbolic link (to {os.readlink(path)})"
    if path.is_dir():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "a folder named like a video file, not a video"
        log.info("%s: a folder, not searched", path)
        return ""
    return "not a regular file"


def _id_of(name: str) -> str:
    """``safe_video_id(name)``, or the name itself when it cannot name a video."""
    try:
        return safe_video_id(name)
    except CacheError:
        return name
