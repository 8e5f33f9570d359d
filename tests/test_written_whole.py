"""Every output written whole (issue 25): the viewer, detections, tables and --json reach their
names complete or not at all, a failed write never replaces a complete file, and is one line."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import synthetic_features, write_tiny_cache
from t3al.cache import write_atomically
from t3al.evaluate.cli import main as evaluate_main
from t3al.localize.cli import main as localize_main


def _full_disk_when(marker: bytes):
    """A byte writer that meets a full disk half-way through any write starting with ``marker``."""
    def write(fd: int, data: bytes) -> None:
        if bytes(data[:len(marker)]) == marker:
            os.write(fd, bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        os.write(fd, bytes(data))
    return write


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def test_write_atomically_keeps_the_complete_file_when_a_write_fails(tmp_path, monkeypatch):
    path = write_atomically(tmp_path / "a.json", '{"complete": true}')
    monkeypatch.setattr("t3al.cache.files.write_all", _full_disk_when(b"{"))
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, '{"cut": "' + "x" * 1000 + '"}')
    assert json.loads(path.read_text()) == {"complete": True} and _leftovers(tmp_path) == []


@pytest.fixture
def scored(tmp_path):
    gt = tmp_path / "gt.csv"
    gt.write_text("video-id,t-start,t-end,label\nv,0,10,A\n")
    dets = tmp_path / "d.csv"
    dets.write_text("video-id,t-start,t-end,score,label\nv,0,10,0.9,A\n")
    return lambda out, *more: CliRunner().invoke(evaluate_main, [str(dets), "-g", str(gt), "--json", str(out), *more])


def test_score_json_under_a_file_is_one_line_and_writes_nothing(scored, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = scored(tmp_path / "file" / "r.json")
    assert result.exit_code == 1 and result.output.splitlines()[-1] == (
        f"t3al-evaluate: error: {tmp_path / 'file' / 'r.json'}: cannot write ({tmp_path / 'file'} is not a folder); "
        "nothing was written")


def test_score_json_on_a_full_disk_is_one_line_and_keeps_the_earlier_file(scored, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    assert scored(out).exit_code == 0
    before = out.read_bytes()
    monkeypatch.setattr("t3al.cache.files.write_all", _full_disk_when(b"{"))
    result = scored(out, "--tiou", "0.3", "--overwrite")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1] == (f"t3al-evaluate: error: {out}: cannot write (no space left on device); "
                                              "nothing was written")
    assert out.read_bytes() == before and _leftovers(tmp_path) == []


def test_score_json_on_a_read_only_file_system_is_one_line(scored, tmp_path, monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("t3al.cache.files.os.open", read_only)
    result = scored(tmp_path / "r.json")
    assert result.exit_code == 1 and result.output.splitlines()[-1].endswith(
        "r.json: cannot write (Read-only file system); nothing was written")
    assert not (tmp_path / "r.json").exists()


def test_a_viewer_that_cannot_be_written_is_one_line_and_keeps_the_earlier_run_and_page(tmp_path, monkeypatch):
    cache = write_tiny_cache(tmp_path / "cache", {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1)},
                             ["pole vault", "high jump"], distractors=True)
    out = tmp_path / "run"
    args = [str(cache), "--actions", "pole vault, high jump", "--out", str(out), "--jobs", "1", "--no-progress"]
    assert CliRunner().invoke(localize_main, args).exit_code == 0
    page = (out / "index.html").read_bytes()
    monkeypatch.setattr("t3al.cache.files.write_all", _full_disk_when(b"<!DOCTYPE"))
    result = CliRunner().invoke(localize_main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1] == (f"Error: {out}: cannot write the run's results (no space left on "
                                              "device); nothing was written there")
    assert (out / "index.html").read_bytes() == page and _leftovers(tmp_path) == []
    assert json.loads((out / "detections.json").read_text())["results"]


def test_a_refused_write_says_what_it_needs_beside_what_is_free(tmp_path, monkeypatch):
    import shutil

    import numpy as np

    from t3al.cache import CacheInfo, CacheWriter, DiskFullError, ModelIdentity, VideoRecord

    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    monkeypatch.setattr("shutil.disk_usage", lambda path: shutil._ntuple_diskusage(1 << 30, 1 << 30, 65536 + 100))
    with pytest.raises(DiskFullError, match=r"no space left on device \(a file of ([\d.]+) kB needs ([\d.]+) kB "
                                            r"with the 65.5 kB kept free, 65.6 kB free\)"):
        writer.write_video(VideoRecord("b", np.ones((6, 4), np.float32), np.arange(6) / 2.0, 2.0))
