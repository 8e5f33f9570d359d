"""A run's output folder: claimed before any work, written complete or not at all.

A run writes into a temporary sibling folder (``.<name>.<pid>.<hex>.tmp``) and renames it into
place when its results are complete, as the cache writes its files. A lock file next to the folder
(``.<name>.lock``, created exclusively) keeps a second run from the folder from the claim to the
rename; a lock whose process has died on this machine is taken over. Claiming also creates the
temporary folder, so an output that cannot be written (a file, a read-only or full disk) is
refused before any video is adapted.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from t3al.cache import T3alError, write_atomically
from t3al.cache.files import process_alive
from t3al.evaluate import Detections
from t3al.evaluate.presence import write_presence_csv
from t3al.evaluate.results import Curve, write_curve

if TYPE_CHECKING:  # the module is imported by commands whose --help loads no torch
    from ..algorithm.video import VideoResult

RUN_FILES = ("config.json", "results.json", "report",  # and a vocabulary run's (t3al-localize) own files:
             "detections.json", "detections.csv", "presence.csv", "curves", "index.html")
_NAME_ROOM = 100  # characters of the folder's name kept in its lock and temporary names


class OutputError(T3alError, ValueError):
    """An output folder that cannot take this run's results: another run's, in use, or not writable."""


def _identity(record: dict) -> dict:
    """What makes two runs the same configuration: config, seed, setting, model, dataset (or, for a
    vocabulary run, the vocabulary and the videos)."""
    cache = record.get("cache") or {}
    return {"config": record.get("config"), "seed": record.get("seed"), "setting": record.get("setting"),
            "model": cache.get("model"), "manifest": record.get("manifest"), "vocabulary": record.get("vocabulary"),
            "videos": record.get("videos")}


def external_data(record: dict) -> dict:
    """What produced a run's detections, for the ActivityNet results' ``external_data``."""
    config = record["config"]
    return {"used": True, "details": f"model {record['cache']['model']}; method {config['method']} (t3al "
                                     f"{record['code_version']}, seed {record['seed']})",
            "model": record["cache"]["model"], "method": config["method"], "config": config}


def _run_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` that belong to a run (config, results, report, splits)."""
    return [p for p in folder.iterdir() if p.name in RUN_FILES or p.name.startswith("split_")]


def _unwritable(folder: Path, err: OSError) -> OutputError:
    """One line for an OSError met while preparing or writing ``folder``."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "no space left on device"
    elif isinstance(err, (NotADirectoryError, FileExistsError)):
        why = f"{err.filename} is not a folder"
    else:
        why = err.strerror or str(err)
    return OutputError(f"{folder}: cannot write the run's results ({why}); nothing was written there")


def what_it_replaces(folder: Path, record: dict, overwrite: bool) -> str | None:
    """What writing the run of ``record`` into ``folder`` would replace (None: nothing).

    An earlier run of the same configuration may be replaced; a folder holding anything else is
    refused unless ``overwrite``.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder; choose another --out")
    if not folder.exists() or not any(folder.iterdir()):
        return None
    try:
        earlier = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    same = isinstance(earlier, dict) and _identity(earlier) == _identity(record)
    if not same and not overwrite:
        what = "another configuration's results" if isinstance(earlier, dict) else "files that are not a t3al run"
        raise OutputError(f"{folder} holds {what}; choose another --out, or pass --overwrite to replace them")
    return ("replaced the earlier results of the same configuration" if same
            else "replaced another configuration's results (--overwrite)")


def _lock(path: Path, folder: Path) -> None:
    """Create the lock file ``path`` exclusively; refuse when a live run holds it."""
    owner = f"{socket.gethostname()} {os.getpid()}\n"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                host, pid = path.read_text(encoding="utf-8").split()
            except (OSError, ValueError):
                host, pid = "", "0"
            if host != socket.gethostname() or process_alive(int(pid)):
                where = f"process {pid} on {host}" if host else "another process"
                raise OutputError(f"{folder} is being written by another t3al run ({where}, lock {path}); "
                                  "wait for it or choose another --out") from None
            path.unlink(missing_ok=True)  # left by a run that was killed
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(owner)
        return
    raise OutputError(f"{folder}: another run took the lock {path} at the same moment; choose another --out")


class RunOutput:
    """The output folder of one run, claimed (locked, with a temporary folder) until ``commit``
    renames the complete results into place or ``abandon`` removes them."""

    def __init__(self, folder: str | os.PathLike, record: dict, overwrite: bool = False) -> None:
        self.folder = Path(folder)
        self.record = record
        self._locked = False
        parent, short = self.folder.absolute().parent, self.folder.absolute().name[:_NAME_ROOM]
        self.lock = parent / f".{short}.lock"
        self.temporary = parent / f".{short}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _lock(self.lock, self.folder)
        except OSError as err:
            raise _unwritable(self.folder, err) from None
        self._locked = True
        try:
            self.replaced = what_it_replaces(self.folder, record, overwrite)
            self.temporary.mkdir()
            self._write_text("config.json", json.dumps(record, indent=2) + "\n")
        except BaseException:
            self.abandon()
            raise

    def _write_text(self, name: str, text: str) -> None:
        try:
            write_atomically(self.temporary / name, text)
        except OSError as err:
            raise _unwritable(self.folder, err) from None

    def write_split(self, index: int | None, detections: Detections, results: list[VideoResult],
                    classes: list[str], curves: bool = True, names: Mapping[str, str] | None = None) -> None:
        """Split ``index``'s detections (None: a vocabulary run's, in the folder itself) as ActivityNet
        JSON naming the model and method, and CSV, and (``curves``) each video's curve and segments.
        Under the open-set rule the presence of every class in every video goes beside them, in the
        JSON and in presence.csv, under the videos' ``names`` where the results carry cache ids."""
        folder = self.temporary if index is None else self.temporary / f"split_{index}"
        presence = result_presences(results, classes, names or {})
        try:
            folder.mkdir(exist_ok=True)
            detections.write_json(folder / "detections.json", external_data(self.record), presence)
            detections.write_csv(folder / "detections.csv")
            if presence is not None:
                write_presence_csv(folder / "presence.csv", presence)
            if curves:
                (folder / "curves").mkdir(exist_ok=True)
                for result in results:
                    _write_curve(folder / "curves" / f"{result.video_id}.npz", result, classes)
        except OSError as err:
            raise _unwritable(self.folder, err) from None

    def add(self, write: Callable[[Path, Path], None]) -> None:
        """Further files of the run (t3al-localize's viewer): ``write(temporary, folder)`` writes them
        into the temporary folder, knowing the folder they will be in."""
        try:
            write(self.temporary, self.folder)
        except OSError as err:
            raise _unwritable(self.folder, err) from None

    def write_emissions(self, index: int | None, rows: list[dict]) -> None:
        """An online run's detections in the order they were emitted, one JSON line each with its
        emission time (``emitted.jsonl`` beside split ``index``'s detections)."""
        folder = self.temporary if index is None else self.temporary / f"split_{index}"
        try:
            folder.mkdir(exist_ok=True)
            (folder / "emitted.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        except OSError as err:
            raise _unwritable(self.folder, err) from None

    def commit(self, document: dict | None = None) -> None:
        """Write ``results.json`` (an evaluated run's ``document``) and put the complete run in the
        folder's place; a replaced folder's files that are not a run's join the new one."""
        if document is not None:
            self._write_text("results.json", json.dumps(document, indent=2) + "\n")
        old = self.temporary.with_suffix(".old")
        try:
            if self.folder.is_dir():
                os.replace(self.folder, old)
            os.replace(self.temporary, self.folder)
        except OSError as err:
            if old.exists() and not self.folder.exists():
                os.replace(old, self.folder)
            self.abandon()
            raise _unwritable(self.folder, err) from None
        try:
            if old.exists():
                self._keep_other_files(old)
        finally:
            self.abandon()

    def _keep_other_files(self, old: Path) -> None:
        """Move the files of the replaced folder ``old`` that are not a run's into the new one, then
        remove ``old``; where one cannot move, ``old`` stays and the error says where."""
        try:
            for entry in set(old.iterdir()) - set(_run_entries(old)):
                os.replace(entry, self.folder / entry.name)
        except OSError as err:
            raise OutputError(f"{self.folder}: results written, but the folder's other files could not be "
                              f"moved back ({err.strerror}); they are in {old}") from None
        shutil.rmtree(old, ignore_errors=True)

    def abandon(self) -> None:
        """Remove the temporary folder and release the lock; the folder stays as it was."""
        shutil.rmtree(self.temporary, ignore_errors=True)
        if self._locked:
            with contextlib.suppress(OSError):
                self.lock.unlink(missing_ok=True)
            self._locked = False


def result_presences(results: list[VideoResult], classes: list[str],
                     names: Mapping[str, str]) -> dict[str, dict[str, float]] | None:
    """video (its name in ``names``, else its id) -> class -> presence of results under the open-set
    rule (None: a closed-world run)."""
    if not results or results[0].presence is None:
        return None
    return {names.get(r.video_id, r.video_id): {c: float(p) for c, p in zip(classes, r.presence)} for r in results}


def _write_curve(path: Path, result: VideoResult, classes: list[str]) -> None:
    """A video's curve, segments and scores; with several labels, each label's curve as well; under
    the open-set rule, the presence of every class."""
    curves = result.curves or {result.pseudo_label: result.similarity}
    write_curve(path, Curve(result.video_id, result.timestamps, result.similarity, classes[result.pseudo_label],
                            result.seconds(), [classes[i] for i in result.labels], result.scores,
                            {classes[i]: curve for i, curve in curves.items()}, result.presence))


@contextlib.contextmanager
def claimed(folders: Mapping[str, Path], records: Mapping[str, dict],
            overwrite: bool = False) -> Iterator[dict[str, RunOutput]]:
    """Claim every folder (name -> folder) for its record before any work; on the way out, the
    outputs not committed are abandoned, so a failed run leaves no trace in them."""
    outputs: dict[str, RunOutput] = {}
    try:
        for name, folder in folders.items():
            outputs[name] = RunOutput(folder, records[name], overwrite)
        yield outputs
    finally:
        for output in outputs.values():
            output.abandon()
