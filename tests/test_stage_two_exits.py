"""How `t3al-adapt` and `t3al-sweep` end: a project error in one line, a real SIGINT (Ctrl-C) or SIGTERM
(kill) as every command ends on it."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from t3al.adapt import cli, sweep_cli
from t3al.adapt.config import ConfigError
from t3al.adapt.algorithm.video import VideoProblem

from conftest import write_toy_world

COMMANDS = {"t3al-adapt": (cli, []), "t3al-sweep": (sweep_cli, ["--table", "table6"])}


def _claimed(parent):
    """Whether a run has claimed its output: its temporary folder exists under ``parent``."""
    return parent.exists() and any(p.name.endswith(".tmp") for p in parent.rglob(".*"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_signal_mid_run_exits_with_the_shells_status_in_one_line_and_leaves_no_output(tmp_path, command, stop):
    actions = {f"v{i}": (400, 40 + 5 * i, 160 + 5 * i, i % 3) for i in range(4)}
    cache = write_toy_world(tmp_path, ["Jump", "Throw", "Swim"], actions, [["Jump", "Throw"]])
    module, extra = COMMANDS[command]
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-c", f"from {module.__name__} import main; main()", str(cache), *extra, "--out",
         str(runs / "out"), "--steps", "1000000", "--jobs", "1", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while not _claimed(runs) and process.poll() is None and time.monotonic() - started < 120:
        time.sleep(0.05)
    assert _claimed(runs), process.communicate(timeout=60)
    process.send_signal(stop)
    output, errors = process.communicate(timeout=120)
    assert process.returncode == 128 + stop, errors
    assert errors.splitlines() == [f"{command}: stopped by {stop.name}; nothing half-written is kept"]
    assert output == ""
    assert list(runs.rglob("*")) in ([], [runs / "out"])  # no result, temporary folder or lock; a sweep's empty parent


@pytest.mark.parametrize("error", [ConfigError("--steps must be at least 0"), VideoProblem("v1", "has 1 frame(s)")],
                         ids=["listed before", "any project error"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_project_error_is_one_line_and_exit_1(tmp_path, monkeypatch, command, error):
    module, extra = COMMANDS[command]

    def refused(*args, **kwargs):
        raise error

    monkeypatch.setattr(module, "build_spec", refused)
    result = CliRunner().invoke(module.main, [str(tmp_path), *extra, "--no-progress"])
    assert result.exit_code == 1 and result.output.splitlines() == [f"Error: {error}"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_error_not_the_projects_is_not_dressed_as_one(tmp_path, monkeypatch, command):
    module, extra = COMMANDS[command]

    def unreadable(*args, **kwargs):
        raise OSError("device not ready")

    monkeypatch.setattr(module, "build_spec", unreadable)
    result = CliRunner().invoke(module.main, [str(tmp_path), *extra, "--no-progress"])
    assert isinstance(result.exception, OSError) and "Error:" not in result.output
