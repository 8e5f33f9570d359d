"""Frames ahead of the model: each video's ffmpeg started early and a thread that decodes ahead.

The next video's ffmpeg runs while the current one is read, and ``prefetch`` keeps a few batches
decoded while the model works on the previous one.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Iterator

from .ffmpeg_frames import DecodeError, FrameGeometry, FrameStream, probe
from .listing import VideoFile


def decode_videos(todo: list[tuple[VideoFile, os.stat_result]], geometry: FrameGeometry, batch_size: int,
                  fps: float | None = None) -> Iterator[tuple]:
    """``(video, stat, info, frames, times)`` per batch; ``frames`` None closes a video (``times``
    then holds its decode warnings), ``info`` is a DecodeError when the video cannot be decoded.

    The next video's ffmpeg is started as soon as the current one is, so that it has frames ready
    when the current video ends (one more ffmpeg process in memory, mostly waiting on its pipe).
    """
    started = _started_streams(todo, geometry, fps)
    current = next(started, None)
    ahead = None
    try:
        while current is not None:
            ahead = next(started, None)
            video, stat, stream = current
            try:
                if isinstance(stream, DecodeError):
                    raise stream
                for frames, times in stream.batches(batch_size):
                    yield video, stat, stream.info, frames, times
                yield video, stat, stream.info, None, stream.warnings
            except DecodeError as err:
                yield video, stat, err, None, None
            current, ahead = ahead, None
    finally:
        for item in (current, ahead):
            if item is not None and isinstance(item[2], FrameStream):
                item[2].close()


def _started_streams(todo: list[tuple[VideoFile, os.stat_result]], geometry: FrameGeometry,
                     fps: float | None) -> Iterator[tuple]:
    """``(video, stat, FrameStream or DecodeError)`` per video, its ffmpeg started when yielded."""
    for video, stat in todo:
        try:
            yield video, stat, FrameStream(probe(video.path), geometry, fps)
        except DecodeError as err:
            yield video, stat, err


def prefetch(items: Iterator, depth: int) -> Iterator:
    """Run ``items`` in a thread, ``depth`` items ahead; exceptions surface in the consumer.

    Closing it (or leaving it early) stops the thread and then closes ``items``, so that a
    generator such as ``decode_videos`` stops its ffmpeg processes at once.
    """
    done = object()
    box: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                box.put(("item", item))
        except BaseException as err:  # handed to the consumer
            box.put(("error", err))
        box.put(("done", done))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = box.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get(timeout=0.05)
            except queue.Empty:
                pass
        if hasattr(items, "close"):
            items.close()
