"""The serving limits a process can honour: what its open-files limit leaves for
connections and live streams."""

from __future__ import annotations

import resource

DEFAULT_MAX_CONNECTIONS = 10_000  # the ceiling of the derived connection cap
DEFAULT_MAX_EVENT_STREAMS = 500  # the ceiling of the derived live stream cap


def open_files_limit() -> int:
    """The process's soft limit on open files (`ulimit -n`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def reserved_files(open_files: int) -> int:
    """Files kept out of the connection cap: the process's own (database files and
    connections, one or more per worker thread) and sockets accepted but not yet counted.
    A quarter of the limit, and at least 256 when the limit is 512 or more."""
    return max(open_files // 4, min(256, open_files // 2))
