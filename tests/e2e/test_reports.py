"""The lifecycle report, from incidents declared and updated at known times (the clock is
moved by hand): every figure checked exactly, the filters, the same answer after
`product-status projections rebuild`, and bad filters answered 422 naming them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.bootstrap import Services, bootstrap
from tests.clock import Clock
from tests.conftest import READER, WRITER, make_settings, running, serving

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
CLI = str(Path(sys.executable).parent / "product-status")
REPORT = "/api/v1/reports/lifecycle"
NOTHING = {"count": 0, "resolved": 0, "mtta_seconds": None, "mttr_seconds": None,
           "response_target_met_ratio": None,
           "time_in_status_seconds": {"investigating": None, "identified": None,
                                      "monitoring": None}}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def services(database_url: str, clock: Clock) -> Iterator[Services]:
    yield from running(make_settings(database_url), clock=clock)


@pytest.fixture
def http(services: Services) -> Iterator[httpx.Client]:
    yield from serving(services)


def at(clock: Clock, minutes: float) -> None:
    clock.at(T0 + timedelta(minutes=minutes))


def declare(http: httpx.Client, **fields: Any) -> str:
    created = http.post("/api/v1/incidents", headers=WRITER, json=fields)
    assert created.status_code == 201, created.text
    incident_id: str = created.json()["id"]
    return incident_id


def update(http: httpx.Client, incident_id: str, **fields: Any) -> None:
    answer = http.post(f"/api/v1/incidents/{incident_id}/updates", headers=WRITER,
                       json={"message": "m", **fields})
    assert answer.status_code == 201, answer.text


def history(http: httpx.Client, clock: Clock) -> None:
    """Four incidents that count and a deleted one that does not; now is T0 + 7 h."""
    at(clock, 0)
    a = declare(http, title="A", severity="critical", affected_services=["api"])
    at(clock, 10)
    update(http, a, status="identified")  # acknowledged after 600 s: in time (15 min)
    at(clock, 30)
    update(http, a, status="monitoring")
    at(clock, 60)
    update(http, a, status="resolved")  # resolved after 3,600 s
    gone = declare(http, title="E", severity="low", affected_services=["api"])
    assert http.delete(f"/api/v1/incidents/{gone}", headers=WRITER).status_code == 204
    at(clock, 120)
    b = declare(http, title="B", severity="critical", affected_services=["db"])
    at(clock, 140)
    update(http, b, status="identified")  # 1,200 s: late
    at(clock, 240)
    update(http, b, status="resolved")  # 7,200 s
    at(clock, 300)
    declare(http, title="C", severity="high", affected_services=["api"])  # never answered
    at(clock, 360)
    d = declare(http, title="D", severity="medium", affected_services=["api"],
                is_public=False)
    at(clock, 390)
    update(http, d, status="identified", public_message="Found")  # 1,800 s: in time
    at(clock, 420)


def report(http: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = http.get(REPORT, params=params, headers=READER)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    return body


def test_the_figures_of_incidents_at_known_times(http: httpx.Client, clock: Clock,
                                                 database_url: str) -> None:
    history(http, clock)
    expected = {
        "overall": {
            "count": 4, "resolved": 2,
            # 600, 1,200 and 1,800 s; 3,600 and 7,200 s
            "mtta_seconds": {"median": 1200.0, "p90": 1680.0},
            "mttr_seconds": {"median": 5400.0, "p90": 6840.0},
            "response_target_met_ratio": 0.5,  # A and D in time; B late, C overdue
            # investigating 600, 1,200, 7,200 (C, so far) and 1,800; identified 1,200,
            # 6,000 and 1,800 (D, so far); monitoring 1,800
            "time_in_status_seconds": {"investigating": 1500.0, "identified": 1800.0,
                                       "monitoring": 1800.0},
        },
        "by_severity": {
            "critical": {
                "count": 2, "resolved": 2,
                "mtta_seconds": {"median": 900.0, "p90": 1140.0},
                "mttr_seconds": {"median": 5400.0, "p90": 6840.0},
                "response_target_met_ratio": 0.5,
                "time_in_status_seconds": {"investigating": 900.0, "identified": 3600.0,
                                           "monitoring": 1800.0},
            },
            "high": {
                "count": 1, "resolved": 0, "mtta_seconds": None, "mttr_seconds": None,
                "response_target_met_ratio": 0.0,
                "time_in_status_seconds": {"investigating": 7200.0, "identified": None,
                                           "monitoring": None},
            },
            "medium": {
                "count": 1, "resolved": 0,
                "mtta_seconds": {"median": 1800.0, "p90": 1800.0}, "mttr_seconds": None,
                "response_target_met_ratio": 1.0,
                "time_in_status_seconds": {"investigating": 1800.0, "identified": 1800.0,
                                           "monitoring": None},
            },
            "low": NOTHING,
            "minor": NOTHING,
        },
    }
    assert report(http) == expected

    # The same answer from read tables rebuilt from the store by the command line.
    rebuilt = subprocess.run([CLI, "projections", "rebuild"], capture_output=True, text=True,
                             env={**os.environ, "DATABASE_URL": database_url}, check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert report(http) == expected

    # An hour on, what is still open has counted an hour more: C investigating (10,800 s),
    # D identified (5,400 s).
    at(clock, 480)
    assert report(http)["overall"]["time_in_status_seconds"] == {
        "investigating": 1500.0, "identified": 5400.0, "monitoring": 1800.0}
    assert report(http, severity="high")["overall"]["time_in_status_seconds"][
        "investigating"] == 10800.0


def test_the_filters_choose_the_incidents(http: httpx.Client, clock: Clock) -> None:
    history(http, clock)
    five = (T0 + timedelta(hours=5)).isoformat()
    assert report(http, since=five)["overall"]["count"] == 2  # C and D
    early = report(http, until=five)["overall"]  # A and B
    assert (early["count"], early["resolved"]) == (2, 2)
    db = report(http, service="db")
    assert db["overall"]["mtta_seconds"] == {"median": 1200.0, "p90": 1200.0}
    assert db["by_severity"]["critical"]["count"] == 1
    assert db["by_severity"]["medium"] == NOTHING
    high = report(http, severity="high")
    assert high["overall"]["count"] == 1
    assert high["by_severity"]["critical"] == NOTHING
    both = http.get(REPORT, headers=READER, params=[
        ("service", "api"), ("severity", "critical"), ("severity", "medium")]).json()
    assert both["overall"]["count"] == 2  # A and D
    assert report(http, service="nothing")["overall"] == NOTHING


@pytest.mark.parametrize(("params", "named"), [
    ({"since": "yesterday"}, "since"),
    ({"until": "1714557600"}, "until"),
    ({"severity": "urgent"}, "severity"),
    ({"service": ""}, "service"),
    ({"since": "2026-03-02T10:00:00Z", "until": "2026-03-02T10:00:00Z"}, "until"),
])
def test_bad_filters_are_a_problem_naming_them(http: httpx.Client, params: dict[str, str],
                                               named: str) -> None:
    answer = http.get(REPORT, params=params, headers=READER)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert named in answer.text


def test_the_report_needs_a_reader_token(http: httpx.Client) -> None:
    anonymous = http.get(REPORT)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    wrong = http.get(REPORT, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


@pytest.fixture
def timed(database_url: str, clock: Clock) -> Iterator[tuple[Services, httpx.Client]]:
    """Auto-resolve after one hour; the read models catch up and the timers act when the
    test says so."""
    built = bootstrap(make_settings(database_url, INCIDENT_AUTO_RESOLVE_HOURS="1"),
                      clock=clock)
    for client in serving(built):
        yield built, client
    built.close()


def tick(services: Services) -> None:
    """The read models catch up, the timers act on what is due, the read models again."""
    services.projector.catch_up()
    services.timers.apply_due()
    services.projector.catch_up()


def test_the_services_own_updates_are_no_response_and_a_maintenance_has_no_target(
        timed: tuple[Services, httpx.Client], clock: Clock) -> None:
    services, http = timed
    at(clock, 0)
    silent = declare(http, title="A", severity="critical")  # target 15 min; never answered
    window = declare(http, title="M", severity="critical", incident_type="maintenance",
                     scheduled_start=(T0 + timedelta(minutes=30)).isoformat(),
                     scheduled_end=(T0 + timedelta(minutes=50)).isoformat())
    answered = declare(http, title="B", severity="critical")
    at(clock, 10)
    update(http, answered, status="identified")  # 600 s: in time
    at(clock, 20)
    update(http, answered, status="resolved")  # 1,200 s
    at(clock, 35)
    tick(services)  # the maintenance starts
    at(clock, 55)
    tick(services)  # ... and completes
    at(clock, 61)
    tick(services)  # the silent one is resolved by the service after an hour
    at(clock, 120)
    # Every status update of A and M was the service's own (the CloudEvents' actor).
    assert [(e.subject, json.loads(e.document)["actor"])
            for e in services.event_log.read(0, 100) if e.type.endswith("update_added")
            and e.subject != answered] == [(window, "system"), (window, "system"),
                                           (silent, "system")]
    one = http.get(f"/api/v1/incidents/{silent}", headers=READER).json()
    assert (one["status"], one["acknowledged_at"], one["response_breached"]) == (
        "resolved", None, True)
    one = http.get(f"/api/v1/incidents/{window}", headers=READER).json()
    assert (one["status"], one["acknowledged_at"], one["response_due_at"],
            one["response_breached"]) == ("resolved", None, None, False)
    listed = {i["id"]: i
              for i in http.get("/api/v1/incidents", headers=READER).json()["items"]}
    assert (listed[silent]["acknowledged_at"], listed[silent]["response_breached"]) == (
        None, True)
    assert (listed[window]["acknowledged_at"], listed[window]["response_due_at"],
            listed[window]["response_breached"]) == (None, None, False)
    overall = report(http)["overall"]
    assert (overall["count"], overall["resolved"]) == (3, 3)
    # Only B was answered (by someone); A's response never came: one in two met. The
    # maintenance counts in neither, nor in the time to resolve.
    assert overall["mtta_seconds"] == {"median": 600.0, "p90": 600.0}
    assert overall["response_target_met_ratio"] == 0.5
    assert overall["mttr_seconds"] == {"median": 2430.0, "p90": 3414.0}
