"""Files written whole: every output of the project (cache files, run records, detections, tables,
pages) reaches its name complete or not at all, and never replaces a complete file with a cut one."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import socket
from pathlib import Path


_HOST = hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:8]  # names this machine in temporary names


def temporary_path(final: Path) -> Path:
    """A unique temporary name next to ``final`` that no reader takes for a complete file:
    ``.<final>.<pid>-<host>.<random>.tmp``, naming the process writing it and its machine."""
    return final.with_name(f".{final.name}.{os.getpid()}-{_HOST}.{secrets.token_hex(4)}.tmp")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def writer_gone(temporary: Path) -> bool:
    """Whether the process that was writing ``temporary`` (a ``temporary_path``) has ended: known
    only for a writer on this machine; another machine's is never taken for gone."""
    parts = temporary.name[1:].rsplit(".", 3)
    pid, _, host = parts[1].partition("-") if len(parts) == 4 else ("", "", "")
    return host == _HOST and pid.isdigit() and not process_alive(int(pid))


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
