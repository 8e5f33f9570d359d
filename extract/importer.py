"""Import the pre-extracted features and captions published with T3AL into a cache.

Published layout: ``<video_id>.npy`` (N x 768, CoCa ViT-L/14 vision features before ``visual.proj``,
one row per frame, made with the ``t3al-public`` preprocessing) and ``<video_id>.txt`` with one
caption per line, ``<index>.jpg-<caption>``, caption ``index`` describing frame ``index * 3``.
The public code reads only the text between the first and second ``-`` of a line (so "t-shirt"
becomes "t"); ``caption_text="public"`` reads them the same way, "full" keeps the whole caption.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from t3al.cache import CacheError, CacheInfo, DiskFullError, VideoRecord, check_video_id
from t3al.manifests import read_text

from .defaults import PROMPT_TEMPLATE
from .failures import Summary, fail
from .models import LoadedModel, encode_texts, model_head
from .provenance import TOOL_VERSION, open_cache

log = logging.getLogger("t3al.extract")
_CAPTION_LINE = re.compile(r"^\s*(\d+)\.jpg-(.*)$")


def read_caption_file(path: Path, stride: int, n_frames: int, text: str = "full") -> tuple[np.ndarray, list[str]]:
    """Frame index and text of each caption line; lines past the last frame are dropped.

    ``text``: "full" keeps everything after ``<index>.jpg-``; "public" keeps what the public code
    keeps, the part between the line's first and second ``-``."""
    frames, texts = [], []
    for number, line in enumerate(read_text(path, ValueError).splitlines(), 1):
        if not line.strip():
            continue
        match = _CAPTION_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected `<index>.jpg-<caption>`, got {line[:60]!r}")
        frame = int(match.group(1)) * stride
        if frame < n_frames:
            frames.append(frame)
            texts.append((match.group(2) if text == "full" else line.split("-")[1]).strip())
    return np.array(frames, dtype=np.int64), texts


def _video_rates(manifest: str | None) -> dict[str, float]:
    """Each manifest video's frame rate, where the manifest gives one."""
    if manifest is None:
        return {}
    from t3al.manifests import Manifest

    videos = Manifest.load(manifest).videos
    return {vid: float(meta["fps"]) for vid, meta in videos.items() if meta.get("fps")}


def import_info(loaded: LoadedModel, feature_dtype: str, caption_stride: int, caption_text: str = "full") -> CacheInfo:
    """``cache.json`` of an imported cache: the public extraction's preprocessing and sampling."""
    return CacheInfo(
        model=loaded.identity,
        feature_dtype=feature_dtype,
        preprocess={"mode": "t3al-public", "size": loaded.image_size, "resize": "squash to size x size",
                    "channels": "BGR", "interpolation": "bicubic", "mean": list(loaded.mean),
                    "std": list(loaded.std), "precision": loaded.applied_precision,
                    "source": "imported T3AL pre-extracted features"},
        sampling={"policy": "every frame", "fps": None, "decoder": "published features"},
        captions={"fps": None, "frame_stride": caption_stride, "generation": "published T3AL captions",
                  "text": caption_text},
        prompt_template=PROMPT_TEMPLATE,
        tool_version=TOOL_VERSION,
    )


def import_published(features_dir: Path, cache_dir: Path, loaded: LoadedModel, class_names: list[str],
                     captions_dir: Path | None = None, caption_stride: int = 3, manifest: str | None = None,
                     fps: float | None = None, feature_dtype: str = "float32", caption_text: str = "full") -> Summary:
    """Write one cache video per ``.npy`` file; caption texts are encoded with ``loaded``'s text tower."""
    writer = open_cache(cache_dir, import_info(loaded, feature_dtype, caption_stride, caption_text))
    if manifest:
        writer.attach_manifest(manifest)
    writer.write_head(model_head(loaded, class_names, writer.info.prompt_template))
    rates = _video_rates(manifest)
    summary = Summary()
    files = sorted(features_dir.glob("*.npy"))
    if not files:
        raise CacheError(f"{features_dir}: no .npy feature files")
    for path in tqdm(files, unit="video", desc="import", dynamic_ncols=True):
        video_id = path.stem
        try:
            rate = rates.get(video_id, fps)
            if not rate:
                raise ValueError("no frame rate: give --fps or a manifest with this video's fps")
            stat = path.stat()
            if writer.is_complete(check_video_id(video_id), stat.st_size, stat.st_mtime):
                summary.skipped.append(video_id)
                continue
            writer.write_video(_record(path, video_id, rate, loaded, captions_dir, caption_stride, caption_text, stat))
            summary.done.append(video_id)
        except DiskFullError:
            raise
        except (ValueError, OSError, CacheError) as err:
            fail(writer, summary, video_id, path, str(err))
    return summary


def _record(path: Path, video_id: str, fps: float, loaded: LoadedModel, captions_dir: Path | None,
            stride: int, caption_text: str, stat: os.stat_result) -> VideoRecord:
    features = np.load(path, mmap_mode="r")
    width = loaded.model.visual.proj.shape[0]
    if features.ndim != 2 or features.shape[1] != width:
        raise ValueError(f"expected an N x {width} feature matrix for {loaded.identity.name}, got shape {features.shape}")
    n = features.shape[0]
    frames, texts = np.zeros(0, dtype=np.int64), []
    caption_file = captions_dir / f"{video_id}.txt" if captions_dir else None
    if caption_file is not None:
        if caption_file.is_file():
            frames, texts = read_caption_file(caption_file, stride, n, caption_text)
        else:
            log.warning("%s: no caption file %s", video_id, caption_file)
    return VideoRecord(
        video_id=video_id,
        features=np.asarray(features, dtype=np.float32),
        timestamps=np.arange(n) / fps,
        fps=fps,
        caption_frames=frames,
        caption_texts=texts,
        caption_features=encode_texts(loaded, texts) if texts else np.zeros((0, 0)),
        duration=n / fps,
        source_path=str(path.resolve()),
        source_size=stat.st_size,
        source_mtime=stat.st_mtime,
    )
