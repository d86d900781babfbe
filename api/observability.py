"""Every request: an X-Request-Id (the client's when it sent a sane one), counted and timed
by route template for /metrics, one access log line carrying the id, and the live event
streams counted while open. An error no handler answered is answered here, as a problem
with the request's id, and logged with it."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from functools import cache
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response
from infra.logs import REQUEST_ID
from infra.metrics import instruments

HEADER = "X-Request-Id"
_SANE = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
_EVENT_STREAM = b"text/event-stream"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("product_status.access")
log = logging.getLogger("product_status.api")


@cache
def _id_prefix() -> str:
    """This process's half of the ids it makes: random, so processes never collide."""
    return os.urandom(8).hex()


_numbers = itertools.count(1)
# `serve --workers` forks: each worker makes its own prefix.
os.register_at_fork(after_in_child=_id_prefix.cache_clear)


def request_id(scope: Scope) -> str:
    """The client's id when it sent a sane one; else 32 hex digits, unique to this request
    (the process's random prefix and a count: no system call per request)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if _SANE.match(text):
                return text
            break
    return f"{_id_prefix()}{next(_numbers) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


@cache
def _series(route: str, method: str, status: int, caller: str) -> tuple[Any, Any]:
    """The request counter's and the latency histogram's series for these labels (looked
    up once: a lookup by labels costs more than the count)."""
    labels = {"route": route, "method": method, "status": str(status), "caller": caller}
    metrics = instruments()
    return metrics.requests.labels(**labels), metrics.latency.labels(**labels)


def route_template(scope: Scope) -> str:
    """The matched route's path template: never the raw path (one series per incident)."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "unmatched"


class Observed:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        REQUEST_ID.set(rid)  # each request runs in a task (a context) of its own
        caller = "token" if any(n == b"authorization" for n, _ in scope["headers"]) else \
            "anonymous"
        started = time.perf_counter()
        answered: dict[str, Any] = {}
        metrics = instruments()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                answered["at"] = time.perf_counter()
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
                if any(n == b"content-type" and v.startswith(_EVENT_STREAM)
                       for n, v in headers):
                    answered["stream"] = True
                    metrics.open_streams.labels(caller=caller).inc()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if "status" in answered:
                raise
            log.exception("unhandled error")
            response = problem_response(
                500, "an unexpected error occurred; it has been logged", {HEADER: rid})
            await response(scope, receive, sending)
        finally:
            if answered.get("stream"):
                metrics.open_streams.labels(caller=caller).dec()
            self._record(scope, caller, answered, started)

    def _record(self, scope: Scope, caller: str, answered: dict[str, Any],
                started: float) -> None:
        status = int(answered.get("status", 500))
        seconds = answered.get("at", time.perf_counter()) - started
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = route_template(scope)
        requests, latency = _series(route, method, status, caller)
        requests.inc()
        latency.observe(seconds)
        access_log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status,
                        seconds * 1000, extra={
                            "method": scope["method"], "path": scope["path"],
                            "route": route, "status": status,
                            "duration_ms": round(seconds * 1000, 3),
                            "client": (scope.get("client") or ("", 0))[0]})
