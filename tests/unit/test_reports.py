"""The report's arithmetic, the Reports page's form and its charts, without I/O."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from starlette.datastructures import QueryParams

from api.pages.charts import Series, bars, line_chart, stacked_bars
from api.pages.reports import duration, read_report_form
from domain.response import ResponsePolicy
from projections.reports import Lived, figures, quantile, spread, week_of, weekly

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # a Wednesday
SVG = "{http://www.w3.org/2000/svg}"


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    assert spread([]) is None
    assert spread([7.0]) == {"median": 7.0, "p90": 7.0}
    assert spread([600, 1800, 1200]) == {"median": 1200.0, "p90": 1680.0}
    assert quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9.1
    assert quantile([1, 2, 3, 4], 0.5) == 2.5


def _lived(start: datetime, severity: str = "high", ack: float | None = None,
           resolved: float | None = None, incident_type: str = "outage") -> Lived:
    return Lived(severity=severity, incident_type=incident_type, start_time=start,
                 declared_at=start,
                 acknowledged_at=None if ack is None else start + timedelta(seconds=ack),
                 resolved_at=None if resolved is None else start + timedelta(seconds=resolved),
                 status="resolved" if resolved is not None else "investigating",
                 in_status={})


def test_weeks_start_on_monday_in_utc_and_hold_their_incidents() -> None:
    assert week_of(T0) == datetime(2026, 3, 2, tzinfo=UTC)
    incidents = [_lived(T0 - timedelta(days=7), "critical", 60, 600),
                 _lived(T0 - timedelta(days=7, hours=1), "critical", 120, 1200),
                 _lived(T0, "low", 30)]
    weeks = weekly(incidents, T0 - timedelta(days=14), T0)
    assert [w.start.day for w in weeks] == [16, 23, 2]
    assert [w.by_severity["critical"] for w in weeks] == [0, 2, 0]
    assert [(w.mtta_median, w.mttr_median) for w in weeks] == [
        (None, None), (90.0, 900.0), (30.0, None)]


def test_a_response_not_yet_due_is_not_judged() -> None:
    policy = ResponsePolicy()
    assert policy.met(T0, "high", None, T0 + timedelta(minutes=59)) is None
    assert policy.met(T0, "high", None, T0 + timedelta(minutes=61)) is False
    assert policy.met(T0, "high", T0 + timedelta(minutes=60), T0 + timedelta(days=1)) is True


def test_the_form_leaves_out_and_names_what_the_report_would_refuse() -> None:
    form = read_report_form(QueryParams(
        "since=2026-03-01&until=2026-02-01&service=api,+db&severity=high&severity=urgent"))
    assert form.filters.since == datetime(2026, 3, 1, tzinfo=UTC)
    assert form.filters.until is None
    assert form.filters.service == ["api", "db"]
    assert form.filters.severity == []
    assert any(e.startswith("severity") for e in form.errors)
    assert any(e.startswith("until") and "after since" in e for e in form.errors)
    assert read_report_form(QueryParams("since=&until=&service=")).errors == ()


def test_charts_are_well_formed_svg_images() -> None:
    labels = ["Mar 2", "Mar 9", "Mar 16"]
    per_week = stacked_bars("Per week", labels, [Series("critical", "chart-critical",
                                                        [1, 0, 2]),
                                                 Series("low", "chart-low", [0, 0, 3])])
    root = ET.fromstring(str(per_week))
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None
    assert [r.findtext(f"{SVG}title") for r in root.iter(f"{SVG}rect")] == [
        "Mar 2: 1 critical", "Mar 16: 2 critical", "Mar 16: 3 low"]
    trend = ET.fromstring(str(line_chart("Trend <&>", labels, [
        Series("mtta", "chart-mtta", [60.0, None, 180.0])])))
    assert trend.findtext(f"{SVG}title") == "Trend <&>"  # escaped, and read back
    assert len(list(trend.iter(f"{SVG}circle"))) == 2
    assert not list(trend.iter(f"{SVG}polyline"))  # no line across the gap
    status = ET.fromstring(str(bars("Status", [("Investigating", 9000.0),
                                               ("Monitoring", None)])))
    assert [r.findtext(f"{SVG}title") for r in status.iter(f"{SVG}rect")] == [
        "Investigating: 2.5 hours"]


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (None, 45, 1200, 9000, 3 * 86_400)] == [
        "none", "45 s", "20 min", "2.5 h", "3 days"]


def test_a_maintenance_counts_but_has_no_response_nor_repair_times() -> None:
    maintenance = _lived(T0, "high", ack=60, resolved=7200, incident_type="maintenance")
    outage = _lived(T0, "high", ack=600, resolved=1200)
    report = figures([maintenance, outage], ResponsePolicy(), T0 + timedelta(days=1))
    assert (report["count"], report["resolved"]) == (2, 2)
    assert report["mtta_seconds"] == {"median": 600.0, "p90": 600.0}
    assert report["mttr_seconds"] == {"median": 1200.0, "p90": 1200.0}
    assert report["response_target_met_ratio"] == 1.0
    late = _lived(T0, "high", incident_type="maintenance")  # never answered, nor judged
    assert figures([late], ResponsePolicy(), T0 + timedelta(days=1))[
        "response_target_met_ratio"] is None
