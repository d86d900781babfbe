"""The public status reads: each service's day bars (`/api/v1/services`) and the
Statuspage-compatible JSON under `/api/v2` (built in `api.statuspage`), all from the read
tables, as of the clock of the composition root."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.auth import AnyCaller
from api.consistency import Consistent
from api.deps import Clock, Queries, ServiceReads
from api.status_schemas import (
    ServiceList,
    V2Components,
    V2Incidents,
    V2Maintenances,
    V2Status,
    V2Summary,
)
from api.statuspage import StatusPage
from infra.bootstrap import Services

router = APIRouter(tags=["status"])


@router.get("/api/v1/services", response_model=ServiceList)
def services(
    caller: AnyCaller, reads: ServiceReads, clock: Clock, _: Consistent,
    days: Annotated[int, Query(ge=1, le=365, description="UTC days, the last one today")] = 90,
) -> JSONResponse:
    """Each service named by an incident the caller sees, by name: its state now, and per
    UTC day the worst severity active, the minutes affected and the incidents."""
    bars = reads.bars(audience=caller.audience, days=days, now=clock())
    return JSONResponse({"items": [bar.answer() for bar in bars]})


async def status_page(request: Request, queries: Queries, reads: ServiceReads,
                      clock: Clock) -> StatusPage:
    built: Services = request.app.state.services
    return StatusPage(queries, reads, built.settings.base_url, clock)


Page = Annotated[StatusPage, Depends(status_page)]
V2 = "/api/v2"


def _paged(page: StatusPage, **found: Any) -> JSONResponse:
    """The page's own fields beside what was asked for."""
    return _json({"page": page.page(), **found})


def _json(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body)


@router.get(f"{V2}/summary.json", response_model=V2Summary)
def summary(page: Page, _: Consistent) -> JSONResponse:
    """The indicator, every component, the unresolved incidents and the upcoming and
    active maintenances."""
    return _json(page.summary())


@router.get(f"{V2}/status.json", response_model=V2Status)
def status(page: Page, _: Consistent) -> JSONResponse:
    """The indicator (`none`, `minor`, `major`, `critical`) and its description."""
    return _paged(page, status=page.status())


@router.get(f"{V2}/components.json", response_model=V2Components)
def components(page: Page, _: Consistent) -> JSONResponse:
    """Every service, as a component."""
    return _paged(page, components=page.components())


@router.get(f"{V2}/incidents.json", response_model=V2Incidents)
def incidents(page: Page, _: Consistent) -> JSONResponse:
    """The 50 most recent incidents (maintenance aside)."""
    return _paged(page, incidents=page.incidents())


@router.get(f"{V2}/incidents/unresolved.json", response_model=V2Incidents)
def unresolved(page: Page, _: Consistent) -> JSONResponse:
    """Every incident not yet resolved (maintenance aside)."""
    return _paged(page, incidents=page.incidents(unresolved=True))


@router.get(f"{V2}/scheduled-maintenances.json", response_model=V2Maintenances)
def maintenances(page: Page, _: Consistent) -> JSONResponse:
    """The 50 most recent maintenances."""
    return _paged(page, scheduled_maintenances=page.maintenances())


@router.get(f"{V2}/scheduled-maintenances/upcoming.json", response_model=V2Maintenances)
def upcoming(page: Page, _: Consistent) -> JSONResponse:
    """Maintenances not yet started."""
    return _paged(page, scheduled_maintenances=page.maintenances(which="upcoming"))


@router.get(f"{V2}/scheduled-maintenances/active.json", response_model=V2Maintenances)
def active(page: Page, _: Consistent) -> JSONResponse:
    """Maintenances in progress."""
    return _paged(page, scheduled_maintenances=page.maintenances(which="active"))
