"""Files written whole: every output of the project (cache files, run records, detections, tables,
pages) reaches its name complete or not at all, and never replaces a complete file with a cut one."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path


def temporary_path(final: Path) -> Path:
    """A unique temporary name next to ``final`` that no reader takes for a complete file."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove(path: Path) -> None:
    """Delete ``path`` if it is there; a file that cannot be deleted (a read-only file system) is
    left, so the error that brought us here is the one reported."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: Path, data: bytes, sync: bool = False) -> None:
    """Create ``path`` (it must not exist) with the process's umask, holding ``data`` (``sync``: on
    the disk when this returns). The caller removes ``path`` when this raises."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to a temporary file in ``path``'s folder, flush it to disk and
    rename it onto ``path``: readers see the earlier file or the new one, whole. The temporary file
    never survives; an OSError (full disk, read-only, a parent that is a file) is raised as it is."""
    final = Path(path)
    tmp = temporary_path(final)
    try:
        write_new(tmp, data.encode("utf-8") if isinstance(data, str) else data, sync=True)
        os.replace(tmp, final)
    finally:
        remove(tmp)
    return final


def write_problem(err: OSError) -> str:
    """Why a write failed, in a few words for a one-line error."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{err.filename} is not a folder" if err.filename else "a parent is not a folder"
    return err.strerror or str(err)
