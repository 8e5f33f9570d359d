"""Where stage two's per-video work runs: local joblib workers, or a Dask cluster's workers."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import joblib

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 30


class ClusterError(RuntimeError):
    """The Dask scheduler cannot be used: dask.distributed missing, or the address unreachable."""


@contextmanager
def dask_backend(address: str | None) -> Iterator[None]:
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
