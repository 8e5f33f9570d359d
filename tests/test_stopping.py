"""How a command ends on a signal (``t3al.cache.terminated_cleanly``): the stop reaches the command even
when Python drops it inside a finalizer, cleanup on the way out runs to its end, and a signal the
parent ignores stays ignored."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from t3al.cache import terminated_cleanly


def _run(body: str) -> subprocess.CompletedProcess:
    script = "import os, signal, time\nfrom t3al.cache import terminated_cleanly\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_dropped_inside_a_finalizer_is_delivered_again(stop):
    ended = _run(f"""
        class SignalledWhileFinalized:
            def __del__(self):
                os.kill(os.getpid(), {int(stop)})
                for _ in range(1000):  # the handler runs here, and Python drops what it raises
                    pass

        with terminated_cleanly("demo"):
            SignalledWhileFinalized()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.01)
            print("ran on")
        """)
    assert ended.returncode == 128 + stop, ended.stderr
    assert ended.stdout == ""
    assert ended.stderr.splitlines() == [f"demo: stopped by {stop.name}; nothing half-written is kept"]


def test_cleanup_on_the_way_out_is_not_interrupted_by_the_stop_sent_again():
    ended = _run("""
        with terminated_cleanly("demo"):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            finally:
                time.sleep(2.5)  # longer than the time between deliveries
                print("cleaned up")
        """)
    assert (ended.returncode, ended.stdout) == (128 + signal.SIGTERM, "cleaned up\n"), ended.stderr


def test_a_signal_the_parent_ignores_stays_ignored_and_handlers_are_restored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        terminate = signal.getsignal(signal.SIGTERM)
        with terminated_cleanly("demo"):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not terminate
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is terminate
    finally:
        signal.signal(signal.SIGINT, before)
