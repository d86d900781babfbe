"""Liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Log

router = APIRouter(tags=["health"])
log = logging.getLogger("product_status.api")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(event_log: Log) -> JSONResponse:
    """Ready when the event store answers."""
    try:
        position = event_log.last_position()
    except Exception as error:  # any failure of the store means not ready
        log.warning("event store not reachable: %s", error)
        return JSONResponse(
            {"status": "unavailable", "store": f"unreachable: {type(error).__name__}"},
            status_code=503,
        )
    return JSONResponse({"status": "ready", "store": "ok", "store_position": position})
