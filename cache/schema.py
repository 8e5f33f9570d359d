"""The written contract between stage one and stage two (schema version 1).

A cache is a directory::

    cache.json            CacheInfo: schema version, model identity, preprocessing, sampling, ...
    head.h5               Head: visual_proj (Dv x E), text_projection (Dt x E), logit_scale,
                          prompts/{class_name, text, features (P x Dt, pre-projection)}
    manifest.json         optional copy of the dataset manifest the cache was built for
    videos/<id>.h5        VideoRecord: features (N x Dv, pre-projection), timestamps (N, seconds),
                          captions/{frame, text, features (M x Dt, pre-projection)} and attributes
                          name, fps, n_frames, duration, source_path, source_size, source_mtime,
                          model_id, decode_warnings
    failures.jsonl        one JSON object per video that could not be processed

Every file is written under a temporary name and renamed into place when complete, so a reader
sees a video either complete or absent, and several writers can fill one directory at once.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import T3alError

SCHEMA_VERSION = 1
INFO_FILE = "cache.json"
HEAD_FILE = "head.h5"
MANIFEST_FILE = "manifest.json"
FAILURES_FILE = "failures.jsonl"
VIDEOS_DIR = "videos"
FEATURE_DTYPES = ("float16", "float32")
_VIDEO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")
# Ids are ASCII: "<id>.h5" and its temporary ".<id>.h5.<pid>.<8 hex>.tmp" (25 more) stay within the
# 255-byte file name limit of Linux and macOS file systems.
MAX_ID_LENGTH = 200
INFO_SECTIONS = ("preprocess", "sampling", "captions")


class CacheError(T3alError):
    """A cache that is missing, malformed, of an unknown schema or of another model."""


def check_video_id(video_id: str) -> str:
    """Return ``video_id`` when it can name a file in ``videos/``, else raise CacheError."""
    if not isinstance(video_id, str) or not _VIDEO_ID.match(video_id) or video_id.endswith(".tmp"):
        raise CacheError(
            f"invalid video id {video_id!r}: use letters, digits and . _ + = - (not starting with . or -)"
        )
    if len(video_id) > MAX_ID_LENGTH:
        raise CacheError(f"invalid video id {video_id[:40]!r}...: {len(video_id)} characters, at most {MAX_ID_LENGTH}")
    return video_id


def check_video_name(name: str) -> str:
    """Return ``name`` when it can name a video (a file stem: non-empty, no ``/`` or NUL), else raise."""
    if not isinstance(name, str) or not name or "/" in name or "\0" in name:
        raise CacheError(f"invalid video name {name!r}: use a file stem (non-empty, without / or NUL)")
    return name


def safe_video_id(name: str) -> str:
    """The cache id of a video named ``name`` (its file stem, or a manifest's video name).

    A valid id of at most ``MAX_ID_LENGTH`` characters is its own id. Any other name (spaces,
    non-ASCII letters, a leading ``-``, a longer name) becomes its ASCII transliteration with other
    characters replaced by ``_``, cut to 80 characters (a valid long name: to ``MAX_ID_LENGTH - 9``),
    plus ``-`` and 8 hex digits of the SHA-1 of the name in Unicode NFC form: readable, distinct for
    distinct names, and the same whether the file system spells the name composed (Linux) or
    decomposed (macOS).
    """
    name = unicodedata.normalize("NFC", check_video_name(name))
    valid = bool(_VIDEO_ID.match(name)) and not name.endswith(".tmp")
    if valid and len(name) <= MAX_ID_LENGTH:
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    base = name[:MAX_ID_LENGTH - 9] if valid else _UNSAFE.sub("_", ascii_name).lstrip("._+=-")[:80] or "video"
    return f"{base}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights produced the features: open_clip model name plus pretrained tag or file hash."""

    name: str
    pretrained: str = ""
    checkpoint_sha256: str = ""

    def key(self) -> str:
        return f"{self.name}|{self.pretrained}|{self.checkpoint_sha256}"

    def describe(self) -> str:
        """The model for a reader: its name and pretrained tag, or the checkpoint file's hash."""
        if self.checkpoint_sha256:
            return f"{self.name}, checkpoint file of sha256 {self.checkpoint_sha256[:12]}"
        return f"{self.name}, pretrained {self.pretrained}" if self.pretrained else self.name


@dataclass
class CacheInfo:
    """The content of ``cache.json``: everything needed to know how the features were made."""

    model: ModelIdentity
    feature_dtype: str = "float16"
    preprocess: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    captions: dict[str, Any] = field(default_factory=dict)
    prompt_template: str = "a video of action {}"
    tool_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.feature_dtype not in FEATURE_DTYPES:
            raise CacheError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {self.feature_dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = INFO_FILE) -> "CacheInfo":
        """Validate the content of ``cache.json``; CacheError names the file and the bad field."""
        if not isinstance(data, dict):
            raise CacheError(f"{source}: not a cache description (expected a JSON object, got "
                             f"{type(data).__name__}); re-extract the cache")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CacheError(
                f"{source}: unknown cache schema version {version!r} (this tool reads version "
                f"{SCHEMA_VERSION}); re-extract the cache or use a matching t3al version"
            )
        for section in INFO_SECTIONS:
            if not isinstance(data.get(section, {}), dict):
                raise CacheError(f"{source}: malformed cache info ({section!r} must be an object)")
        try:
            model = ModelIdentity(**data["model"])
            rest = {k: v for k, v in data.items() if k != "model"}
            return cls(model=model, **rest)
        except (KeyError, TypeError) as err:
            raise CacheError(f"{source}: malformed cache info ({err})") from err


@dataclass
class Head:
    """The model's projections and scale, and the pre-projection features of the class prompts."""

    visual_proj: np.ndarray  # (Dv, E)
    text_projection: np.ndarray  # (Dt, E)
    logit_scale: float  # log of the scale, as open_clip stores it
    class_names: list[str]
    prompts: list[str]
    prompt_features: np.ndarray  # (P, Dt)
    model_id: str = ""

    def __post_init__(self) -> None:
        self.visual_proj = np.asarray(self.visual_proj, dtype=np.float32)
        self.text_projection = np.asarray(self.text_projection, dtype=np.float32)
        self.prompt_features = np.asarray(self.prompt_features, dtype=np.float32).reshape(
            len(self.prompts), -1 if len(self.prompts) else self.text_projection.shape[0]
        )
        self.logit_scale = float(self.logit_scale)
        if self.visual_proj.ndim != 2 or self.text_projection.ndim != 2:
            raise CacheError("visual_proj and text_projection must be matrices")
        if self.visual_proj.shape[1] != self.text_projection.shape[1]:
            raise CacheError(
                f"projection widths differ: visual_proj {self.visual_proj.shape}, "
                f"text_projection {self.text_projection.shape}"
            )
        if len(self.class_names) != len(self.prompts):
            raise CacheError("class_names and prompts must have one entry per prompt")
        if len(self.prompts) and self.prompt_features.shape[1] != self.text_projection.shape[0]:
            raise CacheError(
                f"prompt features have width {self.prompt_features.shape[1]}, "
                f"text_projection expects {self.text_projection.shape[0]}"
            )
        if not np.isfinite(self.logit_scale):
            raise CacheError("logit_scale is not finite")

    def prompt_index(self, class_names: list[str]) -> np.ndarray:
        """Row of the prompt of each class, raising CacheError naming any class without one."""
        rows = {name: i for i, name in enumerate(self.class_names)}
        missing = [name for name in class_names if name not in rows]
        if missing:
            raise CacheError(
                f"{HEAD_FILE}: no class prompt for {', '.join(missing)}; add them with "
                "`t3al-extract prompts CACHE_DIR --classes ...`"
            )
        return np.array([rows[name] for name in class_names], dtype=np.int64)


@dataclass
class VideoRecord:
    """Everything cached for one video; arrays are indexed by sampled frame."""

    video_id: str
    features: np.ndarray  # (N, Dv)
    timestamps: np.ndarray  # (N,) seconds, from the decoder's presentation times
    fps: float
    caption_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    caption_texts: list[str] = field(default_factory=list)
    caption_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    duration: float = float("nan")
    source_path: str = ""
    source_size: int = -1
    source_mtime: float = -1.0
    model_id: str = ""
    name: str = ""  # the video's own name (file stem) when the id had to be made safe; "" = video_id
    decode_warnings: list[str] = field(default_factory=list)  # what the decoder reported, when kept

    def __post_init__(self) -> None:
        check_video_id(self.video_id)
        self.name = self.name or self.video_id
        self.decode_warnings = [str(w) for w in self.decode_warnings]
        self.features = np.asarray(self.features)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        self.caption_frames = np.asarray(self.caption_frames, dtype=np.int64).reshape(-1)
        self.caption_texts = [str(t) for t in self.caption_texts]
        self.caption_features = np.asarray(self.caption_features)
        if self.caption_features.size == 0 and self.caption_features.ndim != 2:
            self.caption_features = np.zeros((0, 0), dtype=np.float32)
        if self.features.ndim != 2:
            raise CacheError(f"video {self.video_id}: features must be N x Dv, got shape {self.features.shape}")
        n = self.features.shape[0]
        if self.timestamps.shape != (n,):
            raise CacheError(f"video {self.video_id}: {n} features but {self.timestamps.shape[0]} timestamps")
        if not len(self.caption_frames) == len(self.caption_texts) == self.caption_features.shape[0]:
            raise CacheError(f"video {self.video_id}: captions need one frame, text and feature row each")
        if len(self.caption_frames) and (self.caption_frames.min() < 0 or self.caption_frames.max() >= n):
            raise CacheError(f"video {self.video_id}: caption frame index outside 0..{n - 1}")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise CacheError(f"video {self.video_id}: fps must be positive, got {self.fps}")

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])
