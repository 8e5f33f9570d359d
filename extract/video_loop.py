"""Stage one over a list of videos: skip what the cache holds, extract the rest, record each outcome.

The pieces, by role: ``listing`` (which files, which ids, which shard), ``reading`` (ffmpeg started
ahead, a decode thread), ``extractor`` (the model loop), ``provenance`` (what cache.json records
and the check against it) and ``failures`` (the summary and failures.jsonl). Each finished video
is written atomically through ``CacheWriter``, so an interrupted run loses at most the video in
flight and a rerun skips what is complete.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Iterator

from tqdm import tqdm

from t3al.cache import CacheError, CacheWriter, DiskFullError

from .ffmpeg_frames import DecodeError
from .extractor import Extractor, Progress
from .failures import Summary, fail, keep_warned
from .listing import VideoFile

log = logging.getLogger("t3al.extract")


def run_folder(videos: list[VideoFile], writer: CacheWriter, extractor: Extractor,
               summary: Summary) -> Summary:
    """Extract every video not already complete; failures are logged and recorded, never fatal,
    except a full disk (DiskFullError) and a fault of the device (DeviceFault), which stop the run
    without touching any other video's files. Each video is claimed first: one that another run
    on the cache is extracting is waited for and reused, or extracted when that run stopped
    without it. A run lets go of its own videos before it waits, and waits holding nothing, so two
    runs never wait for each other."""
    todo = []
    for video in videos:
        try:
            stat = video.stat
        except OSError as err:
            fail(writer, summary, video.video_id, video.path, f"unreadable ({err.strerror})")
            continue
        if writer.is_complete(video.video_id, stat.st_size, stat.st_mtime):
            summary.skipped.append(video.video_id)
        else:
            todo.append((video, stat))
    if summary.skipped:
        log.info("%d videos already complete in the cache, skipped", len(summary.skipped))
    mine, theirs = [], []
    with contextlib.ExitStack() as claims:  # this run's own videos, let go before it waits for another run's
        for video, stat in todo:
            held = claims.enter_context(writer.claimed(video.video_id))
            (mine if held else theirs).append((video, stat))
        _extract(mine, writer, extractor, summary)
    if theirs:
        log.info("%d video(s) are being extracted by another run on this cache: waiting for them", len(theirs))
    for video, stat in theirs:  # one at a time, in listing order: two waiting runs never wait for each other
        with writer.claimed(video.video_id, wait=True):
            if writer.is_complete(video.video_id, stat.st_size, stat.st_mtime):
                summary.skipped.append(video.video_id)
            else:
                _extract([(video, stat)], writer, extractor, summary)
    return summary


def _extract(todo: list, writer: CacheWriter, extractor: Extractor, summary: Summary) -> None:
    """Extract the videos of ``todo`` (claimed by this run) into the cache, recording each outcome."""
    with tqdm(total=len(todo), unit="video", desc="extract", dynamic_ncols=True) as bar:
        def within(video: VideoFile, seconds: float, duration: float) -> None:
            bar.set_postfix_str(_within(video, seconds, duration))

        with contextlib.closing(extractor.records(todo, within)) as outcomes, \
                writer.in_progress([video.video_id for video, _ in todo]) as next_video:  # a stop ends ffmpeg at once
            for video, outcome in _named(outcomes, todo, within):
                try:
                    if isinstance(outcome, Exception):
                        raise outcome
                    writer.write_video(outcome)
                    summary.done.append(video.video_id)
                    if outcome.decode_warnings:
                        keep_warned(writer, summary, video, outcome.decode_warnings)
                except DiskFullError:
                    raise
                except (DecodeError, CacheError, OSError, RuntimeError, ValueError) as err:
                    fail(writer, summary, video.video_id, video.path, str(err))
                bar.update()
                next_video()


def _named(outcomes: Iterator, todo: list, within: Progress) -> Iterator:
    """``outcomes`` (one per video of ``todo``, in order), each video shown as work on it starts."""
    for video, _ in todo:
        within(video, 0.0, float("nan"))
        outcome = next(outcomes, None)
        if outcome is None:
            return
        yield outcome


def _within(video: VideoFile, seconds: float, duration: float) -> str:
    """The video being worked on and how far into it, beside the bar of whole videos."""
    of = f"/{duration:.0f}" if math.isfinite(duration) else ""
    return f"{video.path.name}: {seconds:.0f}{of} s"
