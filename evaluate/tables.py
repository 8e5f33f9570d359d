"""Ground truth as a column table, with CSV / ActivityNet-JSON / manifest readers, and the column
helpers it shares with the detections table (``results.Detections``).

Both tables hold one numpy array per column (``video`` and ``label`` are object arrays of str,
``start``/``end``/``score`` float64) and check themselves on construction: equal lengths, finite
times, ``end >= start``, finite scores. Readers name the file and the row of any bad value.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from t3al.cache import T3alError, write_atomically
from t3al.manifests import read_text

GROUND_TRUTH_COLUMNS = ("video-id", "t-start", "t-end", "label")


class EvaluationError(T3alError, ValueError):
    """Malformed detections, ground truth or class lists (the message names file, row or video)."""


def string_column(values: Iterable[Any]) -> np.ndarray:
    array = np.empty(len(values := list(values)), dtype=object)
    array[:] = [str(v) for v in values]
    return array


def float_column(values: Iterable[Any]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.float64).reshape(-1)


def check_segments(video: np.ndarray, start: np.ndarray, end: np.ndarray, source: str) -> None:
    for name, column in (("t-start", start), ("t-end", end)):
        bad = np.flatnonzero(~np.isfinite(column))
        if bad.size:
            raise EvaluationError(f"{source}: row {bad[0]} (video {video[bad[0]]}): {name} is not a finite number")
    bad = np.flatnonzero(end < start)
    if bad.size:
        i = bad[0]
        raise EvaluationError(f"{source}: row {i} (video {video[i]}): t-end {end[i]} < t-start {start[i]}")


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth instances: one row per (video, start, end, label)."""

    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    source: str = "ground truth"

    def __post_init__(self) -> None:
        if not len(self.video) == len(self.start) == len(self.end) == len(self.label):
            raise EvaluationError(f"{self.source}: columns have different lengths")
        check_segments(self.video, self.start, self.end, self.source)

    def __len__(self) -> int:
        return len(self.video)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], source: str = "ground truth") -> "GroundTruth":
        """Rows as dicts with keys video, start, end, label (the manifest's annotation layout)."""
        rows = list(records)
        return cls(string_column(r["video"] for r in rows), float_column(r["start"] for r in rows),
                   float_column(r["end"] for r in rows), string_column(r["label"] for r in rows), source)

    @classmethod
    def read(cls, path: str | Path) -> "GroundTruth":
        """Read a CSV ``video-id,t-start,t-end,label``, a t3al manifest or an ActivityNet JSON."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            c = read_csv_columns(path, GROUND_TRUTH_COLUMNS)
            return cls(c["video-id"], c["t-start"], c["t-end"], c["label"], str(path))
        data = read_json_object(path)
        if data.get("format") == "t3al-manifest":
            from t3al.manifests import Manifest

            return cls.from_records(Manifest.from_dict(data, source=str(path)).annotations, str(path))
        if "database" in data:
            return cls.from_records(_activitynet_annotations(data["database"], path), str(path))
        raise EvaluationError(f"{path}: not a ground-truth file (expected CSV, a t3al manifest or an "
                              "ActivityNet JSON with a 'database' key)")

    def select(self, mask: np.ndarray) -> "GroundTruth":
        return GroundTruth(self.video[mask], self.start[mask], self.end[mask], self.label[mask], self.source)

    def write_csv(self, path: str | Path) -> None:
        write_atomically(path, csv_text(GROUND_TRUTH_COLUMNS, zip(
            self.video, (f"{s:.6f}" for s in self.start), (f"{e:.6f}" for e in self.end), self.label)))


def csv_text(header: tuple[str, ...], rows: Iterable[tuple]) -> str:
    """A CSV table (the csv module's quoting: names with commas, quotes or line breaks survive)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def read_csv_columns(path: Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Columns of a CSV with the given header names; numbers checked finite, errors name the line.

    Every row must have as many fields as the header: a row with more is as wrong as one with fewer.
    """
    text = read_text(path, EvaluationError)
    if "\0" in text:
        raise EvaluationError(f"{path}: not a text CSV (it contains NUL bytes)")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        missing = [c for c in columns if c not in header]
        if missing:
            raise EvaluationError(f"{path}: missing column(s) {', '.join(missing)} "
                                  f"(expected header {','.join(columns)})")
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as error:
        raise EvaluationError(f"{path}: not a valid CSV ({error})") from None
    wrong = next(((line, row) for line, row in rows if len(row) != len(header)), None)
    if wrong is not None:
        raise EvaluationError(f"{path}: line {wrong[0]}: {len(wrong[1])} fields, the header has {len(header)}")
    rows = [row for _, row in rows]
    raw = {c: [row[header.index(c)] for row in rows] for c in columns}
    data = {c: string_column(raw[c]) for c in columns if c not in _NUMERIC}
    for c in set(columns) & _NUMERIC:
        data[c] = _number_column(raw[c], raw["video-id"], path, c)
    return data


_NUMERIC = {"t-start", "t-end", "score"}


def _number_column(values: list[str], videos: list[str], path: Path, name: str) -> np.ndarray:
    try:
        column = np.asarray(values, dtype=np.float64)
    except ValueError:
        column = np.array([_parse_float(v) for v in values])
    bad = np.flatnonzero(~np.isfinite(column))
    if bad.size:
        i = bad[0]
        raise EvaluationError(f"{path}: line {i + 2} (video {videos[i]}): {name} {values[i]!r} is not a finite number")
    return column


def _parse_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def read_json_object(path: Path) -> dict:
    try:
        data = json.loads(read_text(path, EvaluationError))
    except json.JSONDecodeError as error:
        raise EvaluationError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected a JSON object")
    return data


def read_segment(item: Mapping, path: Path, video: str) -> tuple[float, float]:
    try:
        start, end = (float(x) for x in item["segment"])
        return start, end
    except (KeyError, TypeError, ValueError):
        raise EvaluationError(f"{path}: video {video}: bad or missing 'segment' in {item!r}") from None


def _activitynet_annotations(database: Mapping, path: Path) -> Iterable[dict]:
    for video, entry in database.items():
        for item in entry.get("annotations", []):
            if "label" not in item:
                raise EvaluationError(f"{path}: video {video}: annotation without 'label': {item!r}")
            start, end = read_segment(item, path, video)
            yield {"video": video, "start": start, "end": end, "label": item["label"]}
