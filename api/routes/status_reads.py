"""The public status reads: each service's day bars (`/api/v1/services`) and the
Statuspage-compatible JSON under `/api/v2` (built in `api.statuspage`), all from the read
tables, as of the clock of the composition root."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api.answer_cache import Rendered, answer_for, json_body, minute_end, public_answer
from api.auth import AnyCaller
from api.consistency import Consistent
from api.deps import Clock, Queries, ServiceReads
from api.routes.queries import CONDITIONAL, JSON
from api.service_bars import services_body
from api.status_schemas import (
    ServiceList,
    V2Components,
    V2Incidents,
    V2Maintenances,
    V2Status,
    V2Summary,
)
from api.statuspage import StatusPage
from domain.visibility import Audience
from infra.bootstrap import Services
from projections.day_cells import LONGEST_WINDOW

router = APIRouter(tags=["status"])


@router.get("/api/v1/services", response_model=ServiceList, responses=CONDITIONAL)
async def services(
    request: Request, caller: AnyCaller, reads: ServiceReads, clock: Clock, _: Consistent,
    days: Annotated[int, Query(ge=1, le=LONGEST_WINDOW,
                               description="UTC days, the last one today")] = 90,
) -> Response:
    """Each service named by an incident the caller sees, by name: its state now, and per
    UTC day the worst severity active, the minutes affected and the incidents."""
    minute = minute_end(clock())

    def render(audience: Audience) -> Rendered:
        bars = reads.bars(audience=audience, days=days, now=minute)
        return Rendered(services_body(bars), JSON)

    # Kept per minute: the bars count minutes up to now.
    return await answer_for(request, caller.audience, ("services", days, minute), render,
                            until=minute)


async def status_page(request: Request, queries: Queries, reads: ServiceReads,
                      clock: Clock) -> StatusPage:
    built: Services = request.app.state.services
    minute = minute_end(clock())
    return StatusPage(queries, reads, built.settings.base_url, lambda: minute)


Page = Annotated[StatusPage, Depends(status_page)]
V2 = "/api/v2"


async def _v2(request: Request, page: StatusPage, name: str,
              render: Callable[[], dict[str, Any]]) -> Response:
    """One public v2 answer, kept per minute (what is upcoming or active depends on it)."""
    return await public_answer(request, ("v2", name, page.now),
                               lambda: Rendered(json_body(render()), JSON), until=page.now)


def _paged(page: StatusPage, **found: Callable[[], Any]) -> Callable[[], dict[str, Any]]:
    """The page's own fields beside what was asked for (the page asked last: its
    `updated_at` is the latest change of what the answer shows)."""

    def render() -> dict[str, Any]:
        parts = {name: read() for name, read in found.items()}
        return {"page": page.page(), **parts}

    return render


@router.get(f"{V2}/summary.json", response_model=V2Summary, responses=CONDITIONAL)
async def summary(request: Request, page: Page, _: Consistent) -> Response:
    """The indicator, every component, the unresolved incidents and the upcoming and
    active maintenances."""
    return await _v2(request, page, "summary", page.summary)


@router.get(f"{V2}/status.json", response_model=V2Status, responses=CONDITIONAL)
async def status(request: Request, page: Page, _: Consistent) -> Response:
    """The indicator (`none`, `minor`, `major`, `critical`) and its description."""
    return await _v2(request, page, "status", _paged(page, status=page.status))


@router.get(f"{V2}/components.json", response_model=V2Components, responses=CONDITIONAL)
async def components(request: Request, page: Page, _: Consistent) -> Response:
    """Every service, as a component."""
    return await _v2(request, page, "components", _paged(page, components=page.components))


@router.get(f"{V2}/incidents.json", response_model=V2Incidents, responses=CONDITIONAL)
async def incidents(request: Request, page: Page, _: Consistent) -> Response:
    """The 50 most recent incidents (maintenance aside)."""
    return await _v2(request, page, "incidents", _paged(page, incidents=page.incidents))


@router.get(f"{V2}/incidents/unresolved.json", response_model=V2Incidents,
            responses=CONDITIONAL)
async def unresolved(request: Request, page: Page, _: Consistent) -> Response:
    """Every incident not yet resolved (maintenance aside)."""
    return await _v2(request, page, "unresolved", _paged(
        page, incidents=lambda: page.incidents(unresolved=True)))


@router.get(f"{V2}/scheduled-maintenances.json", response_model=V2Maintenances,
            responses=CONDITIONAL)
async def maintenances(request: Request, page: Page, _: Consistent) -> Response:
    """The 50 most recent maintenances."""
    return await _v2(request, page, "maintenances", _paged(
        page, scheduled_maintenances=page.maintenances))


@router.get(f"{V2}/scheduled-maintenances/upcoming.json", response_model=V2Maintenances,
            responses=CONDITIONAL)
async def upcoming(request: Request, page: Page, _: Consistent) -> Response:
    """Maintenances not yet started."""
    return await _v2(request, page, "upcoming", _paged(
        page, scheduled_maintenances=lambda: page.maintenances(which="upcoming")))


@router.get(f"{V2}/scheduled-maintenances/active.json", response_model=V2Maintenances,
            responses=CONDITIONAL)
async def active(request: Request, page: Page, _: Consistent) -> Response:
    """Maintenances in progress."""
    return await _v2(request, page, "active", _paged(
        page, scheduled_maintenances=lambda: page.maintenances(which="active")))
