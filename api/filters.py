"""The incident list's filters, declared once: `GET /api/v1/incidents` takes them as query
parameters (a 422 names a bad one), and the dashboard's table validates its filter form
against the same model (api/pages/filters.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.schemas import Moment
from domain.values import IncidentType, Severity, Status
from projections.queries import ListFilters
from projections.reports import ReportFilters

DEFAULT_LIMIT = 20
FilterName = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class IncidentFilters(BaseModel):
    """Filters repeat (`status=investigating&status=identified`: any of them); `since` and
    `until` bound the start time; `cursor` is a list answer's `next_cursor`."""

    status: list[Status] = []
    severity: list[Severity] = []
    incident_type: list[IncidentType] = []
    service: list[FilterName] = []
    region: list[FilterName] = []
    q: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    since: Moment | None = None
    until: Moment | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = DEFAULT_LIMIT
    cursor: Annotated[str | None, Field(max_length=200)] = None

    def list_filters(self) -> ListFilters:
        """What the read side filters on (the page size and the cursor aside)."""
        return ListFilters(
            status=tuple(s.value for s in self.status),
            severity=tuple(s.value for s in self.severity),
            incident_type=tuple(t.value for t in self.incident_type),
            service=tuple(self.service), region=tuple(self.region),
            q=self.q, since=self.since, until=self.until,
        )


ListQuery = Annotated[IncidentFilters, Query()]


class LifecycleFilters(BaseModel):
    """Which incidents a report covers: `since` and `until` bound the start time (as the
    list's do); `service` and `severity` repeat (any of them)."""

    since: Moment | None = None
    until: Moment | None = None
    service: list[FilterName] = []
    severity: list[Severity] = []

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleFilters:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self

    def report_filters(self) -> ReportFilters:
        return ReportFilters(since=self.since, until=self.until,
                             service=tuple(dict.fromkeys(self.service)),
                             severity=tuple(dict.fromkeys(s.value for s in self.severity)))


ReportQuery = Annotated[LifecycleFilters, Query()]
