"""``t3al-localize --live SOURCE``: stage one on a stream as it arrives, appended to the cache, and
causal T3AL on it (docs/online.md); each detection is one flushed line of ``detections.jsonl`` the
moment it is emitted; at the end of the stream, or on SIGINT / SIGTERM, the run's usual outputs."""
from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

import click
import numpy as np
import torch
from tqdm import tqdm

from t3al.adapt.config import DEFAULT_PRESET, AdaptConfig, ConfigError
from t3al.adapt.algorithm.online import Emission, OnlineT3AL
from t3al.adapt.engine.output import OutputError, claimed, what_it_replaces
from t3al.adapt.engine.pipeline import run_record, split_detections
from t3al.adapt.engine.spec import RunSpec, resolve_configs
from t3al.adapt.engine.vocabulary import vocabulary_spec
from t3al.adapt.engine.work import video_seed
from t3al.cache import CacheError, CacheReader, CacheWriter, T3alError
from t3al.extract.ffmpeg_frames import FrameGeometry
from t3al.extract.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED
from t3al.extract.extractor import Extractor, Settings
from t3al.extract.folder import ensure_prompts, load
from t3al.extract.live import LiveDecoder, LiveVideo
from t3al.extract.provenance import cache_info, open_cache

from .viewer import collect_views, write_viewer

CHECKPOINT_S = 30.0  # stream seconds between rewrites of the video's cache file (and at the end)
JSONL = "detections.jsonl"


def live_video_id(source: str) -> str:
    """A cache id for a stream: its file or path stem (``cam.ts``, ``/tmp/feed``, ``rtsp://h/live``),
    else its host, made of the characters a cache id allows."""
    parsed = urlparse(source)
    stem = Path(parsed.path).stem or parsed.netloc or "live"
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", stem).lstrip(".-_") or "live"


@dataclass
class LiveRun:
    """What a live run leaves: the video's id, the frames and stream seconds received, the emitted
    detections' count, whether a signal stopped it, and the wall seconds from its start to the outputs."""

    video_id: str
    frames: int
    stream_s: float
    detections: int
    stopped: bool
    wall_s: float


@contextlib.contextmanager
def stopping_on_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """SIGINT and SIGTERM call ``stop`` (which ends the stream) instead of raising, so a line being
    written stays whole; the signals received are listed in the yielded list."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def check_live_folder(folder: Path, record: dict, overwrite: bool) -> None:
    """Before the stream starts: the folder may take this run (``what_it_replaces``), and holds no
    earlier stream's detections.jsonl unless ``overwrite``."""
    what_it_replaces(folder, record, overwrite)
    if (folder / JSONL).exists() and not overwrite:
        raise OutputError(f"{folder / JSONL} exists (an earlier stream's); choose another --out, or --overwrite")


def run_live(source: str, decoder: LiveDecoder, video: LiveVideo, writer: CacheWriter, spec: RunSpec,
             video_id: str, folder: Path, on_piece: Callable[[float, float], None] = lambda t, lag: None) -> LiveRun:
    """Decode, encode and localize ``source`` piece by piece (one chunk of the online protocol each),
    append each emitted detection to ``folder/detections.jsonl``, rewrite the video's cache file every
    ``CHECKPOINT_S`` of stream; at the end (or a signal) close the stream, cache it, write the outputs.
    ``on_piece(stream seconds, seconds behind real time)`` reports progress."""
    config: AdaptConfig = spec.config
    head = spec.reader.head()
    classes = list(spec.classes)
    class_features = torch.from_numpy(head.prompt_features[head.prompt_index(classes)])
    stream = OnlineT3AL(config, head, class_features, torch.Generator().manual_seed(video_seed(spec.seed, video_id)),
                        video_id)
    dtype = np.dtype(writer.info.feature_dtype)
    folder.mkdir(parents=True, exist_ok=True)
    started, checkpoint, newest = time.perf_counter(), CHECKPOINT_S, 0.0
    with open(folder / JSONL, "w", encoding="utf-8") as lines, stopping_on_signals(decoder.process.terminate) as got:
        def emit(emissions: list[Emission]) -> None:
            for emission in emissions:
                lines.write(json.dumps(emission.row(video_id, classes)) + "\n")
                lines.flush()

        for frames, times in decoder.pieces(config.chunk):
            piece = video.add(frames, times)
            cached = torch.from_numpy(piece.features.astype(dtype).astype(np.float32))  # what the cache will hold
            emit(stream.feed(cached, times, piece.caption_frames, torch.from_numpy(
                piece.caption_features.astype(dtype).astype(np.float32))))
            newest = float(times[-1])
            on_piece(newest, time.perf_counter() - started - newest)
            if newest >= checkpoint:
                writer.write_video(video.record(video_id, source))
                checkpoint = newest + CHECKPOINT_S
        emit(stream.finish())
    writer.write_video(video.record(video_id, source))
    write_outputs(spec, folder, stream, video_id)
    return LiveRun(video_id, stream.seen, newest, len(stream.emissions), bool(got), time.perf_counter() - started)


def write_outputs(spec: RunSpec, folder: Path, stream: OnlineT3AL, video_id: str) -> None:
    """The run's usual files from what the stream emitted (config.json, detections.json|csv,
    curves/), committed into ``folder`` beside detections.jsonl."""
    spec = vocabulary_spec(CacheReader(spec.reader.root), spec.classes, (video_id,), spec.preset, spec.configs,
                           spec.seed)
    record = run_record(spec, spec.name)
    result = stream.result()
    with claimed({spec.name: folder}, {spec.name: record}, overwrite=True) as outputs:
        detections = split_detections([result], list(spec.classes), str(folder / "detections.json"))
        outputs[spec.name].write_split(None, detections, [result], list(spec.classes))
        outputs[spec.name].commit()


def localize_live(source: str, names: list[str], cache: Path, out: Path | None, options: dict, *, preset: str,
                  config_file: Path | None, seed: int, model_name: str | None, pretrained: str | None,
                  model_configs: tuple[str, ...], extract_device: str, caption_fps: float | None, overwrite: bool,
                  progress: bool) -> tuple[LiveRun, Path]:
    """The whole ``--live`` command: model, cache and prompts, the folder checked, then ``run_live``
    with a progress line in stream time; returns the run and its folder."""
    configs = resolve_configs(preset, config_file, {**options, "protocol": "online"}, seed=seed)
    loaded = load(model_name or DEFAULT_MODEL, pretrained or DEFAULT_PRETRAINED, model_configs, extract_device, "auto")
    settings = Settings(caption_fps=Settings.caption_fps if caption_fps is None else caption_fps)
    if next(iter(configs.values())).suppression and not (settings.caption_fps > 0 and loaded.can_caption):
        raise ConfigError("suppression needs captions, and this stream gets none (--caption-fps 0, or a model without "
                          "a caption decoder): pass --no-suppression", "suppression")
    writer = open_cache(cache, cache_info(loaded, settings, "float16"))
    ensure_prompts(writer, loaded, names)
    reader = CacheReader(cache)
    video_id = live_video_id(source)
    if video_id in reader and not overwrite:
        raise CacheError(f"{cache} already holds a video {video_id}: choose another --cache, or --overwrite")
    spec = vocabulary_spec(reader, names, (video_id,), preset, configs, seed)
    folder = out or Path("runs") / cache.resolve().name / "localize" / f"live_{video_id}_{spec.name}"
    check_live_folder(folder, run_record(spec, spec.name), overwrite)
    decoder = LiveDecoder(source, FrameGeometry(loaded.image_size, settings.preprocess))
    with tqdm(unit="s", unit_scale=False, disable=not progress, desc=f"live {video_id}",
              bar_format="{desc}: {n:.1f} s of stream [{elapsed}{postfix}]") as bar:
        def on_piece(stream_s: float, behind_s: float) -> None:
            bar.update(stream_s - bar.n)
            bar.set_postfix_str(f"{behind_s:.1f} s behind real time")

        run = run_live(source, decoder, LiveVideo(Extractor(loaded, settings)), writer, spec, video_id, folder,
                       on_piece)
    return run, folder


def live_main(live: str | None, source: Path | None, names: list[str], cache_dir: Path | None, out: Path | None,
              settings: dict, preset: str | None, config_file: Path | None, seed: int, model_name: str | None,
              pretrained: str | None, model_configs: tuple[str, ...], extract_device: str, caption_fps: float | None,
              overwrite: bool, progress: bool) -> None:
    """``t3al-localize --live SOURCE``'s work once the names are parsed: checks, ``localize_live``,
    then the viewer and the summary lines."""
    if live is None:
        raise click.UsageError("give VIDEOS_OR_CACHE (a folder of videos or a cache), or --live SOURCE")
    if source is not None:
        raise click.UsageError(f"give {source} or --live {live}, not both")
    if cache_dir is None:
        raise click.UsageError("--live needs --cache DIR: the stream's features are appended there")
    if settings.get("protocol") not in (None, "online"):
        raise click.UsageError("--live runs the online protocol: leave out --protocol")
    try:
        run, folder = localize_live(live, names, cache_dir, out, settings, preset=preset or DEFAULT_PRESET,
                                    config_file=config_file, seed=seed, model_name=model_name, pretrained=pretrained,
                                    model_configs=model_configs, extract_device=extract_device,
                                    caption_fps=caption_fps, overwrite=overwrite, progress=progress)
    except T3alError as err:
        raise click.ClickException(str(err)) from None
    reader = CacheReader(cache_dir)
    page = write_viewer(folder / "index.html", collect_views(folder, reader, names, [run.video_id], 0), names,
                        f"t3al-localize --live: {run.video_id}", [f"stream {live}, {run.frames} frames, "
                                                                  f"{run.stream_s:.1f} s"])
    ended = "stopped by a signal" if run.stopped else "end of stream"
    click.echo(f"{run.detections} detection(s) in {run.stream_s:.1f} s of stream ({ended}; real-time factor "
               f"{run.stream_s / run.wall_s:.2f}): {folder / 'detections.jsonl'}")
    click.echo(f"viewer: {page}")
