"""The HTTP server of `product-status serve`: uvicorn (h11) with the limits that keep it
answering when clients misbehave or the process runs short of file descriptors.

* **Header timeout.** A request's head (request line and headers) must be complete within
  HEADER_TIMEOUT_SECONDS of the connection opening or of the previous response ending;
  otherwise the connection is closed. Neither h11 nor uvicorn has one: a client that sent
  half a head held its connection, and a file descriptor, for as long as it liked.
* **Keep-alive timeout.** uvicorn's own, KEEP_ALIVE_TIMEOUT_SECONDS.
* **Connection cap.** At most `connections` are open (MAX_CONNECTIONS, or what the
  open-files limit allows). A connection accepted at the cap closes the one that has waited
  longest for a request head (an idle keep-alive or a slow header); when every connection is
  busy with a request, the new one is answered 503 and closed. asyncio accepts a small batch
  of sockets per loop iteration (the kernel's listen queue stays long), so sockets accepted
  but not yet counted stay within the files reserved for them: the process never runs out
  of descriptors, so it keeps accepting.
* **A quiet log.** Closed, timed-out and refused connections are counted and logged at most
  once a minute, and so are the event loop's accept errors (asyncio otherwise logs one, with
  a traceback, per attempt: hundreds of megabytes a minute once descriptors run out).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from infra.serving_limits import reserved_files
from infra.settings import Settings

log = logging.getLogger("product_status.server")

REPORT_INTERVAL = 60.0  # seconds between two log lines about the same kind of trouble
LISTEN_BACKLOG = 2048  # the kernel's queue of connections not yet accepted (uvicorn's default)
_BUSY_BODY = (b'{"type":"about:blank","title":"Service Unavailable","status":503,'
              b'"detail":"the server is at its connection limit; retry shortly"}')
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\n"
                 b"content-type: application/problem+json\r\n"
                 b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s"
                 % (len(_BUSY_BODY), _BUSY_BODY))


@dataclass(frozen=True)
class ServerLimits:
    connections: int
    header_timeout: int  # seconds
    keep_alive_timeout: int  # seconds
    accept_batch: int  # sockets asyncio accepts per loop iteration

    @classmethod
    def from_settings(cls, settings: Settings, open_files: int) -> ServerLimits:
        """Raises SettingsError when the open-files limit cannot honour the settings."""
        settings.check_serving_limits(open_files)
        # asyncio accepts up to `backlog` sockets before their protocols count them, and
        # closes the ones it turns away a loop iteration later: a few batches must fit in
        # the reserved files beside the process's own.
        batch = max(16, min(LISTEN_BACKLOG, reserved_files(open_files) // 8))
        return cls(connections=settings.connection_limit(open_files),
                   header_timeout=settings.header_timeout_seconds,
                   keep_alive_timeout=settings.keep_alive_timeout_seconds,
                   accept_batch=batch)


class Throttled:
    """Something worth a log line a minute, not one per occurrence."""

    def __init__(self, message: str, interval: float = REPORT_INTERVAL) -> None:
        self.message = message  # one %d: how many occurred since the last line
        self.interval = interval
        self.count = 0  # every occurrence, for tests and figures
        self._unreported = 0
        self._next_report = 0.0

    def note(self) -> None:
        self.count += 1
        self._unreported += 1
        now = time.monotonic()
        if now >= self._next_report:
            log.warning(self.message, self._unreported)
            self._unreported = 0
            self._next_report = now + self.interval


class ConnectionGuard:
    """The open connections of one server, and which of them wait for a request head,
    the longest-waiting first. Used on the event loop only."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.open = 0
        self.waiting: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        cap = limits.connections
        self.closed_idle = Throttled(
            f"at the connection limit ({cap} connections, MAX_CONNECTIONS): closed %d "
            "connection(s) waiting for a request head to take new ones")
        self.timed_out = Throttled(
            "closed %d connection(s) that sent no complete request head within "
            f"{limits.header_timeout} s (HEADER_TIMEOUT_SECONDS)")
        self.refused = Throttled(
            f"at the connection limit ({cap} connections, MAX_CONNECTIONS) with every one "
            "busy: answered 503 to %d new connection(s)")

    def admit(self) -> bool:
        """Counts a connection just accepted, making room for it if the server is at its
        cap; False when there is none (every connection is busy with a request)."""
        self.open += 1
        while self.open > self.limits.connections:
            if not self.waiting:
                return False
            oldest = next(iter(self.waiting))
            self.closed_idle.note()
            oldest.close_waiting()
        return True

    def release(self) -> None:
        self.open -= 1


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a place under the guard's cap."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer: asyncio.TimerHandle | None = None
        self._counted = True
        self._admitted = self.guard.admit()  # asyncio creates protocols as it accepts

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._admitted:
            self.guard.refused.note()
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._release()
        super().connection_lost(exc)

    def close_waiting(self) -> None:
        """Closes this connection, which has no request in progress."""
        self._stop_waiting()
        self._release()
        self.transport.close()

    def _await_head(self) -> None:
        self._stop_waiting()
        self.guard.waiting[self] = None
        self._head_timer = self.loop.call_later(self.guard.limits.header_timeout,
                                                self._head_timed_out)

    def _stop_waiting(self) -> None:
        self.guard.waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.guard.timed_out.note()
            self.close_waiting()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self.guard.release()


def guarded_protocol(limits: ServerLimits) -> type[GuardedH11Protocol]:
    """A protocol class with its own guard: one per server."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"guard": ConnectionGuard(limits)})


class LoopErrors:
    """The event loop's exception handler: accept failures (out of descriptors or memory)
    are counted and logged once a minute; everything else as asyncio would."""

    def __init__(self) -> None:
        self.accept_failed = Throttled(
            "cannot accept connections: out of file descriptors or memory (%d failed "
            "accept(s) since the last report); is MAX_CONNECTIONS too high for ulimit -n?")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            self.accept_failed.note()
            return
        loop.default_exception_handler(context)


class Server(uvicorn.Server):
    """uvicorn's server with the quiet loop exception handler installed, and a long
    listen queue beside a short accept batch."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.loop_errors = LoopErrors()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(self.loop_errors)
        await super().startup(sockets)
        # asyncio takes one number for both the listen queue and the sockets it accepts
        # per loop iteration (`config.backlog`, kept small); lengthen the queue again, so
        # a burst of connections waits in the kernel rather than being dropped.
        for server in getattr(self, "servers", []):
            for listener in server.sockets:
                with socket.socket(fileno=os.dup(listener.fileno())) as same:
                    same.listen(LISTEN_BACKLOG)


def server_config(app: Any, settings: Settings, limits: ServerLimits) -> Config:
    # Logging as configured (infra/logs.py, LOG_FORMAT): uvicorn installs no handlers of its
    # own, and the app writes one access line per request (with its request id).
    return Config(app, host=settings.host, port=settings.port, log_level="info",
                  timeout_graceful_shutdown=5, http=guarded_protocol(limits), ws="none",
                  backlog=limits.accept_batch, timeout_keep_alive=limits.keep_alive_timeout,
                  log_config=None, access_log=False)
