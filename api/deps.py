"""Typed dependencies shared by the routers."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Request

from api.problems import Problem
from commands.application import IncidentCommands
from domain.response import SYSTEM_KEY_PREFIX
from infra.bootstrap import Services
from infra.event_log import EventLog
from infra.relay import Relay
from infra.timers import Timers
from projections.queries import IncidentQueries
from projections.reports import LifecycleReports
from projections.service_queries import ServiceQueries

# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in
# the thread pool, a hop that costs more than the work.

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# The shape of every incident id this service hands out; anything else names nothing.
_INCIDENT_ID = re.compile(r"^incident-[A-Za-z0-9_-]{1,128}$")
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')


def _services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def commands(request: Request) -> IncidentCommands:
    return _services(request).commands


async def queries(request: Request) -> IncidentQueries:
    return _services(request).queries


async def reports(request: Request) -> LifecycleReports:
    return _services(request).reports


async def service_queries(request: Request) -> ServiceQueries:
    return _services(request).service_queries


async def clock(request: Request) -> Callable[[], datetime]:
    return _services(request).clock


async def relay(request: Request) -> Relay | None:
    return _services(request).relay


async def timers(request: Request) -> Timers:
    return _services(request).timers


async def event_log(request: Request) -> EventLog:
    return _services(request).event_log


def is_incident_id(text: str) -> bool:
    """Whether `text` has the shape of the ids this service hands out."""
    return _INCIDENT_ID.match(text) is not None


async def incident_id(incident_id: str) -> str:
    """The `{incident_id}` of the path; an id of a shape never handed out is a 404."""
    if not is_incident_id(incident_id):
        raise Problem(404, f"no incident with id {incident_id!r}")
    return incident_id


async def expected_version(if_match: Annotated[str | None, Header()] = None) -> int | None:
    """The version named by If-Match; `*` (any) and absence mean no expectation. A tag
    that is not one of ours can never match, so it is answered 412."""
    if if_match is None or if_match.strip() == "*":
        return None
    first = if_match.split(",")[0]
    found = _ETAG.match(first)
    if found is None:
        raise Problem(412, f"If-Match {if_match!r} does not match the incident's ETag")
    return int(found.group(1))


async def idempotency_key(idempotency_key: Annotated[str | None, Header()] = None) -> str | None:
    if idempotency_key is None:
        return None
    if not _KEY.match(idempotency_key):
        raise Problem(400, "Idempotency-Key must be 1-255 visible ASCII characters")
    if idempotency_key.startswith(SYSTEM_KEY_PREFIX):
        raise Problem(400, f"Idempotency-Keys starting {SYSTEM_KEY_PREFIX!r} are the "
                      "service's own")
    return idempotency_key


IncidentId = Annotated[str, Depends(incident_id)]
Commands = Annotated[IncidentCommands, Depends(commands)]
Log = Annotated[EventLog, Depends(event_log)]
Queries = Annotated[IncidentQueries, Depends(queries)]
Reports = Annotated[LifecycleReports, Depends(reports)]
ServiceReads = Annotated[ServiceQueries, Depends(service_queries)]
Clock = Annotated[Callable[[], datetime], Depends(clock)]
NatsRelay = Annotated[Relay | None, Depends(relay)]
DeadlineTimers = Annotated[Timers, Depends(timers)]
ExpectedVersion = Annotated[int | None, Depends(expected_version)]
IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
