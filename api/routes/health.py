"""Liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Log, NatsRelay

router = APIRouter(tags=["health"])
log = logging.getLogger("product_status.api")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(event_log: Log, relay: NatsRelay) -> JSONResponse:
    """Ready when the event store answers. The NATS relay's state (broker, position,
    lag) is reported, never waited for: an outage of NATS delays publishing only."""
    try:
        position = event_log.last_position()
    except Exception as error:  # any failure of the store means not ready
        log.warning("event store not reachable: %s", error)
        return JSONResponse(
            {"status": "unavailable", "store": f"unreachable: {type(error).__name__}"},
            status_code=503,
        )
    body: dict[str, object] = {"status": "ready", "store": "ok", "store_position": position}
    if relay is not None:
        body["relay"] = relay.status().as_dict()
    return JSONResponse(body)
