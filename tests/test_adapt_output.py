"""A run's output folder: claimed before any work, one run at a time, written complete or not at all,
and every folder that cannot take the results one line."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys


import pytest
from click.testing import CliRunner

from t3al.adapt import cli as adapt_cli
from t3al.adapt.engine import output as output_module
from t3al.adapt.engine import runner
from t3al.adapt.engine.output import OutputError, RunOutput

from conftest import write_toy_world

CLASSES = ["Jump", "Throw", "Swim", "Run"]
RECORD_A = {"config": {"steps": 0}, "seed": 0, "setting": "75_25", "cache": {"model": "m"}, "manifest": "toy"}
RECORD_B = {**RECORD_A, "config": {"steps": 1}}


def _world(tmp_path):
    """Four short videos, one action each; two splits of two unseen classes."""
    actions = {f"v{i}": (120, 30 + 4 * i, 80 + 4 * i, i % 4) for i in range(4)}
    return write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Swim", "Run"]])


def _adapt(*args):
    return CliRunner().invoke(adapt_cli.main, [str(a) for a in args] + ["--no-progress", "--jobs", "1"])


def _one_line_error(result, text: str) -> None:
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and text in errors[0], result.output


def _siblings(folder):
    """What a run leaves next to its folder (temporary folders, locks)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith("."))


def test_a_second_run_into_a_claimed_folder_gets_one_line_and_the_first_run_is_kept_whole(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    first = RunOutput(out, RECORD_A)  # a run of another configuration holds the folder, mid-run
    second = _adapt(cache, "--out", out, "--steps", "1", "--split-index", "0")
    _one_line_error(second, f"{out} is being written by another t3al run (process ")
    first.commit({"from": "A"})
    assert json.loads((out / "config.json").read_text()) == RECORD_A
    assert json.loads((out / "results.json").read_text()) == {"from": "A"}
    assert _siblings(out) == []  # lock and temporary folder gone


def test_two_claims_of_one_folder_exclude_each_other_until_the_first_ends(tmp_path):
    out = tmp_path / "out"
    first = RunOutput(out, RECORD_A)
    with pytest.raises(OutputError, match="is being written by another t3al run"):
        RunOutput(out, RECORD_B)
    first.abandon()
    assert not out.exists() and _siblings(out) == []
    RunOutput(out, RECORD_B).commit({"from": "B"})
    assert json.loads((out / "config.json").read_text()) == RECORD_B


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    out = tmp_path / "out"
    (tmp_path / ".out.lock").write_text(f"{socket.gethostname()} {dead}\n")
    RunOutput(out, RECORD_A).commit({"from": "A"})
    assert json.loads((out / "results.json").read_text()) == {"from": "A"} and _siblings(out) == []


def test_out_naming_a_file_is_one_line_before_any_work(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "results.txt"
    out.write_text("mine\n")
    _one_line_error(_adapt(cache, "--out", out, "--split-index", "0"), f"{out} is a file, not a folder")
    _one_line_error(_adapt(cache, "--out", out / "run", "--split-index", "0"), f"{out} is not a folder")
    assert out.read_text() == "mine\n" and _siblings(out) == []


def test_a_read_only_output_is_one_line_before_any_work(tmp_path, monkeypatch):
    cache = _world(tmp_path)

    def read_only(path, folder):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(output_module, "_lock", read_only)
    result = _adapt(cache, "--out", tmp_path / "out", "--split-index", "0")
    _one_line_error(result, f"{tmp_path / 'out'}: cannot write the run's results (Read-only file system)")
    assert "mAP" not in result.output and not (tmp_path / "out").exists()


def test_a_full_disk_leaves_no_partial_run_and_is_one_line(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    out = tmp_path / "out"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output_module, "write_curve", disk_full)  # the curves of split 0
    result = _adapt(cache, "--out", out, "--split-index", "0", "--steps", "0")
    _one_line_error(result, f"{out}: cannot write the run's results (no space left on device); nothing was written")
    assert not out.exists() and _siblings(out) == []  # no split_0/, no config.json, no temporary folder


def test_a_failed_rerun_keeps_the_earlier_complete_run(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    assert _adapt(cache, "--out", out, "--split-index", "0", "--steps", "0").exit_code == 0
    (out / "notes.txt").write_text("mine\n")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output_module.Detections, "write_csv", disk_full)
    result = _adapt(cache, "--out", out, "--split-index", "0", "--steps", "0")
    _one_line_error(result, "no space left on device")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _siblings(out) == []


def test_a_replaced_run_keeps_the_folders_other_files_and_drops_its_stale_splits(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    assert _adapt(cache, "--out", out, "--split-index", "0", "--steps", "0").exit_code == 0
    (out / "notes.txt").write_text("mine\n")
    rerun = _adapt(cache, "--out", out, "--split-index", "1", "--steps", "0")
    assert rerun.exit_code == 0, rerun.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "notes.txt", "results.json", "split_1"]
    assert (out / "notes.txt").read_text() == "mine\n" and _siblings(out) == []


def test_a_killed_worker_during_t3al_adapt_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "run_chunk", _killed_on_v2)
    result = CliRunner().invoke(adapt_cli.main, [str(cache), "--out", str(out), "--jobs", "2", "--no-progress"])
    _one_line_error(result, "a worker process was killed (out of memory? the kernel's OOM killer sends kill -9) "
                            "while adapting v0, v1, v2, v3; nothing was written: rerun with fewer --jobs")
    assert not out.exists() and _siblings(out) == []


def _killed_on_v2(cache, video_ids, *args):
    """The worker's run_chunk, killed when its chunk holds video 'v2'."""
    if "v2" in video_ids:
        os.kill(os.getpid(), signal.SIGKILL)
    return runner_chunk(cache, video_ids, *args)


runner_chunk = runner.run_chunk
