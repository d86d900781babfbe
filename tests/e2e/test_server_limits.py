"""`product-status serve` against clients that hold connections without finishing a
request: header timeout, connection cap, a quiet log. The server runs as a child process
with the common limit of 1,024 open files, as it would on a default Linux install."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.settings import load_settings
from tests.servers import free_port

CLI = str(Path(sys.executable).parent / "product-status")
OPEN_FILES = 1024  # the server's limit (ulimit -n), soft and hard
HALF_HEAD = b"GET /api/v1/incidents HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
WAIT = 15.0  # seconds any one expectation may take


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _env(tmp_path: Path, settings: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "API_TOKENS": "writer:w",
           **settings}
    env.pop("DATABASE_URL", None)
    return env


@contextmanager
def serve(tmp_path: Path, **settings: str) -> Iterator[Served]:
    """`product-status serve` on a free loopback port, limited to 1,024 open files."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CLI, "serve", "--no-relay"], env=_env(tmp_path, {"PORT": str(port), **settings}),
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=_limit_open_files)
    served = Served(process, port, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{served.url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "serve did not answer within 30 s"
                time.sleep(0.1)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def raise_own_open_files(needed: int) -> None:
    """This test process holds more sockets than a default limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, (
            f"the test needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(port: int, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed (or answered and closed) this connection, without
    waiting."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)
    return data == b"" or data.startswith(b"HTTP/1.1 ")


def wait_closed(sock: socket.socket) -> bool:
    """Whether the server closes this connection within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if closed_by_server(sock):
            return True
        time.sleep(0.05)
    return False


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_1100_slow_header_connections_leave_a_normal_request_answered_within_1_s(
    tmp_path: Path,
) -> None:
    slow_count = 1100
    raise_own_open_files(slow_count + 200)
    # A header timeout longer than the test: it is the connection cap that keeps the
    # server answering here, not the slow connections timing out.
    with serve(tmp_path, HEADER_TIMEOUT_SECONDS="120") as served:
        log_at_start = served.log.stat().st_size
        slow: list[socket.socket] = []
        try:
            for _ in range(slow_count):
                slow.append(connect(served.port, HALF_HEAD))
            time.sleep(1.0)  # let the server take them all in
            held_before = sum(not closed_by_server(s) for s in slow)

            for _ in range(5):  # each a new client on a new connection
                started = time.monotonic()
                response = httpx.get(f"{served.url}/healthz", timeout=5)
                answered_in = time.monotonic() - started
                assert response.status_code == 200
                assert answered_in < 1.0, f"answered in {answered_in:.2f} s"

            held_after = sum(not closed_by_server(s) for s in slow)
            assert served.process.poll() is None
        finally:
            for sock in slow:
                sock.close()
        log_growth = served.log.stat().st_size - log_at_start
    # The server holds as many slow connections as its cap allows (the oldest made room
    # for newer ones), and still holds them while it answers the normal requests.
    cap = load_settings({}).connection_limit(OPEN_FILES)
    assert cap < OPEN_FILES
    assert held_before == cap
    assert held_after >= cap - 5
    assert log_growth < 1024 * slow_count // 100, served.log.read_text()[-3000:]


def test_connections_without_a_complete_head_in_time_are_closed(tmp_path: Path) -> None:
    with serve(tmp_path, HEADER_TIMEOUT_SECONDS="1", KEEP_ALIVE_TIMEOUT_SECONDS="1") as served:
        silent = connect(served.port)
        half = connect(served.port, HALF_HEAD)
        kept = connect(served.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")
        kept.sendall(HALF_HEAD)  # a second request on the kept-alive connection, unfinished
        # A head that arrives in time is served, however long its body then takes.
        slow_body = connect(served.port, b"POST /api/v1/incidents HTTP/1.1\r\n"
                            b"Host: 127.0.0.1\r\nAuthorization: Bearer w\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 17\r\n"
                            b"Connection: close\r\n\r\n")
        try:
            for sock in (silent, half, kept):
                assert wait_closed(sock)
            time.sleep(0.5)
            slow_body.sendall(b'{"title": "Late"}')
            assert read_answer(slow_body).startswith(b"HTTP/1.1 201 ")
            assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
        finally:
            for sock in (silent, half, kept, slow_body):
                sock.close()


def test_at_the_cap_a_new_connection_closes_the_longest_waiting_one(tmp_path: Path) -> None:
    with serve(tmp_path, MAX_CONNECTIONS="4", MAX_EVENT_STREAMS="2",
               HEADER_TIMEOUT_SECONDS="120") as served:
        waiting = [connect(served.port, HALF_HEAD if n % 2 else b"") for n in range(4)]
        try:
            time.sleep(0.5)
            assert not any(closed_by_server(s) for s in waiting)
            assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
            assert wait_closed(waiting[0])
            assert not any(closed_by_server(s) for s in waiting[1:])
        finally:
            for sock in waiting:
                sock.close()


def test_at_the_cap_with_every_connection_busy_a_new_one_is_answered_503(
    tmp_path: Path,
) -> None:
    with serve(tmp_path, MAX_CONNECTIONS="3", MAX_EVENT_STREAMS="2") as served:
        streams = [connect(served.port, b"GET /api/v1/events/stream HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\n\r\n") for _ in range(2)]
        for sock in streams:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        # A request whose head arrived and whose body has not: busy, not waiting.
        posting = connect(served.port, b"POST /api/v1/incidents HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
        try:
            time.sleep(0.5)
            with connect(served.port) as turned_away:
                answer = read_answer(turned_away)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ")
            assert b"retry-after: 1" in head.lower()
            assert b"application/problem+json" in head
            assert b'"status":503' in body
            assert not closed_by_server(posting)

            streams.pop().close()
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    answered = httpx.get(f"{served.url}/healthz", timeout=5)
                    if answered.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "no room made by the closed stream"
                time.sleep(0.1)
        finally:
            for sock in (*streams, posting):
                sock.close()


@pytest.mark.parametrize(("settings", "named"), [
    ({"MAX_CONNECTIONS": "1000"}, "MAX_CONNECTIONS"),  # more than 1,024 files allow
    ({"MAX_CONNECTIONS": "0"}, "MAX_CONNECTIONS"),
    ({"MAX_EVENT_STREAMS": "800"}, "MAX_EVENT_STREAMS"),  # the derived cap is lower
    ({"MAX_CONNECTIONS": "50", "MAX_EVENT_STREAMS": "50"}, "MAX_EVENT_STREAMS"),
    ({"HEADER_TIMEOUT_SECONDS": "0"}, "HEADER_TIMEOUT_SECONDS"),
    ({"KEEP_ALIVE_TIMEOUT_SECONDS": "30"}, "KEEP_ALIVE_TIMEOUT_SECONDS"),  # over 10 s
])
def test_limits_the_server_cannot_honour_stop_start_up(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    result = subprocess.run([CLI, "serve"], env=_env(tmp_path, settings),
                            capture_output=True, text=True, timeout=60, check=False,
                            preexec_fn=_limit_open_files)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
