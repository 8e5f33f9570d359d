"""`t3al-extract status`: how far the stage-one jobs filling one cache have got, video by video."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from t3al.cache import CacheError, CacheReader, safe_video_id
from t3al.cache.schema import HEAD_FILE
from t3al.cache.inventory import StoredVideo, pending_files, stored_videos

from .listing import list_videos

STATES = ("done", "stale", "in_progress", "failed", "missing")


@dataclass(frozen=True)
class Entry:
    """One video in one state, and why (empty for done and plain missing videos); ``name``: the
    video's own name where its cache id differs (``safe_video_id``)."""

    video_id: str
    detail: str = ""
    name: str = ""

    def line(self) -> str:
        named = f"{self.video_id} ({self.name})" if self.name else self.video_id
        return f"{named}: {self.detail}" if self.detail else named


@dataclass
class CacheStatus:
    """Every known video in exactly one state; ``expected`` counts the videos the cache should hold
    (from VIDEOS_DIR, else the cache's manifest; None when neither is known)."""

    cache: str
    expected: int | None
    head: str = ""  # why head.h5 cannot be read ('' when it can, or when there is none yet)
    done: list[Entry] = field(default_factory=list)
    stale: list[Entry] = field(default_factory=list)
    in_progress: list[Entry] = field(default_factory=list)
    failed: list[Entry] = field(default_factory=list)
    missing: list[Entry] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {state: len(getattr(self, state)) for state in STATES}

    def to_json(self) -> str:
        return json.dumps({"cache": self.cache, "expected": self.expected, "head": self.head, "counts": self.counts(),
                           **{state: [asdict(e) for e in getattr(self, state)] for state in STATES}}, indent=2)


def _sources(cache: CacheReader, videos_dir: Path | None) -> tuple[dict[str, os.stat_result | None], dict[str, str],
                                                                    dict[str, str]]:
    """Videos the cache should hold, by cache id, with their file's stat when VIDEOS_DIR is given
    (its video files by extension, as ``run --only-videos`` and t3al-localize list them: a
    readme.txt is never a video to wait for), else from the cache's manifest, without stat; the
    files ``run`` will refuse, with the reason; and the videos' own names where they differ from their ids."""
    if videos_dir is not None:
        videos, refused = list_videos(videos_dir, only_videos=True)
        stats: dict[str, os.stat_result | None] = {}
        for video in videos:
            try:
                stats[video.video_id] = video.stat
            except OSError:
                stats[video.video_id] = None
        names = {video.video_id: video.name for video in videos}
        return stats, {video_id: reason for video_id, _, reason in refused}, names
    if cache.manifest_path is not None:
        from t3al.manifests import Manifest
        names = {safe_video_id(name): name for name in Manifest.load(cache.manifest_path).videos}
        return dict.fromkeys(names), {}, names
    return {}, {}, {}


def _why_stale(stored: StoredVideo, model_id: str, stat: os.stat_result | None) -> str:
    """Why a complete file must be extracted again ('' when it must not): the rules ``run`` applies."""
    if stored.error:
        return stored.error
    if stored.model_id != model_id:
        return f"written by model {stored.model_id!r}, the cache is {model_id!r}"
    if stat is not None and (stat.st_size != stored.source_size or stat.st_mtime != stored.source_mtime):
        return (f"source changed since extraction (size {stored.source_size} -> {stat.st_size} bytes, "
                f"modified {stat.st_mtime - stored.source_mtime:+.0f} s later)")
    return ""


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _head_problem(reader: CacheReader) -> str:
    """Why the cache's head.h5 cannot be read ('' when it can or is not written yet)."""
    if not (reader.root / HEAD_FILE).is_file():
        return ""
    try:
        reader.head()
    except CacheError as err:
        return f"{err}; delete it, then rerun t3al-extract to write it again"
    return ""


def cache_status(cache_dir: str | os.PathLike, videos_dir: str | os.PathLike | None = None,
                 now: float | None = None, verify: bool = False) -> CacheStatus:
    """Sort every video of the cache and of VIDEOS_DIR (or of the cache's manifest) into done,
    stale, in progress, failed and missing; read-only, safe while extraction jobs run. Videos kept
    with decode warnings are done (with the warning), temporaries a writer would remove as stale
    (``STALE_TEMPORARY_S``) are reported as left by a stopped job. Each file's arrays are opened
    (a truncated or damaged file is stale); ``verify`` reads every array back."""
    reader = CacheReader(cache_dir)
    sources, refused, names = _sources(reader, Path(videos_dir) if videos_dir is not None else None)
    status = CacheStatus(str(cache_dir), len(sources) + len(refused) if sources or refused or videos_dir else None,
                         _head_problem(reader))
    seen = set()
    for stored in stored_videos(cache_dir, verify):
        seen.add(stored.video_id)
        reason = _why_stale(stored, reader.model_id, sources.get(stored.video_id))
        name = stored.name if stored.name != stored.video_id else ""
        if reason:
            status.stale.append(Entry(stored.video_id, reason, name))
        else:
            kept = f"kept with decode warnings: {stored.decode_warnings[0]}" if stored.decode_warnings else ""
            status.done.append(Entry(stored.video_id, kept, name))
    for temporary in pending_files(cache_dir, now):
        if not temporary.target.endswith(".h5") or Path(temporary.target).stem in seen:
            continue
        video_id = Path(temporary.target).stem
        if temporary.stale:  # to be done again: the next run removes the file and extracts the video
            why = "its process has ended" if temporary.writer_gone else f"no write for {_age(temporary.age_s)}"
            status.missing.append(Entry(video_id, f"left by a stopped job ({why}; the next run removes "
                                                  f"{temporary.path} and extracts it)"))
        else:
            status.in_progress.append(Entry(video_id, f"being extracted, started {_age(temporary.age_s)} ago "
                                                      f"({temporary.path})"))
        seen.add(video_id)
    for failure in reader.failures():
        if failure["video_id"] not in seen:
            status.failed.append(Entry(failure["video_id"], failure["reason"]))
            seen.add(failure["video_id"])
    for video_id in sorted(set(sources) | set(refused)):
        if video_id not in seen:
            name = names.get(video_id, video_id)
            status.missing.append(Entry(video_id, refused.get(video_id, ""), name if name != video_id else ""))
    return status


def format_status(status: CacheStatus, limit: int = 20) -> str:
    """A summary line, then up to ``limit`` videos of each state with reasons (of done: those kept
    with decode warnings)."""
    counts = status.counts()
    of = f" of {status.expected} expected" if status.expected is not None else ""
    lines = [f"{status.cache}: " + ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in counts.items()) + of]
    if status.head:
        lines.append(f"head: {status.head}")
    for state in STATES:
        entries = [e for e in getattr(status, state) if state != "done" or e.detail]
        if not entries:
            continue
        lines.append("done, kept with decode warnings:" if state == "done" else f"{state.replace('_', ' ')}:")
        shown = entries[:limit] if limit > 0 else entries
        lines += [f"  {e.line()}" for e in shown]
        if len(shown) < len(entries):
            lines.append(f"  ... and {len(entries) - limit} more (--limit 0 lists all, --json for scripts)")
    return "\n".join(lines)
