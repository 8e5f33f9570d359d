"""Build manifests from public annotation files: THUMOS14 official, T3AL-style and ActivityNet JSON.

Every builder returns a validated Manifest without splits; ``read_split_lists`` adds the standard
zero-shot splits from a ``splits/train_<seen>_test_<unseen>/<Dataset>/test/split_<i>.list`` tree.
"""
from __future__ import annotations

import csv
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

from .datasets import THUMOS14, dataset_rules
from .manifest import Manifest, ManifestError, class_name_problem
from .textfile import read_text

N_SPLITS = 10
SPLIT_FOLDERS = {"75_25": "train_75_test_25", "50_50": "train_50_test_50"}
_OFFICIAL_FILE = re.compile(r"^(?P<label>.+)_(?P<subset>val|test)\.txt$")
_OFFICIAL_SUBSETS = {"val": "validation", "test": "test"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path, ManifestError))
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: invalid JSON ({error})") from None


def _float(value: Any, path: Path, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{path}: {where}: {value!r} is not a number") from None


def _optional_positive(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def read_class_list(path: str | Path) -> list[str]:
    """Class names, one per line (a ``.csv`` file's first line is its header and is skipped)."""
    lines = [line.strip() for line in read_text(path, ManifestError).splitlines()]
    if Path(path).suffix.lower() == ".csv":
        lines = lines[1:]
    names = [line for line in lines if line]
    if not names:
        raise ManifestError(f"{path}: no class names")
    for name in names:
        if problem := class_name_problem(name):
            raise ManifestError(f"{path}: class name {ascii(name)} {problem}")
    return names


def _thumos_subset(video_id: str) -> str:
    return "validation" if "_validation_" in video_id else "test" if "_test_" in video_id else "unknown"


def _manifest(dataset: str, videos: dict, annotations: list, classes: Iterable[str] | None, tiou: list,
              source: str) -> Manifest:
    classes = list(classes) if classes is not None else sorted({a["label"] for a in annotations})
    manifest = Manifest(dataset, classes, videos, annotations, {}, tiou)
    manifest.validate(source)
    return manifest


def from_thumos14_official(folder: str | Path, dataset: str = "thumos14") -> Manifest:
    """THUMOS14's per-class files ``<Class>_val.txt`` / ``<Class>_test.txt`` (lines ``video start end``).

    ``Ambiguous_*`` files are not a class and are skipped; a video enters the manifest when it has at
    least one class instance. Durations and frame rates are unknown (null).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.txt") if _OFFICIAL_FILE.match(p.name))
    if not files:
        raise ManifestError(f"{folder}: no <Class>_val.txt / <Class>_test.txt files")
    videos: dict[str, dict] = {}
    annotations = []
    for path in files:
        match = _OFFICIAL_FILE.match(path.name)
        if match["label"] == "Ambiguous":
            continue
        for n, line in enumerate(read_text(path, ManifestError).splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 3:
                raise ManifestError(f"{path}: line {n}: expected 'video start end', got {line!r}")
            video = parts[0]
            videos.setdefault(video, {"subset": _OFFICIAL_SUBSETS[match["subset"]], "duration": None, "fps": None})
            annotations.append({"video": video, "start": _float(parts[1], path, f"line {n}"),
                                "end": _float(parts[2], path, f"line {n}"), "label": match["label"]})
    return _manifest(dataset, dict(sorted(videos.items())), annotations, None, list(THUMOS14.tious), str(folder))


def from_t3al_json(path: str | Path, dataset: str = "thumos14") -> Manifest:
    """The T3AL-style JSON ``{video: {duration_second, annotations: [{segment: [s, e], label}]}}``.

    Every listed video enters the manifest (also one without annotations); the subset comes from the
    THUMOS14 video id (``video_validation_*`` / ``video_test_*``).
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "database" in data:
        raise ManifestError(f"{path}: not a T3AL-style annotation JSON ({{video: {{annotations: [...]}}}})")
    videos, annotations = {}, []
    for video, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("annotations"), list):
            raise ManifestError(f"{path}: video {video}: missing 'annotations' list")
        videos[video] = {"subset": _thumos_subset(video), "duration": _optional_positive(entry.get("duration_second")),
                         "fps": None}
        annotations += _segments(entry["annotations"], video, path)
    return _manifest(dataset, videos, annotations, None, list(THUMOS14.tious), str(path))


def from_activitynet_json(path: str | Path, dataset: str = "activitynet", classes: Iterable[str] | None = None,
                          subsets: Iterable[str] | None = None, video_prefix: str = "") -> Manifest:
    """An ActivityNet-style JSON ``{"database": {id: {subset, duration, fps?, annotations}}}``.

    ``subsets`` keeps only those subsets (case-insensitive; default all); video ids become
    ``video_prefix + id`` (ActivityNet files are named ``v_<id>.mp4``); subset names are lowercased.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise ManifestError(f"{path}: not an ActivityNet-style JSON (no 'database' object)")
    keep = {s.lower() for s in subsets} if subsets else None
    videos, annotations = {}, []
    for key, entry in data["database"].items():
        subset = str(entry.get("subset", "unknown")).lower()
        if keep is not None and subset not in keep:
            continue
        video = video_prefix + key
        videos[video] = {"subset": subset, "duration": _optional_positive(entry.get("duration")),
                         "fps": _optional_positive(entry.get("fps"))}
        annotations += _segments(entry.get("annotations", []), video, path)
    return _manifest(dataset, videos, annotations, classes, list(dataset_rules(dataset).tious), str(path))


def from_thumos14_json(path: str | Path) -> Manifest:
    """THUMOS14 from either JSON layout: ActivityNet-style when it has a 'database' key, else T3AL-style."""
    data = _read_json(Path(path))
    is_activitynet = isinstance(data, dict) and "database" in data
    return from_activitynet_json(path, "thumos14") if is_activitynet else from_t3al_json(path)


def _segments(items: list, video: str, path: Path) -> list[dict]:
    rows = []
    for item in items:
        try:
            start, end = item["segment"][:2]
            label = item["label"]
        except (KeyError, TypeError, ValueError):
            raise ManifestError(f"{path}: video {video}: annotation needs 'segment' and 'label', got {item!r}") from None
        rows.append({"video": video, "start": _float(start, path, f"video {video}"),
                     "end": _float(end, path, f"video {video}"), "label": label})
    return rows


def add_video_info(manifest: Manifest, info: str | Path) -> int:
    """Fill missing fps/duration from an ActivityNet-style JSON or an ActivityNet ``video_info`` CSV.

    Returns how many manifest videos were found in ``info``.
    """
    info = Path(info)
    if info.suffix.lower() == ".csv":
        lines = io.StringIO(read_text(info, ManifestError), newline="")
        rows = {r["video"]: {"fps": r.get("fps"), "duration": r.get("seconds")} for r in csv.DictReader(lines)}
    else:
        data = _read_json(info)
        if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
            raise ManifestError(f"{info}: expected an ActivityNet-style JSON with a 'database' object")
        rows = data["database"]
    found = 0
    for video, entry in manifest.videos.items():
        if video in rows:
            found += 1
            for key in ("fps", "duration"):
                if entry.get(key) is None:
                    entry[key] = _optional_positive(rows[video].get(key))
    manifest.validate(str(info))
    return found


def read_split_lists(root: str | Path, dataset_folder: str, classes: Iterable[str],
                     n_splits: int = N_SPLITS) -> dict[str, list[list[str]]]:
    """Unseen-class lists ``root/train_X_test_Y/<dataset_folder>/test/split_<i>.list`` per setting.

    Reads ``split_0`` .. ``split_<n_splits - 1>`` (the protocol's ten); other files there (the public
    THUMOS14 50:50 folder has a ``split_10`` whose unseen list is all 20 classes) are ignored with a
    warning. A class the manifest doesn't know is an error naming the class and the file.
    """
    known = set(classes)
    splits = {}
    for setting, folder in SPLIT_FOLDERS.items():
        directory = Path(root) / folder / dataset_folder / "test"
        if not directory.is_dir():
            continue
        files = [directory / f"split_{i}.list" for i in range(n_splits)]
        missing = [p.name for p in files if not p.is_file()]
        if missing:
            raise ManifestError(f"{directory}: missing {', '.join(missing)}")
        extra = sorted({p.name for p in directory.glob("split_*.list")} - {p.name for p in files})
        if extra:
            warnings.warn(f"{directory}: ignored {', '.join(extra)} (the protocol uses split_0..split_{n_splits - 1})",
                          stacklevel=2)
        lists = []
        for path in files:
            names = [line.strip() for line in read_text(path, ManifestError).splitlines() if line.strip()]
            unknown = [c for c in names if c not in known]
            if unknown:
                raise ManifestError(f"{path}: class {unknown[0]!r} is not in the manifest's classes")
            lists.append(names)
        splits[setting] = lists
    if not splits:
        raise ManifestError(f"{root}: no split lists under train_75_test_25/{dataset_folder}/test or "
                            f"train_50_test_50/{dataset_folder}/test")
    return splits
