"""The HTML pages: the public status page, one public page per incident, and the operators'
dashboard (templates in api/templates, rendering in api/pages).

Public pages are rendered from the read tables for `Audience.PUBLIC`, so nothing internal
can reach them. The dashboard is a set of small shells (no incident data in them) plus HTML
fragments that need a reader token in the `Authorization` header: the browser keeps the token
in sessionStorage and `dashboard.js` fetches the fragments with it, posts the forms to the JSON
API, and refreshes from the event stream. No cookie carries authority, so there is nothing to
forge across sites (see docs/pages.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from api.answer_cache import Rendered, minute_end, public_answer
from api.auth import Reader
from api.consistency import Consistent
from api.deps import Clock, Queries, Reports, ServiceReads, is_incident_id
from api.pages.filters import DashboardFilters, incident_table
from api.pages.reports import ReportFormFilters, report_page
from api.pages.templating import HEADERS, not_found, public_page, render
from api.pages.views import (
    ACTIVE,
    CLOSED,
    HISTORY_PAGE,
    SCHEDULED,
    by_month,
    in_window,
    overall_state,
)
from domain.visibility import Audience
from projections.queries import IncidentQueries, ListFilters
from projections.service_queries import BadHistoryCursor

router = APIRouter(include_in_schema=False)
BAR_DAYS = 90
# A day's tooltip names at most this many incidents, then says how many more: a day of
# many incidents must not make every reader download all their titles.
TIP_INCIDENTS = 5

# ---------------------------------------------------------------------------------------
# Public pages: kept and shared per read-model position (api/answer_cache.py).


def _status_page(queries: IncidentQueries, reads: Any, now: datetime) -> Rendered:
    public = Audience.PUBLIC
    active = queries.newest(ListFilters(status=ACTIVE), audience=public, limit=50)
    closed = queries.newest(ListFilters(status=CLOSED), audience=public, limit=5)
    upcoming = queries.newest(ListFilters(status=SCHEDULED), audience=public, limit=50)
    updates = queries.updates_of([i["id"] for i in active], audience=public)
    summary = queries.summary(audience=public)
    bars = reads.bars(audience=public, days=BAR_DAYS, now=now)
    in_progress = [i for i in active if in_window(i)]
    return public_page("status.html", summary=summary, state=overall_state(summary),
                       active=[i for i in active if not in_window(i)], closed=closed,
                       updates=updates, bars=bars, in_progress=in_progress,
                       tip_incidents=TIP_INCIDENTS,
                       upcoming=sorted(upcoming, key=lambda i: (i["scheduled_start"], i["id"])))


@router.get("/history", response_class=HTMLResponse)
async def history_page(request: Request, reads: ServiceReads, _: Consistent,
                       cursor: Annotated[str | None, Query(max_length=400)] = None
                       ) -> Response:
    """Past public incidents by month, newest first, a page at a time."""
    return await public_answer(request, ("history", cursor), lambda: _history(reads, cursor))


def _history(reads: Any, cursor: str | None) -> Rendered:
    try:
        page = reads.history(audience=Audience.PUBLIC, limit=HISTORY_PAGE, cursor=cursor)
    except BadHistoryCursor:
        return public_page("history.html", status_code=400, months=[], next_cursor=None,
                           first=False, bad_cursor=True)
    return public_page("history.html", months=by_month(page.items),
                       next_cursor=page.next_cursor, first=cursor is None, bad_cursor=False)


def _incident_page(queries: IncidentQueries, incident_id: str) -> Rendered:
    incident = (queries.get_incident(incident_id, audience=Audience.PUBLIC)
                if is_incident_id(incident_id) else None)
    if incident is None:
        return public_page("not_found.html", status_code=404, dashboard=False,
                           what="There is no public incident at this address.")
    return public_page("incident.html", incident=incident)


@router.get("/", response_class=HTMLResponse)
async def status_page(request: Request, queries: Queries, reads: ServiceReads, clock: Clock,
                      _: Consistent) -> Response:
    # The day bars count minutes up to now: the page is kept per minute.
    minute = minute_end(clock())
    return await public_answer(request, ("page", minute),
                               lambda: _status_page(queries, reads, minute), until=minute)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page(request: Request, incident_id: str, queries: Queries,
                        _: Consistent) -> Response:
    """One public incident; unknown, private and deleted incidents are all the same 404."""
    return await public_answer(request, ("page", incident_id),
                               lambda: _incident_page(queries, incident_id))


# ---------------------------------------------------------------------------------------
# Dashboard shells: no incident data, so they need no token; dashboard.js fills them.


@router.get("/dashboard/sign-in", response_class=HTMLResponse)
def sign_in_page() -> HTMLResponse:
    return render("dashboard/sign_in.html")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(form: DashboardFilters) -> HTMLResponse:
    """The filter form echoes the query string; the table is a fragment."""
    return render("dashboard/overview.html", filters=form.filters)


@router.get("/dashboard/new", response_class=HTMLResponse)
def new_incident_page() -> HTMLResponse:
    return render("dashboard/new.html")


@router.get("/dashboard/incidents/{incident_id}", response_class=HTMLResponse)
def dashboard_incident_page(incident_id: str) -> HTMLResponse:
    if not is_incident_id(incident_id):
        return not_found("There is no incident at this address.", dashboard=True)
    return render("dashboard/incident.html", incident_id=incident_id)


@router.get("/dashboard/reports", response_class=HTMLResponse)
def reports_page(form: ReportFormFilters) -> HTMLResponse:
    """The filter form echoes the query string; the figures and charts are a fragment."""
    return render("dashboard/reports.html", filters=form.filters)


@router.get("/dashboard/session")
async def session(caller: Reader) -> JSONResponse:
    """Which role the bearer token has: the sign-in page checks a token with this."""
    return JSONResponse({"role": caller.role}, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------------------------
# Dashboard fragments: need a reader token; forms only for writers.


@router.get("/dashboard/fragments/cards", response_class=HTMLResponse)
def cards_fragment(_caller: Reader, queries: Queries, _: Consistent) -> HTMLResponse:
    return render("dashboard/cards.html", summary=queries.summary(audience=Audience.READER))


@router.get("/dashboard/fragments/overview", response_class=HTMLResponse)
def overview_fragment(
    form: DashboardFilters, _caller: Reader, queries: Queries, _: Consistent
) -> HTMLResponse:
    """The incident table of the dashboard, for the filters of the query string."""
    return render("dashboard/table.html", **incident_table(queries, form))


@router.get("/dashboard/fragments/reports", response_class=HTMLResponse)
def reports_fragment(
    form: ReportFormFilters, _caller: Reader, reports: Reports, _: Consistent
) -> HTMLResponse:
    """The report's figures and charts, for the filters of the query string."""
    return render("dashboard/reports_view.html", **report_page(reports, form))


@router.get("/dashboard/fragments/incidents/{incident_id}", response_class=HTMLResponse)
def incident_fragment(
    incident_id: str, _caller: Reader, queries: Queries, _: Consistent
) -> HTMLResponse:
    incident = (queries.get_incident(incident_id, audience=Audience.READER)
                if is_incident_id(incident_id) else None)
    if incident is None:
        return render("dashboard/missing.html", status_code=404)
    return render("dashboard/incident_view.html", incident=incident)


@router.get("/dashboard/fragments/incidents/{incident_id}/forms", response_class=HTMLResponse)
def incident_forms_fragment(
    incident_id: str, caller: Reader, queries: Queries, _: Consistent
) -> HTMLResponse:
    incident = (queries.get_incident(incident_id, audience=Audience.READER)
                if is_incident_id(incident_id) else None)
    if incident is None or not caller.at_least("writer"):
        return HTMLResponse("", headers=HEADERS)
    return render("dashboard/forms.html", incident=incident)
