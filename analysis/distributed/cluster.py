"""The Dask cluster an analysis runs on: an existing scheduler (`--cluster ADDRESS`) or a local
cluster of worker processes (`--workers N`), each worker limited in memory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from dask.utils import parse_bytes
from distributed import Client, LocalCluster

from hopscope.core.rundir import RunDirError


class ClusterError(RunDirError):
    """The cluster cannot be reached or started."""


#: the smallest memory limit a local worker gets
MIN_WORKER_MEMORY = 1 << 30

#: how long a scheduler address may take to answer before the analysis gives up
CONNECT_TIMEOUT_S = 10


@contextlib.contextmanager
def connect(
    address: str | None = None, *, workers: int | None = None, memory_limit: str | None = None
) -> Iterator[Client]:
    """A client of the scheduler at `address`, or of a local cluster of `workers` processes
    (one thread each: the kernels use two threads of their own) with `memory_limit` per worker
    (Dask's spelling: "3GiB"; default: the machine's memory shared out)."""
    # distributed logs every lost worker and retried task at WARNING on stderr; the progress
    # bars and the results say what matters
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if address is not None:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"--cluster {address}: cannot reach a Dask scheduler there ({exc})") from exc
        with client:
            yield client
        return
    if not workers or workers < 1:
        raise ClusterError("--workers: needs a number of workers ≥ 1")
    if memory_limit is not None:
        try:
            limit = parse_bytes(memory_limit)
        except (ValueError, TypeError) as exc:
            raise ClusterError(f"--worker-memory {memory_limit}: not a size (e.g. 3GiB)") from exc
        # a worker holds ~0.2 GiB before any task; Dask pauses one past 80 % of its limit, and a
        # worker paused by its own baseline never resumes
        if limit < MIN_WORKER_MEMORY:
            raise ClusterError(f"--worker-memory {memory_limit}: a worker needs at least 1 GiB")
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit or "auto",
            dashboard_address=":0",  # a free port: never "already in use" beside another cluster
        )
    except (OSError, ValueError, TypeError) as exc:
        raise ClusterError(f"cannot start a local Dask cluster of {workers} workers ({exc})") from exc
    with cluster, Client(cluster) as client:
        yield client
