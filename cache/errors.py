"""The project's one error base, and how a command ends: every failure a user can act on derives
from ``T3alError``, so a command line catches that one class and prints its message in one line,
without a traceback; a signal ends a command through ``terminated_cleanly``."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Callable, Iterator


class T3alError(Exception):
    """A failure the user can act on; the message says what and why in one line.

    Subclasses keep their other bases (``ValueError``, ``RuntimeError``) so that code catching those
    still catches them."""


class Terminated(BaseException):
    """SIGTERM arrived: raised where the program was, so that cleanup on the way out runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


RESEND_EVERY = 1.0  # seconds between deliveries of a stop the command has not caught yet


def _stopping_already() -> bool:
    """Whether the code running now is cleanup on the way out of a stop: ``finally`` blocks and
    ``__exit__`` run with the stop (or an error raised while handling it) as ``sys.exc_info()``."""
    error = sys.exc_info()[1]
    while error is not None:
        if isinstance(error, (KeyboardInterrupt, Terminated)):
            return True
        error = error.__context__
    return False


class _Stop:
    """One command's handling of SIGINT and SIGTERM. The first signal raises where the program is. Python
    drops an exception raised while a finalizer (``__del__``, a weakref callback) runs, so until the
    command has caught the stop, the signal is sent to the main thread again every ``RESEND_EVERY``
    seconds and a dropped stop is not printed; cleanup on the way out is never interrupted."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.caught = threading.Event()

    def handle(self, signum: int, frame: object) -> None:
        if _stopping_already():
            return
        if self.signum is None:
            self.signum = signum
            threading.Thread(target=self._resend, name="t3al-stop", daemon=True).start()
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)

    def _resend(self) -> None:
        main = threading.main_thread().ident
        while not self.caught.wait(RESEND_EVERY):
            signal.pthread_kill(main, self.signum)

    def dropped_quietly(self, previous: Callable) -> Callable:
        """An unraisable-exception hook that says nothing of a dropped stop: it will be sent again."""
        def hook(unraisable: Any) -> None:
            if not (self.signum is not None and isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated))):
                previous(unraisable)
        return hook


@contextlib.contextmanager
def terminated_cleanly(command: str) -> Iterator[None]:
    """SIGTERM (a cluster's time limit, ``kill``) and Ctrl-C end ``command`` as exceptions, so that
    temporary files and claimed folders are removed and ffmpeg processes stopped on the way out; then
    one line, and the shell's exit status for the signal: 143 for SIGTERM, 130 for Ctrl-C. A signal the
    parent set to be ignored stays ignored. A ``with`` block, or a decorator on a command's function."""
    stop = _Stop()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, stop.handle)
    previous_hook, sys.unraisablehook = sys.unraisablehook, stop.dropped_quietly(sys.unraisablehook)
    try:
        yield
    except (KeyboardInterrupt, Terminated) as stopped:
        signum = stopped.signum if isinstance(stopped, Terminated) else signal.SIGINT
        print(f"{command}: stopped by {signal.Signals(signum).name}; nothing half-written is kept", file=sys.stderr)
        raise SystemExit(128 + signum) from None
    finally:
        stop.caught.set()
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
