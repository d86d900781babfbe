"""Liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import AnyCaller
from api.deps import DeadlineTimers, Log, NatsRelay
from domain.visibility import Audience

router = APIRouter(tags=["health"])
log = logging.getLogger("product_status.api")

# What anyone may read of the relay's status. Store positions (the relay's, the head)
# count every write, private ones too: they are for reader tokens.
PUBLIC_RELAY_FIELDS = ("state", "broker", "lag", "last_error")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(caller: AnyCaller, event_log: Log, relay: NatsRelay,
           timers: DeadlineTimers) -> JSONResponse:
    """Ready when the event store answers. The NATS relay's state (broker, lag) is
    reported, never waited for: an outage of NATS delays publishing only. A reader token
    also sees the store's head (`store_position`) and the relay's position. `timers` says
    whether this process acts on deadlines (`active`), another does (`standby`), or none
    runs here (`off`)."""
    try:
        position = event_log.last_position()
    except Exception as error:  # any failure of the store means not ready
        log.warning("event store not reachable: %s", error)
        return JSONResponse(
            {"status": "unavailable", "store": f"unreachable: {type(error).__name__}"},
            status_code=503,
        )
    body: dict[str, object] = {"status": "ready", "store": "ok"}
    reader = caller.audience is Audience.READER
    if reader:
        body["store_position"] = position
    timing = timers.state()
    body["timers"] = timing if reader else {"state": timing["state"]}
    if relay is not None:
        status = relay.status().as_dict()
        body["relay"] = status if reader else {
            name: status[name] for name in PUBLIC_RELAY_FIELDS}
    return JSONResponse(body)
