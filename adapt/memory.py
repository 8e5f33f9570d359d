"""A device without memory for stage two's work: its error lives here, apart from the numeric core
and from torch, so that every command line can catch it (and report it in one line) cheaply."""
from __future__ import annotations


class OutOfMemory(RuntimeError):
    """The device cannot hold even one adaptation."""
