"""The project's one error base: every failure a user can act on derives from ``T3alError``, so a
command line catches that one class and prints its message in one line, without a traceback."""
from __future__ import annotations


class T3alError(Exception):
    """A failure the user can act on; the message says what and why in one line.

    Subclasses keep their other bases (``ValueError``, ``RuntimeError``) so that code catching those
    still catches them."""
