"""`t3al-adapt` and `t3al-sweep` stopped by a real SIGINT (Ctrl-C) or SIGTERM (kill), as every command is."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import write_toy_world

COMMANDS = {"t3al-adapt": ("t3al.adapt.cli", []), "t3al-sweep": ("t3al.adapt.sweep_cli", ["--table", "table6"])}


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
        [sys.executable, "-c", f"from {module} import main; main()", str(cache), *extra, "--out",
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
