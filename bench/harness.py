"""What every benchmark shares: servers in child processes on free loopback ports, a fresh
PostgreSQL database, keep-alive clients, and the figures of a run of requests.

A benchmark module serves its apps through `serve_on_loopback` from its `_serve`
entry point, and starts them with `bench_server(module, kind, database_url, log_path)`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def serve_on_loopback(app: Any, port: int, close: Callable[[], None], *,
                      reuse_port: bool = False) -> None:
    """Serves `app` with uvicorn on LOOPBACK:port until SIGTERM/SIGINT, then `close()`.
    `reuse_port`: several processes listen on the port (SO_REUSEPORT), and the kernel
    spreads the connections over them."""
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only
    # when the listening socket says IPPROTO_TCP (proto 0 would not do). Without it,
    # uvicorn's separate writes of the response head and body meet Nagle + delayed ACK
    # and every request on a keep-alive connection waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((LOOPBACK, port))
    # The same uvicorn setup as tests/conftest.py's LiveServer, for every app.
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        close()


class Child:
    """A child process (log to a file), optionally an HTTP server on a free loopback port
    that is ready when ``/healthz`` answers; SIGTERM, then SIGKILL, on exit."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *,
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}" if port is not None else ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_seconds: float | None = None  # from start until /healthz answered

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Child:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=PROJECT_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            if self.port is not None:
                self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")

    def _wait_ready(self) -> None:
        started = time.monotonic()
        deadline = started + STARTUP_TIMEOUT
        while True:
            self.check_alive()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    self.ready_seconds = time.monotonic() - started
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"


def serve_arguments(prog: str) -> argparse.ArgumentParser:
    """The arguments of a module's ``_serve``: which of its apps (``--kind``), on which
    database and port (what `bench_server` passes)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--kind", choices=("app", "bare"), required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    return parser


def bench_server(module: str, kind: str, database_url: str, log_path: Path) -> Child:
    """`python -m <module> _serve --kind <kind> ...` on a free loopback port."""
    port = free_port()
    return Child(f"{kind} server", [sys.executable, "-m", module, "_serve", "--kind", kind,
                                    "--database-url", database_url, "--port", str(port)],
                 log_path, port=port)


def command_line(argv: Sequence[str] | None, serve: Callable[[Sequence[str]], None],
                 parse_args: Callable[[Sequence[str]], argparse.Namespace]
                 ) -> argparse.Namespace | None:
    """A benchmark module's command line (`sys.argv[1:]` when `argv` is None): ``_serve
    ...`` serves one of its apps in this process (a child) and gives None; anything else
    is the benchmark's arguments, parsed by `parse_args`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_serve"]:
        serve(argv[1:])
        return None
    return parse_args(argv)


def machine() -> str:
    """What the figures were measured on: ``python 3.11.x, N CPUs``."""
    return f"python {platform.python_version()}, {os.cpu_count()} CPUs"


# --------------------------------------------------------------------------------------
# Measuring (client side)
# --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process and of all its descendants alive (`serve --workers`'
    workers) from /proc (Linux), else None."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        number = int(stat.parent.name)
        parents[number] = int(fields[1])
        times[number] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if pid not in times:
        return None
    total, family = 0.0, {pid}
    for number in sorted(times):  # children have higher pids, but not always: walk up
        ancestor = number
        while ancestor not in family and ancestor in parents and ancestor > 1:
            ancestor = parents[ancestor]
        if ancestor in family:
            family.add(number)
            total += times[number]
    return total


def keep_alive_client(base_url: str, headers: dict[str, str]) -> httpx.Client:
    """A keep-alive client with TCP_NODELAY: httpcore writes the request head and body
    in two sends, and without it Nagle + delayed ACK add ~40 ms to every POST."""
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    return httpx.Client(base_url=base_url, headers=headers, timeout=60,
                        transport=httpx.HTTPTransport(socket_options=nodelay))


class Timings:
    """What a run's `requests`, done in `seconds` with their `latencies` (seconds), give:
    requests per second and latency percentiles (ms). Its dataclasses declare the three."""

    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Result(Timings):
    store: str
    case: str
    requests: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    server_cpu: float | None
    errors: list[str] = field(default_factory=list)
    client_cpu: float | None = None  # the load generator's own CPU seconds, where measured

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)


@contextlib.contextmanager
def postgres_database(*, keep: bool = False) -> Iterator[str]:
    """A fresh database on TEST_DATABASE_URL or a throwaway cluster; dropped on exit unless
    `keep` (on TEST_DATABASE_URL's server: a throwaway cluster goes with its database)."""
    from tests.servers import create_database, drop_database, postgres_server

    with postgres_server() as server_url:
        url = create_database(server_url)
        try:
            yield url
        finally:
            if not keep:
                drop_database(url)


@dataclass
class RawResponse:
    """An answer as sent: status, headers (lower-case names) and the body's bytes, not
    decoded (gzip stays gzip)."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class RawClient:
    """A light HTTP/1.1 keep-alive client for floods of GETs: one socket, the request written
    whole, the answer read by its `Content-Length` (or chunks) into one buffer kept for the
    connection, and never decoded.

    A crowd decodes a gzip-coded page on its own machines; decoding here, on the server's
    machine, would measure the client: httpx inflating a 0.8 MB status page to 8 MB costs
    ~10 ms of the client's CPU, which is what capped the figures of `/` before. Reading into
    a buffer it keeps (`recv_into`) matters as much: a fresh 256 KB string per `recv` costs
    an mmap and its page faults each time, unless earlier large allocations happened to
    raise the allocator's threshold (the same client measured 1,000 or 5,000 pages a second
    depending on what its process had done before)."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        url = httpx.URL(base_url)
        self.address = (url.host, url.port or 80)
        self.headers = {"host": f"{url.host}:{url.port}", "accept-encoding": "gzip",
                        "user-agent": "bench", **{k.lower(): v for k, v in
                                                  (headers or {}).items()}}
        self.sock: socket.socket | None = None
        self.buffer = bytearray(1 << 20)
        self.start = self.end = 0  # the bytes received and not read yet

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.start = self.end = 0
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def get(self, path: str, headers: dict[str, str] | None = None) -> RawResponse:
        """GET `path`; a transport failure raises `httpx.TransportError` (as httpx would)."""
        sent = {**self.headers, **{k.lower(): v for k, v in (headers or {}).items()}}
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items())
        try:
            sock = self._connect()
            sock.sendall((head + "\r\n").encode("latin-1"))
            response = self._read(sock)
        except OSError as error:
            self.close()
            raise httpx.TransportError(str(error)) from error
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def _room(self, size: int) -> None:
        """Room in the buffer for `size` bytes from `start`."""
        if self.start == self.end:
            self.start = self.end = 0
        if len(self.buffer) - self.start >= size:
            return
        kept = self.buffer[self.start:self.end]
        if len(self.buffer) < size:
            self.buffer = bytearray(max(size, 2 * len(self.buffer)))
        self.buffer[:len(kept)] = kept
        self.start, self.end = 0, len(kept)

    def _fill(self, sock: socket.socket) -> None:
        if self.end == len(self.buffer):
            self._room(self.end - self.start + 65536)
        received = sock.recv_into(memoryview(self.buffer)[self.end:])
        if not received:
            raise ConnectionError("the server closed the connection")
        self.end += received

    def _take(self, sock: socket.socket, size: int) -> bytes:
        self._room(size)
        while self.end - self.start < size:
            self._fill(sock)
        taken = bytes(self.buffer[self.start:self.start + size])
        self.start += size
        return taken

    def _line(self, sock: socket.socket, end: bytes = b"\r\n") -> bytes:
        while (at := self.buffer.find(end, self.start, self.end)) < 0:
            self._fill(sock)
        line = bytes(self.buffer[self.start:at])
        self.start = at + len(end)
        return line

    def _read(self, sock: socket.socket) -> RawResponse:
        lines = self._line(sock, b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 304 or status < 200 or status == 204:
            return RawResponse(status, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int(self._line(sock).split(b";")[0], 16):
                parts.append(self._take(sock, size))
                self._line(sock)
            while self._line(sock):  # trailers, up to the empty line
                pass
            return RawResponse(status, headers, b"".join(parts))
        return RawResponse(status, headers, self._take(sock, int(headers["content-length"])))
