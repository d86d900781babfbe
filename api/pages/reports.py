"""The dashboard's Reports page: its filter form (read into the report API's own filter
model, api/filters.LifecycleFilters, so both accept the same filters) and the charts of
the figures, drawn by api/pages/charts.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from api.filters import LifecycleFilters
from api.pages.charts import Series, bars, line_chart, stacked_bars
from domain.values import Severity
from projections.reports import WORKING, LifecycleReports

_DATE = "%Y-%m-%d"


@dataclass(frozen=True)
class ReportForm:
    filters: LifecycleFilters
    errors: tuple[str, ...] = ()


def _values(params: QueryParams) -> dict[str, Any]:
    """The form's fields as the model's: dates are UTC midnights, services
    comma-separated, empty fields left out."""
    values: dict[str, Any] = {
        "severity": [v for v in dict.fromkeys(params.getlist("severity")) if v],
        "service": list(dict.fromkeys(part.strip() for value in params.getlist("service")
                                      for part in value.split(",") if part.strip())),
    }
    for name in ("since", "until"):
        text = (params.get(name) or "").strip()
        if text:
            values[name] = text + "T00:00:00Z" if len(text) == 10 else text
    return {name: value for name, value in values.items() if value != []}


def read_report_form(params: QueryParams) -> ReportForm:
    """The filters of the query string; a wrong field is left out and named."""
    values = _values(params)
    errors: list[str] = []
    while values:  # each round leaves out at least one field
        try:
            return ReportForm(LifecycleFilters.model_validate(values), tuple(errors))
        except ValidationError as invalid:
            for problem in invalid.errors():
                # A rule across fields (until after since) has no place: `until` goes.
                name = str(problem["loc"][0]) if problem["loc"] else "until"
                message = str(problem["msg"]).removeprefix("Value error, ")
                errors.append(f"{name} {params.get(name)!r}: {message}")
                if values.pop(name, None) is None:
                    values.clear()
    return ReportForm(LifecycleFilters(), tuple(errors))


async def report_form(request: Request) -> ReportForm:
    return read_report_form(request.query_params)


ReportFormFilters = Annotated[ReportForm, Depends(report_form)]


def form_date(moment: datetime | None) -> str:
    return moment.strftime(_DATE) if moment else ""


def report_page(reports: LifecycleReports, form: ReportForm) -> dict[str, Any]:
    """What the Reports fragment shows: the figures, the weeks, and the three charts."""
    applied, report, weeks = reports.overview(form.filters.report_filters())
    labels = [f"{w.start:%b} {w.start.day}" for w in weeks]
    severities = [s.value for s in Severity]
    per_week = stacked_bars("Incidents per week by severity", labels, [
        Series(s, f"chart-{s}", [w.by_severity[s] for w in weeks]) for s in severities])
    trend = line_chart("Median time to acknowledge and to resolve, per week", labels, [
        Series("time to acknowledge", "chart-mtta", [w.mtta_median for w in weeks]),
        Series("time to resolve", "chart-mttr", [w.mttr_median for w in weeks])])
    in_status = report["overall"]["time_in_status_seconds"]
    statuses = bars("Median time in each status", [
        (status.value.replace("_", " ").capitalize(), in_status[status.value])
        for status in WORKING])
    return {"applied": applied, "report": report, "weeks": weeks, "labels": labels,
            "severities": severities, "errors": form.errors,
            "charts": {"per_week": per_week, "trend": trend, "statuses": statuses}}


def duration(seconds: float | None) -> str:
    """A duration as people say it: `45 s`, `20 min`, `1.5 h`, `2.3 days`; `none` for none."""
    if seconds is None:
        return "none"
    for limit, size, unit in ((120, 1, "s"), (7200, 60, "min"), (172_800, 3600, "h")):
        if seconds < limit:
            return f"{seconds / size:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{seconds / 86_400:.1f}".rstrip("0").rstrip(".") + " days"


def ratio(value: float | None) -> str:
    return "none" if value is None else f"{value:.0%}"
