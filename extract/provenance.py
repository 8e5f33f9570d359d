"""What ``cache.json`` records about how the stored numbers were made, and the check that refuses
to mix numbers made otherwise into one cache.

Kept free of torch and open_clip: the cache directory is checked before any model loads.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from t3al.cache import CacheError, CacheInfo, CacheReader, CacheWriter

from .ffmpeg_frames import FrameGeometry, ffmpeg_binary, has_zscale
from .defaults import PROMPT_TEMPLATE

if TYPE_CHECKING:
    from .extractor import Settings
    from .models import LoadedModel

log = logging.getLogger("t3al.extract")
TOOL_VERSION = "t3al-extract 1"
PROVENANCE = {("sampling", "ffmpeg")}  # recorded, but not a setting: the same build may live at another path


def cache_info(loaded: LoadedModel, settings: Settings, feature_dtype: str) -> CacheInfo:
    """``cache.json`` for this model and these settings."""
    geometry = FrameGeometry(loaded.image_size, settings.preprocess)
    return CacheInfo(
        model=loaded.identity,
        feature_dtype=feature_dtype,
        preprocess={
            "mode": geometry.mode,
            "size": loaded.image_size,
            "resize": "shortest side, centre crop" if geometry.mode == "model" else "squash to size x size",
            "channels": geometry.channels,
            "interpolation": loaded.interpolation,
            "resizer": f"ffmpeg {'zscale' if has_zscale(ffmpeg_binary()) else 'swscale'} bicubic (Catmull-Rom, a=-0.5)",
            "mean": list(loaded.mean),
            "std": list(loaded.std),
            "precision": loaded.applied_precision,
        },
        sampling={"policy": "every frame" if not settings.fps else "resampled", "fps": settings.fps,
                  "decoder": "ffmpeg", "ffmpeg": ffmpeg_binary()},
        captions={"fps": settings.caption_fps if loaded.can_caption else 0.0,
                  **(settings.captioning().describe() if loaded.can_caption else {"generation": "none"})},
        prompt_template=PROMPT_TEMPLATE,
        tool_version=TOOL_VERSION,
    )


def stored_settings(info: CacheInfo) -> dict[tuple[str, str], object]:
    """Every recorded setting that changes the stored numbers: preprocessing (and the model's
    precision), sampling, captions (only their rate when there are none) and the prompt template."""
    settings: dict[tuple[str, str], object] = {("prompt", "template"): info.prompt_template}
    for section in ("preprocess", "sampling", "captions"):
        values = getattr(info, section)
        if section == "captions" and values.get("fps") == 0:
            values = {"fps": values.get("fps")}
        settings.update({(section, key): value for key, value in values.items() if (section, key) not in PROVENANCE})
    return settings


def settings_mismatch(cached: CacheInfo, wanted: CacheInfo) -> str | None:
    """Why features made with ``wanted`` must not join a cache made with ``cached``, if they must not."""
    old, new = stored_settings(cached), stored_settings(wanted)
    for section, key in sorted(old.keys() | new.keys()):
        if old.get((section, key)) != new.get((section, key)):
            return (f"the cache was made with {section} {key} = {old.get((section, key))!r}, this run asks for "
                    f"{new.get((section, key))!r}")
    return None


def precision_mismatch(cached: CacheInfo, loaded: LoadedModel) -> str | None:
    """Why text features encoded by ``loaded`` must not join a cache made with ``cached`` (another
    precision: fp16 or bf16 autocast on CUDA, fp32 elsewhere), if they must not."""
    recorded = cached.preprocess.get("precision")
    if recorded == loaded.applied_precision:
        return None
    remedy = {"fp32": "--precision fp32 (or --device cpu)", "fp16": "--precision fp16 on a CUDA device",
              "bf16": "--precision bf16 on a CUDA device"}.get(recorded, "another cache directory")
    return (f"the cache was made with preprocess precision = {recorded!r}, this run encodes in "
            f"{loaded.applied_precision!r} on {loaded.device}; use {remedy}")


def check_cache_dir(cache_dir: Path) -> None:
    """Refuse, before any model is loaded, a cache path that is a file or holds a malformed cache.json."""
    if cache_dir.exists() and not cache_dir.is_dir():
        raise CacheError(f"{cache_dir}: not a directory; give a cache directory (new or existing)")
    if (cache_dir / "cache.json").exists():
        CacheReader(cache_dir)


def open_cache(cache_dir: Path, wanted: CacheInfo) -> CacheWriter:
    """A writer of ``cache_dir`` for features made as ``wanted`` says; CacheError when the cache was
    made by another model or with other settings."""
    writer = CacheWriter(cache_dir, wanted)
    mismatch = settings_mismatch(writer.info, wanted)
    if mismatch:
        raise CacheError(f"{cache_dir}: {mismatch}; use the same settings or another cache directory")
    if writer.removed_temporaries:
        log.info("removed %d temporary file(s) left by killed writers", len(writer.removed_temporaries))
    return writer
