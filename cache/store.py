"""Writing and reading a cache directory; the only module of the project that imports h5py."""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import h5py
from filelock import FileLock, Timeout
import numpy as np

from .files import remove, temporary_path, write_all, write_atomically, write_new, writer_gone
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
    safe_video_id,
)

_STR = h5py.string_dtype(encoding="utf-8")
STALE_TEMPORARY_S = 3600.0  # a temporary file lives while one file's bytes are written: far less than this
_SPACE_MARGIN = 64 << 10  # bytes left free beyond the file itself (file system blocks and metadata)


class DiskFullError(CacheError):
    """The cache's file system has no room for the next file; complete files are kept."""


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _disk_full(folder: Path, size: int, free: int | None = None) -> DiskFullError:
    need = (f"a file of {_size(size)} needs {_size(size + _SPACE_MARGIN)} with the {_size(_SPACE_MARGIN)} kept "
            f"free, {_size(free)} free" if free is not None else f"writing {_size(size)}")
    return DiskFullError(f"{folder}: no space left on device ({need}); free some space and rerun: complete files "
                         "are kept")


def _check_space(folder: Path, size: int) -> None:
    """Refuse to start a write that cannot fit."""
    free = shutil.disk_usage(folder).free
    if free < size + _SPACE_MARGIN:
        raise _disk_full(folder, size, free)


@contextlib.contextmanager
def _disk_full_as_error(folder: Path, size: int) -> Iterator[None]:
    """ENOSPC (or a quota) met writing ``size`` bytes into ``folder`` becomes DiskFullError."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(folder, size) from None
        raise


def _write_new(path: Path, data: bytes) -> None:
    """``write_new``, a full disk as DiskFullError. The caller removes ``path`` when this raises."""
    with _disk_full_as_error(path.parent, len(data)):
        write_new(path, data)


def _write_atomically(final: Path, data: bytes) -> None:
    """``write_atomically`` after checking the space, a full disk as DiskFullError."""
    _check_space(final.parent, len(data))
    with _disk_full_as_error(final.parent, len(data)):
        write_atomically(final, data)


def check_writable(root: str | os.PathLike) -> None:
    """Refuse a cache directory this process cannot write into (a read-only file system, no
    permission), before any work: an empty temporary file is created and removed in it, or in the
    nearest existing folder above it when it does not exist yet."""
    folder = Path(root).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CacheError(f"{root}: {folder} is not a directory; give a cache directory (new or existing)")
    probe = temporary_path(folder / "probe")
    try:
        _write_new(probe, b"")
    except OSError as err:
        raise CacheError(f"{root}: cannot write into {folder} ({err.strerror or err}); "
                         "give a writable cache directory") from None
    finally:
        remove(probe)


def _hdf5_bytes(fill: Any) -> bytes:
    """An HDF5 file built in memory by ``fill(file)``: libhdf5 never writes to the cache's disk, so a
    full disk is a plain OSError of one write, and the size is known before writing."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    return buffer.getvalue()


def read_info(path: Path) -> CacheInfo:
    """The validated content of a ``cache.json``; CacheError names the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CacheError(f"{path}: not valid JSON ({err}); re-extract the cache") from None
    except OSError as err:
        raise CacheError(f"{path}: unreadable ({err.strerror})") from None
    return CacheInfo.from_dict(data, str(path))


def temporary_files(root: Path, now: float | None = None) -> list[tuple[Path, float]]:
    """The temporary files of ``root`` and ``root/videos`` with seconds since their last write
    (files renamed into place meanwhile are left out)."""
    now = time.time() if now is None else now
    found = []
    for folder in (root, root / VIDEOS_DIR):
        for path in folder.glob(".*.tmp"):
            try:
                found.append((path, now - path.lstat().st_mtime))
            except OSError:
                continue
    return found


def temporary_target(path: Path) -> str:
    """The name of the file a temporary file (``temporary_path``) becomes when complete."""
    return path.name[1:].rsplit(".", 3)[0]


def remove_stale_temporaries(root: Path, max_age: float = STALE_TEMPORARY_S) -> list[Path]:
    """Delete temporary files of ``root`` and ``root/videos`` left by writers killed mid-write: those
    whose writer on this machine has ended, and those older than ``max_age`` seconds (no running
    writer keeps one that long)."""
    removed = []
    for path, age in temporary_files(root):
        if age > max_age or writer_gone(path):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def array_problem(f: h5py.File, verify: bool = False) -> str:
    """Why a video file's arrays cannot be what the schema says ('' when they can): their headers
    open with matching lengths, and (``verify``) every array reads back, features and timestamps
    finite, timestamps increasing."""
    frames = f["features"].shape[0]
    captions = f["captions/frame"].shape[0]
    if f["timestamps"].shape != (frames,):
        return f"{frames} feature rows, timestamps of shape {f['timestamps'].shape}"
    if f["captions/text"].shape != (captions,) or f["captions/features"].shape[0] != captions:
        return "caption frames, texts and features of different lengths"
    if not verify:
        return ""
    arrays = {name: f[name][()] for name in ("features", "timestamps", "captions/frame", "captions/text",
                                             "captions/features")}
    for name in ("features", "timestamps", "captions/features"):
        if not np.isfinite(arrays[name]).all():
            return f"{name} hold NaN or infinity"
    if np.any(np.diff(arrays["timestamps"]) <= 0):
        return "timestamps do not increase"
    return ""


def _strings(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


class CacheWriter:
    """Creates or reopens a cache directory and adds complete files to it, one at a time.

    Opening an existing cache checks that ``info`` names the same model and schema, so one
    directory never mixes features of two models; several writers may share a directory.
    Temporary files older than ``STALE_TEMPORARY_S`` (left by killed writers) are removed and
    listed in ``removed_temporaries``.
    """

    def __init__(self, root: str | os.PathLike, info: CacheInfo) -> None:
        self.root = Path(root)
        self.info = info
        try:
            (self.root / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise CacheError(f"{self.root}: not a directory; give a cache directory (new or existing)") from None
        except OSError as err:
            raise CacheError(f"{self.root}: cannot create the cache directory ({err.strerror})") from None
        check_writable(self.root / VIDEOS_DIR)
        self.removed_temporaries = remove_stale_temporaries(self.root)
        self._claim_info()

    def _claim_info(self) -> None:
        path = self.root / INFO_FILE
        if not path.exists():
            data = (json.dumps(self.info.to_dict(), indent=2) + "\n").encode("utf-8")
            _check_space(self.root, len(data))
            tmp = temporary_path(path)
            try:
                _write_new(tmp, data)
                os.link(tmp, path)  # fails when another writer got there first
            except FileExistsError:
                pass
            finally:
                remove(tmp)
        existing = read_info(path)
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

        def fill(f: h5py.File) -> None:
            f.attrs["model_id"] = self.model_id
            f.create_dataset("visual_proj", data=head.visual_proj.astype(np.float32))
            f.create_dataset("text_projection", data=head.text_projection.astype(np.float32))
            f.create_dataset("logit_scale", data=np.float32(head.logit_scale))
            group = f.create_group("prompts")
            group.create_dataset("class_name", data=head.class_names, dtype=_STR)
            group.create_dataset("text", data=head.prompts, dtype=_STR)
            group.create_dataset("features", data=head.prompt_features.astype(np.float32))

        _write_atomically(self.root / HEAD_FILE, _hdf5_bytes(fill))

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
        _write_atomically(self.root / MANIFEST_FILE, Path(manifest).read_bytes())

    def video_path(self, video_id: str) -> Path:
        """The file of the video named ``video_id`` (an id, or a name mapped by ``safe_video_id``)."""
        return self.root / VIDEOS_DIR / f"{safe_video_id(video_id)}.h5"

    def is_complete(self, video_id: str, source_size: int, source_mtime: float) -> bool:
        """True when the video is cached from a source of this size and modification time."""
        path = self.video_path(video_id)
        if not path.exists():
            return False
        try:
            with h5py.File(path, "r") as f:
                return (
                    not array_problem(f)
                    and int(f.attrs["source_size"]) == int(source_size)
                    and float(f.attrs["source_mtime"]) == float(source_mtime)
                    and f.attrs["model_id"] == self.model_id
                )
        except (OSError, KeyError):
            return False

    @contextlib.contextmanager
    def claimed(self, video_id: str, wait: bool = False) -> Iterator[bool]:
        """Hold a video for this writer in the block, so that two runs on one cache never extract it
        both; yields False when another process holds it (``wait``: waits until it lets go). A
        claim is a lock on a hidden file beside the video's; it ends with the block, or with its
        process however that ends (a claim file left by ``kill -9`` is taken over and removed)."""
        path = self.video_path(video_id).with_name(f".{safe_video_id(video_id)}.h5.claim")
        lock = FileLock(path)
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            remove(path)
            lock.release()

    @contextlib.contextmanager
    def in_progress(self, video_ids: list[str]) -> Iterator[Callable[[], None]]:
        """Mark the videos this writer works on, in order, for ``t3al-extract status``: the first at
        once, the next at each call of the function given; the mark is an empty temporary file named
        after the video's file (a mark that cannot be made is left out: it never stops a run)."""
        pending = iter(video_ids)
        marks: list[Path] = []

        def advance() -> None:
            while marks:
                remove(marks.pop())
            video_id = next(pending, None)
            if video_id is not None:
                mark = temporary_path(self.video_path(video_id))
                with contextlib.suppress(OSError, CacheError):
                    _write_new(mark, b"")
                    marks.append(mark)

        advance()
        try:
            yield advance
        finally:
            while marks:
                remove(marks.pop())

    def remove_video(self, video_id: str) -> bool:
        """Delete a video's file (features of a source that changed and no longer decodes); True if there was one."""
        try:
            self.video_path(video_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def write_video(self, record: VideoRecord) -> Path:
        """Write one video's file atomically; it appears complete or not at all."""
        dtype = np.dtype(self.info.feature_dtype)

        def fill(f: h5py.File) -> None:
            f.create_dataset("features", data=record.features.astype(dtype))
            f.create_dataset("timestamps", data=record.timestamps.astype(np.float64))
            captions = f.create_group("captions")
            captions.create_dataset("frame", data=record.caption_frames.astype(np.int64))
            captions.create_dataset("text", data=record.caption_texts, dtype=_STR)
            captions.create_dataset("features", data=record.caption_features.astype(dtype))
            f.attrs.update(
                video_id=record.video_id,
                name=record.name,
                fps=float(record.fps),
                n_frames=record.n_frames,
                duration=float(record.duration),
                source_path=str(record.source_path),
                source_size=int(record.source_size),
                source_mtime=float(record.source_mtime),
                model_id=self.model_id,
                decode_warnings=json.dumps(record.decode_warnings),
            )

        final = self.video_path(record.video_id)
        _write_atomically(final, _hdf5_bytes(fill))
        return final

    def record_failure(self, video_id: str, source: str, reason: str, kept: bool = False) -> None:
        """Append one line to ``failures.jsonl`` (a single small append, safe across writers).

        ``kept``: the video was cached all the same (decode warnings under ``--on-decode-error keep``).
        """
        entry = {"video_id": video_id, "source": str(source), "reason": reason, "time": time.time()}
        if kept:
            entry["kept"] = True
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        with _disk_full_as_error(self.root, len(line)):
            fd = os.open(self.root / FAILURES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                write_all(fd, line)
            finally:
                os.close(fd)


class CacheReader:
    """Reads a cache directory lazily: files are opened when a video or the head is asked for."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            what = "not a directory" if self.root.exists() else "no such cache directory"
            raise CacheError(f"{self.root}: {what}; give the cache directory t3al-extract wrote")
        info_path = self.root / INFO_FILE
        if not info_path.is_file():
            raise CacheError(f"{self.root}: not a t3al cache (no {INFO_FILE}); run t3al-extract first")
        self.info = read_info(info_path)
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

    def _path(self, video_id: str) -> Path:
        return self.root / VIDEOS_DIR / f"{safe_video_id(video_id)}.h5"

    def __contains__(self, video_id: str) -> bool:
        """Whether the video is cached; ``video_id`` may be an id or a video's own name (a manifest's)."""
        try:
            return self._path(video_id).is_file()
        except CacheError:
            return False

    def video(self, video_id: str, dtype: np.dtype | str = np.float32) -> VideoRecord:
        """Load one video's record, features cast to ``dtype``; ``video_id`` may be its own name."""
        path = self._path(video_id)
        if not path.is_file():
            raise CacheError(f"video {video_id}: not in cache {self.root}")
        try:
            with h5py.File(path, "r") as f:
                self._check_model(f, path)
                captions = f["captions"]
                attrs = f.attrs
                return VideoRecord(
                    video_id=path.stem,
                    name=str(attrs.get("name", path.stem)),
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
                    decode_warnings=json.loads(attrs.get("decode_warnings", "[]")),
                )
        except (OSError, KeyError, ValueError) as err:
            raise CacheError(f"{path}: unreadable video file ({err})") from err

    def video_name(self, video_id: str) -> str:
        """A cached video's own name (its file stem, which its id may have had to make safe), read
        without its arrays."""
        path = self._path(video_id)
        try:
            with h5py.File(path, "r") as f:
                return str(f.attrs.get("name", path.stem))
        except OSError as err:
            raise CacheError(f"{path}: unreadable video file ({err})") from err

    def caption_count(self, video_id: str) -> int:
        """How many captions a cached video holds, read without its features."""
        path = self._path(video_id)
        try:
            with h5py.File(path, "r") as f:
                return int(f["captions"]["frame"].shape[0])
        except (OSError, KeyError) as err:
            raise CacheError(f"{path}: unreadable video file ({err})") from err

    def videos(self, video_ids: list[str] | None = None) -> Iterator[VideoRecord]:
        for video_id in self.video_ids() if video_ids is None else video_ids:
            yield self.video(video_id)

    def _failure_entries(self, kept: bool) -> dict[str, dict[str, Any]]:
        """The last entry of ``failures.jsonl`` for each video, among failures (``kept`` False) or
        videos cached with decode warnings (``kept`` True)."""
        path = self.root / FAILURES_FILE
        if not path.is_file():
            return {}
        latest: dict[str, dict[str, Any]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                if bool(entry.get("kept")) == kept:
                    latest[entry["video_id"]] = entry
        return latest

    def failures(self) -> list[dict[str, Any]]:
        """The last failure reported for each video that is still absent from the cache."""
        return [entry for video_id, entry in sorted(self._failure_entries(False).items()) if video_id not in self]

    def kept_with_warnings(self) -> list[dict[str, Any]]:
        """The videos in the cache that were cached despite decode warnings (``--on-decode-error keep``)."""
        return [entry for video_id, entry in sorted(self._failure_entries(True).items()) if video_id in self]

    def _check_model(self, f: h5py.File, path: Path) -> None:
        found = f.attrs.get("model_id", "")
        if found != self.model_id:
            raise CacheError(
                f"{path}: written by model {found!r}, but {INFO_FILE} names {self.model_id!r}; "
                "caches of different models cannot be mixed"
            )
