"""Where stage two's per-video work runs: local joblib workers, or a Dask cluster's workers."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import joblib
from joblib.externals.loky.process_executor import TerminatedWorkerError

from t3al.cache import T3alError

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 30


class ClusterError(T3alError, RuntimeError):
    """The Dask scheduler cannot be used: dask.distributed missing, or the address unreachable."""


class WorkerDiedError(ClusterError):
    """A local worker process died mid-task (killed: the kernel's out-of-memory killer, kill -9)."""


@contextmanager
def _dask_backend(address: str | None) -> Iterator[None]:
    """Send joblib's tasks to the Dask scheduler at ``address`` while inside; None: local joblib.

    The workers read the cache themselves (a filesystem they share with this machine) and use
    all their threads, whatever ``--jobs`` says; each task's numbers do not depend on where it runs.
    """
    if not address:
        yield
        return
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--scheduler needs dask.distributed: pip install 't3al[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as err:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({err}); "
                           f"start one with `dask scheduler` or fix --scheduler / {SCHEDULER_ENV}") from None
    with client, joblib.parallel_config(backend="dask"):
        yield


def _marked(mark: str, function: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run ``function`` with the file ``mark`` present while it runs (none where the folder is not
    reachable, as on another machine's Dask worker)."""
    try:
        Path(mark).touch()
    except OSError:
        pass
    result = function(*args, **kwargs)
    Path(mark).unlink(missing_ok=True)
    return result


def _shown(videos: list[str], limit: int = 10) -> str:
    return ", ".join(videos[:limit]) + (f" and {len(videos) - limit} more" if len(videos) > limit else "")


def parallel_videos(tasks: Iterable[tuple[list[str], tuple]], jobs: int,
                    scheduler: str | None = None) -> Iterator[Any]:
    """The results, in order, of ``tasks``: (videos, ``joblib.delayed(f)(...)``) pairs run on ``jobs``
    local joblib workers, or on the workers of the Dask ``scheduler``. A local worker that dies raises
    WorkerDiedError naming the videos of the tasks running then."""
    tasks = list(tasks)
    with _dask_backend(scheduler), tempfile.TemporaryDirectory(prefix="t3al-tasks-") as marks:
        calls = (joblib.delayed(_marked)(os.path.join(marks, str(i)), *call) for i, (_, call) in enumerate(tasks))
        try:
            yield from joblib.Parallel(n_jobs=jobs, return_as="generator")(calls)
        except TerminatedWorkerError:
            held = [v for i, (videos, _) in enumerate(tasks) if os.path.exists(os.path.join(marks, str(i)))
                    for v in videos]
            raise WorkerDiedError(
                f"a worker process was killed (out of memory? the kernel's OOM killer sends kill -9) while "
                f"adapting {_shown(held) or 'videos'}; nothing was written: rerun with fewer --jobs"
            ) from None
