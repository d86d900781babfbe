"""Response targets and update reminders on incident answers, with a clock moved by hand:
the first status update is the response, due the severity's target after the declaration;
an active incident without a public update for the reminder interval is overdue. Readers
see the four fields in every incident answer; the public sees none of them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.clock import Clock
from tests.conftest import READER, WRITER, make_settings, running, serving

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FIELDS = {"acknowledged_at", "response_due_at", "response_breached", "update_overdue"}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def http(database_url: str, clock: Clock) -> Iterator[httpx.Client]:
    settings = make_settings(database_url, RESPONSE_TARGETS="critical=5m,high=30m",
                             UPDATE_REMINDER_MINUTES="10")
    for services in running(settings, clock=clock):
        yield from serving(services)


def z(minutes: float) -> str:
    """T0 plus `minutes`, as answers write it."""
    moment = T0.timestamp() + minutes * 60
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def facts(body: dict[str, Any]) -> tuple[Any, ...]:
    return (body["acknowledged_at"], body["response_due_at"], body["response_breached"],
            body["update_overdue"])


def read(http: httpx.Client, incident_id: str) -> tuple[Any, ...]:
    """The facts as the incident, the reader's list and the public see them (equal)."""
    one = http.get(f"/api/v1/incidents/{incident_id}", headers=READER).json()
    listed = http.get("/api/v1/incidents", headers=READER).json()["items"]
    assert facts(one) == facts(next(i for i in listed if i["id"] == incident_id))
    public = http.get(f"/api/v1/incidents/{incident_id}")
    assert not FIELDS & set(public.json())
    assert not FIELDS & set(http.get("/api/v1/incidents").json()["items"][0])
    return facts(one)


def test_a_response_is_due_by_the_severity_target_and_updates_by_the_reminder(
        http: httpx.Client, clock: Clock) -> None:
    created = http.post("/api/v1/incidents", headers=WRITER,
                        json={"title": "Checkout down", "severity": "critical"})
    assert created.status_code == 201, created.text
    incident = created.json()
    url = f"/api/v1/incidents/{incident['id']}"
    assert facts(incident) == (None, z(5), False, False)
    assert read(http, incident["id"]) == (None, z(5), False, False)
    clock.move(minutes=5)
    assert read(http, incident["id"]) == (None, z(5), False, False)  # due, not late
    clock.move(seconds=1)
    assert read(http, incident["id"]) == (None, z(5), True, False)
    clock.move(minutes=5)  # T0 + 10m 1s: nothing public for more than 10 minutes
    assert read(http, incident["id"]) == (None, z(5), True, True)

    # The response, late: an internal update acknowledges, but tells the public nothing.
    answer = http.post(f"{url}/updates", headers=WRITER,
                       json={"status": "identified", "message": "found it"})
    assert facts(answer.json()) == (z(10 + 1 / 60), z(5), True, True)
    clock.move(minutes=1)
    told = http.post(f"{url}/updates", headers=WRITER, json={"public_message": "Fixing"})
    assert facts(told.json()) == (z(10 + 1 / 60), z(5), True, False)
    clock.move(minutes=10)
    assert read(http, incident["id"])[3] is False  # exactly 10 minutes: not overdue yet
    clock.move(minutes=1)
    assert read(http, incident["id"])[3] is True
    resolved = http.post(f"{url}/updates", headers=WRITER,
                         json={"status": "resolved", "message": "done"})
    assert facts(resolved.json())[2:] == (True, False)  # resolved: no update is due
    clock.move(hours=5)
    assert read(http, incident["id"]) == (z(10 + 1 / 60), z(5), True, False)
    # As it stood at T0 + 7m: late, not yet acknowledged, not yet overdue.
    then = http.get(url, params={"as_of": z(7)}, headers=READER).json()
    assert facts(then) == (None, z(5), True, False)


def test_a_response_in_time_meets_the_target_and_severity_moves_the_due_time(
        http: httpx.Client, clock: Clock) -> None:
    incident = http.post("/api/v1/incidents", headers=WRITER, json={
        "title": "Search slow", "severity": "high", "public_message": "Looking"}).json()
    url = f"/api/v1/incidents/{incident['id']}"
    assert facts(incident) == (None, z(30), False, False)
    changed = http.put(url, headers=WRITER, json={"severity": "medium"})  # the default: 4 h
    assert facts(changed.json()) == (None, z(240), False, False)
    clock.move(minutes=29)
    http.post(f"{url}/updates", headers=WRITER, json={"public_message": "Still looking"})
    assert read(http, incident["id"]) == (z(29), z(240), False, False)
    clock.move(hours=10)
    assert read(http, incident["id"]) == (z(29), z(240), False, True)
