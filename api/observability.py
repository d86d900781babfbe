"""Every request: an X-Request-Id (the client's when it sent a sane one), counted and timed
by route template for /metrics, one access log line carrying the id, and the live event
streams counted while open. An error no handler answered is answered here, as a problem
with the request's id, and logged with it."""

from __future__ import annotations

import logging
import re
import time
import uuid
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


def request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if _SANE.match(text):
                return text
            break
    return uuid.uuid4().hex


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
        labels = {"route": route_template(scope), "method": method,
                  "status": str(status), "caller": caller}
        metrics = instruments()
        metrics.requests.labels(**labels).inc()
        metrics.latency.labels(**labels).observe(seconds)
        access_log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status,
                        seconds * 1000, extra={
                            "method": scope["method"], "path": scope["path"],
                            "route": labels["route"], "status": status,
                            "duration_ms": round(seconds * 1000, 3),
                            "client": (scope.get("client") or ("", 0))[0]})
