"""Writing and reading a cache directory; the only module of the project that imports h5py."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from .schema import (
    FAILURES_FILE,
    HEAD_FILE,
    INFO_FILE,
    MANIFEST_FILE,
    VIDEOS_DIR,
    CacheError,
    CacheInfo,
    Head,
    VideoRecord,
    check_video_id,
)

_STR = h5py.string_dtype(encoding="utf-8")


def _atomic_path(final: Path) -> Path:
    """A unique temporary name next to ``final`` that no reader takes for a complete file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(tmp)


def _write_atomically(final: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename into ``final``; the temporary file never survives."""
    tmp = _atomic_path(final)
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_text_atomically(final: Path, text: str) -> None:
    _write_atomically(final, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _strings(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


class CacheWriter:
    """Creates or reopens a cache directory and adds complete files to it, one at a time.

    Opening an existing cache checks that ``info`` names the same model and schema, so one
    directory never mixes features of two models; several writers may share a directory.
    """

    def __init__(self, root: str | os.PathLike, info: CacheInfo) -> None:
        self.root = Path(root)
        self.info = info
        (self.root / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
        self._claim_info()

    def _claim_info(self) -> None:
        path = self.root / INFO_FILE
        if not path.exists():
            tmp = _atomic_path(path)
            try:
                tmp.write_text(json.dumps(self.info.to_dict(), indent=2) + "\n", encoding="utf-8")
                os.link(tmp, path)  # fails when another writer got there first
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        existing = CacheInfo.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
        if existing.model.key() != self.info.model.key():
            raise CacheError(
                f"{path}: cache holds features of {existing.model.key()!r}, refusing to add "
                f"features of {self.info.model.key()!r}; use another cache directory"
            )
        if existing.feature_dtype != self.info.feature_dtype:
            raise CacheError(
                f"{path}: cache stores {existing.feature_dtype} features, not {self.info.feature_dtype}"
            )
        self.info = existing

    @property
    def model_id(self) -> str:
        return self.info.model.key()

    def write_head(self, head: Head) -> None:
        """Write ``head.h5`` (replacing any previous one) with this cache's model identity."""
        head.model_id = self.model_id

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.attrs["model_id"] = self.model_id
                f.create_dataset("visual_proj", data=head.visual_proj.astype(np.float32))
                f.create_dataset("text_projection", data=head.text_projection.astype(np.float32))
                f.create_dataset("logit_scale", data=np.float32(head.logit_scale))
                group = f.create_group("prompts")
                group.create_dataset("class_name", data=head.class_names, dtype=_STR)
                group.create_dataset("text", data=head.prompts, dtype=_STR)
                group.create_dataset("features", data=head.prompt_features.astype(np.float32))

        _write_atomically(self.root / HEAD_FILE, write)

    def add_prompts(self, class_names: list[str], prompts: list[str], features: np.ndarray) -> Head:
        """Add class prompts to ``head.h5``; a class already present gets its prompt replaced."""
        head = CacheReader(self.root).head()
        features = np.asarray(features, dtype=np.float32)
        keep = [i for i, name in enumerate(head.class_names) if name not in set(class_names)]
        merged = Head(
            visual_proj=head.visual_proj,
            text_projection=head.text_projection,
            logit_scale=head.logit_scale,
            class_names=[head.class_names[i] for i in keep] + list(class_names),
            prompts=[head.prompts[i] for i in keep] + list(prompts),
            prompt_features=np.concatenate([head.prompt_features[keep], features.reshape(len(prompts), -1)]),
        )
        self.write_head(merged)
        return merged

    def attach_manifest(self, manifest: str | os.PathLike) -> None:
        """Keep a copy of the dataset manifest in the cache, so stage two needs no other file."""
        _write_atomically(self.root / MANIFEST_FILE, lambda tmp: shutil.copyfile(manifest, tmp))

    def video_path(self, video_id: str) -> Path:
        return self.root / VIDEOS_DIR / f"{check_video_id(video_id)}.h5"

    def is_complete(self, video_id: str, source_size: int, source_mtime: float) -> bool:
        """True when the video is cached from a source of this size and modification time."""
        path = self.video_path(video_id)
        if not path.exists():
            return False
        try:
            with h5py.File(path, "r") as f:
                return (
                    int(f.attrs["source_size"]) == int(source_size)
                    and float(f.attrs["source_mtime"]) == float(source_mtime)
                    and f.attrs["model_id"] == self.model_id
                )
        except (OSError, KeyError):
            return False

    def write_video(self, record: VideoRecord) -> Path:
        """Write one video's file atomically; it appears complete or not at all."""
        dtype = np.dtype(self.info.feature_dtype)
        final = self.video_path(record.video_id)

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("features", data=record.features.astype(dtype))
                f.create_dataset("timestamps", data=record.timestamps.astype(np.float64))
                captions = f.create_group("captions")
                captions.create_dataset("frame", data=record.caption_frames.astype(np.int64))
                captions.create_dataset("text", data=record.caption_texts, dtype=_STR)
                captions.create_dataset("features", data=record.caption_features.astype(dtype))
                f.attrs.update(
                    video_id=record.video_id,
                    fps=float(record.fps),
                    n_frames=record.n_frames,
                    duration=float(record.duration),
                    source_path=str(record.source_path),
                    source_size=int(record.source_size),
                    source_mtime=float(record.source_mtime),
                    model_id=self.model_id,
                )

        _write_atomically(final, write)
        return final

    def record_failure(self, video_id: str, source: str, reason: str) -> None:
        """Append one line to ``failures.jsonl`` (a single small append, safe across writers)."""
        line = json.dumps({"video_id": video_id, "source": str(source), "reason": reason, "time": time.time()})
        fd = os.open(self.root / FAILURES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)


class CacheReader:
    """Reads a cache directory lazily: files are opened when a video or the head is asked for."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CacheError(f"{self.root}: no such cache directory")
        info_path = self.root / INFO_FILE
        if not info_path.is_file():
            raise CacheError(f"{self.root}: not a t3al cache (no {INFO_FILE}); run t3al-extract first")
        try:
            data = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CacheError(f"{info_path}: not valid JSON ({err})") from err
        self.info = CacheInfo.from_dict(data, str(info_path))
        self._head: Head | None = None

    @property
    def model_id(self) -> str:
        return self.info.model.key()

    @property
    def manifest_path(self) -> Path | None:
        path = self.root / MANIFEST_FILE
        return path if path.is_file() else None

    def head(self) -> Head:
        """The projections, scale and class prompts, checked to belong to this cache's model."""
        if self._head is None:
            path = self.root / HEAD_FILE
            if not path.is_file():
                raise CacheError(f"{path}: missing; the cache has no model head")
            try:
                with h5py.File(path, "r") as f:
                    self._check_model(f, path)
                    prompts = f["prompts"]
                    self._head = Head(
                        visual_proj=f["visual_proj"][()],
                        text_projection=f["text_projection"][()],
                        logit_scale=float(f["logit_scale"][()]),
                        class_names=_strings(prompts["class_name"][()]),
                        prompts=_strings(prompts["text"][()]),
                        prompt_features=prompts["features"][()],
                        model_id=self.model_id,
                    )
            except (OSError, KeyError) as err:
                raise CacheError(f"{path}: unreadable head ({err})") from err
        return self._head

    def video_ids(self) -> list[str]:
        """Ids of the complete videos, sorted."""
        folder = self.root / VIDEOS_DIR
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.h5") if not p.name.startswith("."))

    def __contains__(self, video_id: str) -> bool:
        return (self.root / VIDEOS_DIR / f"{video_id}.h5").is_file()

    def video(self, video_id: str, dtype: np.dtype | str = np.float32) -> VideoRecord:
        """Load one video's record, features cast to ``dtype``."""
        path = self.root / VIDEOS_DIR / f"{check_video_id(video_id)}.h5"
        if not path.is_file():
            raise CacheError(f"video {video_id}: not in cache {self.root}")
        try:
            with h5py.File(path, "r") as f:
                self._check_model(f, path)
                captions = f["captions"]
                attrs = f.attrs
                return VideoRecord(
                    video_id=video_id,
                    features=f["features"][()].astype(dtype, copy=False),
                    timestamps=f["timestamps"][()],
                    fps=float(attrs["fps"]),
                    caption_frames=captions["frame"][()],
                    caption_texts=_strings(captions["text"][()]),
                    caption_features=captions["features"][()].astype(dtype, copy=False),
                    duration=float(attrs["duration"]),
                    source_path=str(attrs["source_path"]),
                    source_size=int(attrs["source_size"]),
                    source_mtime=float(attrs["source_mtime"]),
                    model_id=str(attrs["model_id"]),
                )
        except (OSError, KeyError) as err:
            raise CacheError(f"{path}: unreadable video file ({err})") from err

    def videos(self, video_ids: list[str] | None = None) -> Iterator[VideoRecord]:
        for video_id in self.video_ids() if video_ids is None else video_ids:
            yield self.video(video_id)

    def failures(self) -> list[dict[str, Any]]:
        """The last failure reported for each video that is still absent from the cache."""
        path = self.root / FAILURES_FILE
        if not path.is_file():
            return []
        latest: dict[str, dict[str, Any]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                latest[entry["video_id"]] = entry
        return [entry for video_id, entry in sorted(latest.items()) if video_id not in self]

    def _check_model(self, f: h5py.File, path: Path) -> None:
        found = f.attrs.get("model_id", "")
        if found != self.model_id:
            raise CacheError(
                f"{path}: written by model {found!r}, but {INFO_FILE} names {self.model_id!r}; "
                "caches of different models cannot be mixed"
            )
