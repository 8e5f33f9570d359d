"""The dataset manifest: videos, ground truth, class vocabulary and zero-shot splits, as one JSON file.

Format (version 1)::

    {
      "format": "t3al-manifest", "version": 1,
      "dataset": "thumos14",                  # free name; "activitynet..." selects ActivityNet tIoUs
      "classes": ["BaseballPitch", ...],      # the class vocabulary, names as in the annotations
      "videos": {"<video_id>": {"subset": "validation", "duration": 12.3, "fps": 30.0}},
      "annotations": [{"video": "<video_id>", "start": 1.0, "end": 2.5, "label": "BaseballPitch"}],
      "splits": {"75_25": [[unseen classes of split 0], ... ten lists], "50_50": [...]},
      "tiou": [0.3, 0.4, 0.5, 0.6, 0.7]
    }

Video ids are the file stems of the videos (the cache keys videos by stem); ``duration`` (seconds)
and ``fps`` may be null when unknown. Times are seconds. Each split lists the *unseen* classes, the
ones evaluated, in evaluation order. See manifests/README.md for the builders.
"""
from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t3al.cache import T3alError, write_atomically
from t3al.cache.schema import CacheError, check_video_name

from .textfile import read_text

FORMAT = "t3al-manifest"
VERSION = 1
SETTINGS = ("75_25", "50_50")


class ManifestError(T3alError, ValueError):
    """A manifest or source annotation file that is malformed (the message names file and field)."""


def setting_name(setting: str) -> str:
    """Normalise '75:25' / '75-25' / '75_25' to the manifest's key '75_25'."""
    return str(setting).replace(":", "_").replace("-", "_")


@dataclass(frozen=True)
class EvaluationSet:
    """What split i of a setting evaluates: the unseen classes, their videos and their ground truth."""

    classes: list[str]
    videos: list[str]
    annotations: list[dict]


@dataclass
class Manifest:
    """A dataset manifest (see the module docstring for the JSON layout)."""

    dataset: str
    classes: list[str]
    videos: dict[str, dict[str, Any]]
    annotations: list[dict[str, Any]]
    splits: dict[str, list[list[str]]] = field(default_factory=dict)
    tiou: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "dataset": self.dataset, "classes": list(self.classes),
                "videos": self.videos, "annotations": self.annotations, "splits": self.splits,
                "tiou": list(self.tiou)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> "Manifest":
        """Build and validate a manifest from its JSON object; errors name ``source`` and the field."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestError(f"{source}: not a t3al manifest (field 'format' must be {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ManifestError(f"{source}: field 'version' is {data.get('version')!r}; this code reads {VERSION}")
        missing = [k for k in ("dataset", "classes", "videos", "annotations") if k not in data]
        if missing:
            raise ManifestError(f"{source}: missing field(s) {', '.join(missing)}")
        manifest = cls(data["dataset"], data["classes"], data["videos"], data["annotations"],
                       data.get("splits", {}), data.get("tiou", []))
        manifest.validate(source)
        return manifest

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        try:
            data = json.loads(read_text(path, ManifestError))
        except json.JSONDecodeError as error:
            raise ManifestError(f"{path}: invalid JSON ({error})") from None
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | Path) -> None:
        """Validate, then write the JSON (one annotation per line keeps diffs readable)."""
        self.validate(str(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, _dumps(self.to_dict()))

    def validate(self, source: str = "manifest") -> None:
        """Check every field; raise ManifestError naming ``source`` and the first bad field."""
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ManifestError(f"{source}: field 'dataset' must be a non-empty string")
        _validate_classes(self.classes, source)
        _validate_videos(self.videos, source)
        _validate_annotations(self.annotations, set(self.videos), set(self.classes), source)
        _validate_splits(self.splits, set(self.classes), source)
        if not isinstance(self.tiou, list) or not all(_number(t) and 0 < t <= 1 for t in self.tiou):
            raise ManifestError(f"{source}: field 'tiou' must be a list of thresholds in (0, 1]")

    def split_classes(self, setting: str, index: int) -> list[str]:
        """The unseen (evaluated) classes of split ``index`` of ``setting``, in evaluation order."""
        key = setting_name(setting)
        if key not in self.splits:
            raise ManifestError(f"manifest of {self.dataset} has no split setting {key!r} "
                                f"(has: {', '.join(self.splits) or 'none'})")
        if not 0 <= index < len(self.splits[key]):
            raise ManifestError(f"setting {key} has splits 0..{len(self.splits[key]) - 1}, not {index}")
        return list(self.splits[key][index])

    def evaluation_set(self, setting: str, index: int) -> EvaluationSet:
        """Split ``index``: videos (any subset) with >= 1 unseen-class instance, GT restricted to them."""
        classes = self.split_classes(setting, index)
        unseen = set(classes)
        annotations = [a for a in self.annotations if a["label"] in unseen]
        videos = sorted({a["video"] for a in annotations})
        return EvaluationSet(classes, videos, annotations)


def _block(items: list[str], open_: str, close: str, indent: str) -> str:
    if not items:
        return open_ + close
    return open_ + "\n" + ",\n".join(indent + "  " + item for item in items) + "\n" + indent + close


def _dumps(data: dict) -> str:
    """JSON with one class, video, annotation or split list per line (small, readable diffs)."""
    fields = []
    for key, value in data.items():
        if key in ("classes", "annotations"):
            text = _block([json.dumps(v) for v in value], "[", "]", "  ")
        elif key == "videos":
            text = _block([f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()], "{", "}", "  ")
        elif key == "splits":
            text = _block([f"{json.dumps(k)}: " + _block([json.dumps(x) for x in v], "[", "]", "    ")
                           for k, v in value.items()], "{", "}", "  ")
        else:
            text = json.dumps(value)
        fields.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def class_name_problem(name: str) -> str:
    """Why ``name`` cannot name a class (a prompt, a string in the cache's head); '' when it can.
    It needs a visible character, and no control character (a NUL, a tab, a line break)."""
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"holds a control character (U+{ord(control):04X})"
    if not any(unicodedata.category(c)[0] not in "CZ" for c in name):
        return "has no visible character"
    return ""


def _validate_classes(classes: Any, source: str) -> None:
    if not isinstance(classes, list) or not classes:
        raise ManifestError(f"{source}: field 'classes' must be a non-empty list")
    for i, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise ManifestError(f"{source}: classes[{i}] must be a non-empty string, got {name!r}")
        if problem := class_name_problem(name):
            raise ManifestError(f"{source}: classes[{i}] {ascii(name)} {problem}")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise ManifestError(f"{source}: field 'classes' repeats {', '.join(duplicates)}")


def _validate_videos(videos: Any, source: str) -> None:
    if not isinstance(videos, dict):
        raise ManifestError(f"{source}: field 'videos' must be an object {{video_id: {{subset, duration, fps}}}}")
    for video_id, entry in videos.items():
        try:
            check_video_name(video_id)
        except CacheError as error:
            raise ManifestError(f"{source}: videos: {error}") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("subset"), str):
            raise ManifestError(f"{source}: videos[{video_id!r}] needs a string 'subset'")
        for key in ("duration", "fps"):
            value = entry.get(key)
            if value is not None and not (_number(value) and value > 0):
                raise ManifestError(f"{source}: videos[{video_id!r}].{key} must be a positive number or null, "
                                    f"got {value!r}")


def _validate_annotations(annotations: Any, videos: set, classes: set, source: str) -> None:
    if not isinstance(annotations, list):
        raise ManifestError(f"{source}: field 'annotations' must be a list")
    for i, item in enumerate(annotations):
        where = f"{source}: annotations[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{where} must be an object {{video, start, end, label}}")
        if item.get("video") not in videos:
            raise ManifestError(f"{where}: video {item.get('video')!r} is not in 'videos'")
        if item.get("label") not in classes:
            raise ManifestError(f"{where}: label {item.get('label')!r} is not in 'classes'")
        start, end = item.get("start"), item.get("end")
        if not (_number(start) and _number(end)) or end < start:
            raise ManifestError(f"{where} (video {item['video']}): need numbers start <= end, got {start!r}, {end!r}")


def _validate_splits(splits: Any, classes: set, source: str) -> None:
    if not isinstance(splits, dict):
        raise ManifestError(f"{source}: field 'splits' must be an object {{setting: [[classes], ...]}}")
    for setting, lists in splits.items():
        if not isinstance(lists, list) or not all(isinstance(x, list) and x for x in lists):
            raise ManifestError(f"{source}: splits[{setting!r}] must be a list of non-empty class lists")
        for i, names in enumerate(lists):
            unknown = [c for c in names if c not in classes]
            if unknown:
                raise ManifestError(f"{source}: splits[{setting!r}][{i}]: unknown class(es) {', '.join(unknown)}")
