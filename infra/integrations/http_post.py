"""POSTing to one destination over a kept-alive connection (the standard library's
http.client: a fraction of the CPU per request of a general-purpose client, which matters
when one integration works through a backlog of thousands of events).

Connections go only where the network policy allows: the address checked is the one
connected to (a name is resolved once, here). Redirects are answers like any other.
Each step (connect, send, each read) has `timeout` seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import time
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import certifi

from infra.integrations.destinations import NetworkPolicy

MAX_ANSWER = 64 * 1024  # an answer's body beyond this is not read (the connection closes)
# A kept connection idle for longer than this is looked at before it is used again (the
# other end may have closed it); one used just now is not (TLS 1.3 servers send tickets
# after the handshake, which would look like an unasked answer).
LOOK_AFTER_IDLE = 1.0


@cache
def _tls() -> ssl.SSLContext:
    """One context for every destination: loading the certificate authorities takes tens
    of milliseconds, too long to repeat on each connection."""
    return ssl.create_default_context(cafile=certifi.where())


class CannotConnect(OSError):
    """No connection could be made (the name did not resolve, or no address answered)."""


def _connect(policy: NetworkPolicy, host: str, port: int, timeout: float | None
             ) -> socket.socket:
    try:
        addresses = policy.addresses(host, port)  # DestinationRefused: nothing connects
    except OSError as error:
        raise CannotConnect(f"cannot resolve {host}: {error}") from error
    last: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), timeout)
        except TimeoutError:
            raise
        except OSError as error:
            last = error
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise CannotConnect(str(last) if last else f"{host} has no address")


class _Plain(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, timeout: float, policy: NetworkPolicy) -> None:
        super().__init__(host, port, timeout=timeout)
        self.policy = policy

    def connect(self) -> None:
        self.sock = _connect(self.policy, self.host, self.port, self.timeout)


class _Tls(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, timeout: float, policy: NetworkPolicy) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls())
        self.policy = policy

    def connect(self) -> None:
        sock = _connect(self.policy, self.host, self.port, self.timeout)
        self.sock = _tls().wrap_socket(sock, server_hostname=self.host)


@dataclass(frozen=True)
class Answer:
    status: int
    location: str | None


class Poster:
    """POSTs to one URL, keeping the connection between requests."""

    def __init__(self, url: str, policy: NetworkPolicy, timeout: float) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.policy = policy
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None
        self.used = 0.0

    def _connection(self) -> http.client.HTTPConnection:
        connection = self.connection
        if connection is not None and time.monotonic() - self.used > LOOK_AFTER_IDLE \
                and not _reusable(connection):
            self.close()
            connection = None
        if connection is None:
            kind = _Tls if self.tls else _Plain
            connection = self.connection = kind(self.host, self.port, self.timeout, self.policy)
        return connection

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        """The destination's answer; raises what went wrong on the way (OSError,
        http.client.HTTPException, DestinationRefused). The connection is dropped after
        any failure, so the next request starts afresh."""
        connection = self._connection()
        try:
            connection.request("POST", self.target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(MAX_ANSWER)
            if not response.isclosed():
                self.close()  # more than we read: do not read it
            self.used = time.monotonic()
            return Answer(response.status, response.getheader("Location"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()


def _reusable(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept connection is still open: an idle connection that is readable has
    been closed by the other end (or sent something unasked)."""
    sock = connection.sock
    if sock is None:
        return True  # not connected yet: it connects on the next request
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
