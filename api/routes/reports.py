"""Reports: how fast incidents are acknowledged and resolved, from the `incident_lifecycle`
read model."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import Reader
from api.consistency import Consistent
from api.deps import Reports
from api.filters import ReportQuery
from api.schemas import LifecycleReport

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


# Its error answers (401, 422, ...) are documented with every route's (`api/answers.py`).
@router.get("/lifecycle", response_model=LifecycleReport)
def lifecycle_report(_caller: Reader, reports: Reports, _: Consistent,
                     filters: ReportQuery) -> JSONResponse:
    """Median and 90th percentile times to acknowledge and to resolve, the share of
    responses within their target, and the median time in each active status: overall and
    per severity, of the incidents that started in [`since`, `until`) and affect any of
    the `service`s, of any of the `severity`s given."""
    return JSONResponse(reports.lifecycle(filters.report_filters()),
                        headers={"Cache-Control": "no-store"})
