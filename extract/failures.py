"""What a stage-one run reports: its summary line, and one failures.jsonl entry per video it could
not cache (or cached with decode warnings)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from t3al.cache import CacheError, CacheWriter

from .listing import VideoFile

log = logging.getLogger("t3al.extract")


@dataclass
class Summary:
    """What a run did, for the final line and the exit code."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)  # done, but kept with decode warnings

    def line(self) -> str:
        kept = f" ({len(self.warned)} kept with decode warnings)" if self.warned else ""
        return f"{len(self.done)} done{kept}, {len(self.skipped)} skipped, {len(self.failed)} failed"


def keep_warned(writer: CacheWriter, summary: Summary, video: VideoFile, warnings: list[str]) -> None:
    """One log line and one failures.jsonl entry (``kept``) for a video cached with decode warnings."""
    reason = f"{video.path}: cached with decode warnings ({'; '.join(warnings)})"
    log.warning("warning: %s", reason)
    writer.record_failure(video.video_id, str(video.path), reason, kept=True)
    summary.warned.append(video.video_id)


def fail(writer: CacheWriter, summary: Summary, video_id: str, path: Path, reason: str) -> None:
    """One log line and one failures.jsonl entry for a video that could not be processed.

    Features cached from an earlier version of the file are removed: stage two must not read them
    as the video's.
    """
    if not reason.startswith(str(path)):
        reason = f"{path}: {reason}"
    try:
        removed = writer.remove_video(video_id)
    except CacheError:
        removed = False
    if removed:
        reason += "; the features cached from an earlier version of this file were removed"
    log.error("failed: %s", reason)
    writer.record_failure(video_id, str(path), reason)
    summary.failed.append((video_id, reason))
