"""Reports: how fast incidents are acknowledged and resolved, from the `incident_lifecycle`
read model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import Reader
from api.consistency import Consistent
from api.deps import Reports
from api.filters import ReportQuery
from api.problems import PROBLEM, problem_schema
from api.schemas import LifecycleReport

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": problem_schema()}}}


@router.get("/lifecycle", response_model=LifecycleReport, responses={
    401: _problem("no valid token"), 403: _problem("the token's role is too small"),
    422: _problem("a filter is not valid (each bad one is named)")})
def lifecycle_report(_caller: Reader, reports: Reports, _: Consistent,
                     filters: ReportQuery) -> JSONResponse:
    """Median and 90th percentile times to acknowledge and to resolve, the share of
    responses within their target, and the median time in each active status: overall and
    per severity, of the incidents that started in [`since`, `until`) and affect any of
    the `service`s, of any of the `severity`s given."""
    return JSONResponse(reports.lifecycle(filters.report_filters()),
                        headers={"Cache-Control": "no-store"})
