"""The project's one error base, and how a command ends: every failure a user can act on derives
from ``T3alError``, so a command line catches that one class and prints its message in one line,
without a traceback; a signal ends a command through ``terminated_cleanly``."""
from __future__ import annotations

import contextlib
import signal
import sys
from typing import Iterator


class T3alError(Exception):
    """A failure the user can act on; the message says what and why in one line.

    Subclasses keep their other bases (``ValueError``, ``RuntimeError``) so that code catching those
    still catches them."""


class Terminated(BaseException):
    """SIGTERM arrived: raised where the program was, so that cleanup on the way out runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminated_cleanly(command: str) -> Iterator[None]:
    """SIGTERM (a cluster's time limit, ``kill``) and Ctrl-C end ``command`` as exceptions, so that
    temporary files and claimed folders are removed and ffmpeg processes stopped on the way out; then
    one line, and the shell's exit status for the signal: 143 for SIGTERM, 130 for Ctrl-C. A ``with``
    block, or a decorator on a command's function."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except (KeyboardInterrupt, Terminated) as stop:
        signum = stop.signum if isinstance(stop, Terminated) else signal.SIGINT
        print(f"{command}: stopped by {signal.Signals(signum).name}; nothing half-written is kept", file=sys.stderr)
        raise SystemExit(128 + signum) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
