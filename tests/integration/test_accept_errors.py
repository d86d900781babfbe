"""The event loop's accept errors, once file descriptors run out, are logged as a count at
most once a minute: asyncio alone logs every failed attempt with a traceback, hundreds of
megabytes a minute. Runs a real asyncio server in a child process that has used up its
descriptors, against real connections."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

SERVER = textwrap.dedent("""
    import asyncio, logging, resource, sys
    from infra.http_server import LoopErrors

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if sys.argv[1] == "quiet":
            loop.set_exception_handler(LoopErrors())
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, backlog=100)
        hog = []
        try:
            while True:
                hog.append(open("/dev/null"))
        except OSError:
            pass
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


def accept_failures_logged(mode: str) -> str:
    child = subprocess.Popen([sys.executable, "-c", SERVER, mode], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10)
                   for _ in range(50)]
        time.sleep(3.0)  # asyncio retries accepting every second
        for client in clients:
            client.close()
    finally:
        child.kill()
        _, errors = child.communicate(timeout=30)
    return errors


def test_accept_errors_are_logged_once_as_a_count() -> None:
    log = accept_failures_logged("quiet")
    lines = log.splitlines()
    assert len(lines) == 1, log[:3000]
    assert lines[0].startswith("WARNING product_status.server cannot accept connections")


def test_without_it_asyncio_logs_every_failed_accept() -> None:
    """What the handler is for: the same run with asyncio's own handler."""
    log = accept_failures_logged("default")
    assert log.count("socket.accept() out of system resource") > 50
