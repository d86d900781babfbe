"""`serve --workers N`: N API processes answering on one port.

Each worker is a fork of the command taken before anything opened a connection or a
thread; each binds its own listening socket with SO_REUSEPORT (the kernel spreads new
connections over them) and runs the whole server of infra/http_server.py with its own
limits. Only the first worker runs the work beside the API (projectors, relay, delivery,
timers): the others learn of the read models' progress from the store, as a second `serve`
would. The parent only waits: SIGINT or SIGTERM stops every worker (each finishes its open
answers), and a worker that ends alone stops the others, so that the command never runs
short of workers unnoticed.

The workers' metrics are summed in files (prometheus-client's multiprocess mode, in
`PROMETHEUS_MULTIPROC_DIR`), so that `/metrics` counts every worker's requests whichever
answers it: in the operator's directory when the variable names one, else in a private
temporary directory the parent makes before forking and removes once the workers ended.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator

MAX_WORKERS = 64
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def workers_count(text: str) -> int:
    """`--workers` as argparse takes it: 1 to MAX_WORKERS, or a clear refusal."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of processes from 1 to {MAX_WORKERS}, got {text!r}")
    return int(text)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that other workers' sockets share."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only then
    # (without it a keep-alive answer's head and body meet Nagle and delayed ACK: ~40 ms).
    sock = socket.socket(info[0], socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(info[4])
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """The directory the workers keep their metrics in (yielded): `PROMETHEUS_MULTIPROC_DIR`
    when set, else a new empty one of the caller's, set in the environment the workers
    inherit and removed afterwards. prometheus-client chooses its mode when imported, so it
    must not be imported yet in this process (the workers inherit its modules)."""
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        yield given
        return
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the workers' metrics "
                           f"directory was set: {MULTIPROC_DIR} would not be heeded")
    with tempfile.TemporaryDirectory(prefix="product-status-metrics-") as directory:
        os.environ[MULTIPROC_DIR] = directory
        try:
            yield directory
        finally:
            os.environ.pop(MULTIPROC_DIR, None)


def run_workers(count: int, serve: Callable[[int], int]) -> int:
    """Runs `serve(index)` in `count` forked processes; returns the worst exit status."""
    children: dict[int, int] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    for index in range(count):
        if stopping:
            break
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)  # the terminal's Ctrl-C reaches the parent, which stops each once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 1
            try:
                code = serve(index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    if stopping:
        stop()  # a signal came while forking: the last ones forked hear of it too
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        worst = max(worst, code if code >= 0 else 128 - code)
        if not stopping:
            stop()  # a worker ended alone: the others too
            worst = max(worst, 1)
    return worst
