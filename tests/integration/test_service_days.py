"""Each service's day bars (`GET /api/v1/services`) from incidents at known times, on SQLite
and PostgreSQL: an incident spanning midnight counts on both days, minutes affected are
exact, overlaps count once, reopening counts again, a change of severity counts from when
it was made, maintenance is listed but costs no uptime, private and deleted incidents appear
nowhere without a token; a rebuild of the read model gives the same answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from commands.application import NewIncident, NewUpdate
from domain.values import IncidentType, Severity, Status
from domain.visibility import Audience
from infra.bootstrap import Services, bootstrap
from infra.rebuild import rebuild
from infra.settings import Settings
from projections.service_queries import BadHistoryCursor
from tests.clock import Clock
from tests.conftest import READER, LiveServer


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class World:
    services: Services
    clock: Clock
    ids: dict[str, str]
    http: httpx.Client


def declare(world: World, name: str, when: str, **details: Any) -> str:
    world.clock.now = at(when)
    written = world.services.commands.create(NewIncident(
        title=name, start_time=at(when), given=frozenset({"title"}), **details))
    world.ids[name] = written.incident_id
    return written.incident_id


def update(world: World, name: str, when: str, status: Status) -> None:
    world.clock.now = at(when)
    world.services.commands.add_update(world.ids[name], NewUpdate(status=status))


def change(world: World, name: str, when: str, **changes: Any) -> None:
    world.clock.now = at(when)
    world.services.commands.change_details(world.ids[name], changes)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    clock = Clock(at("2026-03-01T00:00:00"))
    services = bootstrap(settings, clock=clock)
    server = LiveServer(services)
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        built = World(services, clock, {}, http)
        given(built)
        clock.now = at("2026-03-10T12:00:00")
        services.projector.catch_up()
        yield built
    server.stop()
    services.close()


def given(w: World) -> None:
    # Across midnight: 60 minutes on the 8th, 90 on the 9th.
    declare(w, "midnight", "2026-03-08T23:00:00", severity=Severity.HIGH,
            affected_services=("api",))
    update(w, "midnight", "2026-03-09T01:30:00", Status.RESOLVED)
    # Overlaps the first (01:00-01:30 counted once); critical from 02:00.
    declare(w, "escalated", "2026-03-09T01:00:00", severity=Severity.MEDIUM,
            affected_services=("api", "web"))
    change(w, "escalated", "2026-03-09T02:00:00", severity=Severity.CRITICAL)
    update(w, "escalated", "2026-03-09T03:00:00", Status.RESOLVED)
    # Planned: listed on its day, no severity, no minutes.
    declare(w, "maintenance", "2026-03-07T10:00:00", severity=Severity.HIGH,
            incident_type=IncidentType.MAINTENANCE, affected_services=("api",))
    update(w, "maintenance", "2026-03-07T11:00:00", Status.RESOLVED)
    # Reopened: 10:00-10:30 and 11:00-11:15, 45 minutes.
    declare(w, "reopened", "2026-03-09T10:00:00", severity=Severity.LOW,
            affected_services=("cdn",))
    update(w, "reopened", "2026-03-09T10:30:00", Status.RESOLVED)
    update(w, "reopened", "2026-03-09T11:00:00", Status.INVESTIGATING)
    update(w, "reopened", "2026-03-09T11:15:00", Status.RESOLVED)
    # Still active at noon of the last day, since 11:00.
    declare(w, "ongoing", "2026-03-10T11:00:00", severity=Severity.MINOR,
            affected_services=("web",))
    # Private and deleted: only readers see the first, nobody the second.
    declare(w, "private", "2026-03-10T00:00:00", severity=Severity.CRITICAL,
            affected_services=("api", "secret-service"), is_public=False)
    declare(w, "deleted", "2026-03-09T00:00:00", severity=Severity.CRITICAL,
            affected_services=("api", "deleted-service"))
    w.clock.now = at("2026-03-09T05:00:00")
    w.services.commands.delete(w.ids["deleted"])
    # Long before the window: names its service, touches no day.
    declare(w, "old", "2025-01-01T00:00:00", affected_services=("legacy",))
    update(w, "old", "2025-01-01T01:00:00", Status.RESOLVED)


def services_of(w: World, days: int = 4, headers: dict[str, str] | None = None
                ) -> dict[str, Any]:
    response = w.http.get("/api/v1/services", params={"days": days}, headers=headers or {})
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


def day(item: dict[str, Any], date: str) -> tuple[Any, int, list[str]]:
    found = next(d for d in item["days"] if d["date"] == date)
    return found["worst_severity"], found["minutes_affected"], found["incidents"]


def test_days_from_incidents_at_known_times(world: World) -> None:
    ids = world.ids
    public = services_of(world)
    assert list(public) == ["api", "cdn", "legacy", "web"]
    api = public["api"]
    assert [d["date"] for d in api["days"]] == [
        "2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"]
    assert day(api, "2026-03-07") == (None, 0, [ids["maintenance"]])
    assert day(api, "2026-03-08") == ("high", 60, [ids["midnight"]])
    assert day(api, "2026-03-09") == ("critical", 180, [ids["midnight"], ids["escalated"]])
    assert day(api, "2026-03-10") == (None, 0, [])
    assert api["state"] == "operational"
    # 240 minutes of the window's 3.5 days (5,040 minutes), which ends where the clock's
    # minute does (the answer is kept per minute and drawn as at its end).
    window_micros = 5040 * 60_000_000 + 59_999_999
    assert api["uptime_ratio"] == round(1 - 240 * 60_000_000 / window_micros, 6)
    assert day(public["cdn"], "2026-03-09") == ("low", 45, [ids["reopened"]])
    web = public["web"]
    assert day(web, "2026-03-09") == ("critical", 120, [ids["escalated"]])
    # Ongoing since 11:00 at 12:00:00: counted to the minute's end, so the minute in
    # progress counts whole.
    assert day(web, "2026-03-10") == ("minor", 61, [ids["ongoing"]])
    assert web["state"] == "degraded_performance"
    assert public["legacy"]["uptime_ratio"] == 1.0
    assert all(day(public["legacy"], d["date"])[1] == 0 for d in public["legacy"]["days"])


def test_private_and_deleted_incidents_appear_nowhere_without_a_token(world: World) -> None:
    answer = world.http.get("/api/v1/services", params={"days": 365}).text
    for hidden in ("private", "deleted"):
        assert world.ids[hidden] not in answer
    assert "secret-service" not in answer
    assert "deleted-service" not in answer
    read = services_of(world, headers=READER)
    assert "secret-service" in read
    assert "deleted-service" not in read
    assert read["api"]["state"] == "major_outage"
    # Counted to 12:00:59.
    assert day(read["api"], "2026-03-10") == ("critical", 721, [world.ids["private"]])
    assert world.ids["deleted"] not in str(read)


def test_the_window_and_bad_days(world: World) -> None:
    one = services_of(world, days=1)["web"]
    assert [d["date"] for d in one["days"]] == ["2026-03-10"]
    # Since 11:00 of a day seen until 12:00:59.999999 (the end of the clock's minute).
    rest_of_minute = 59_999_999
    assert one["uptime_ratio"] == round(
        1 - (60 * 60_000_000 + rest_of_minute) / (720 * 60_000_000 + rest_of_minute), 6)
    assert len(services_of(world, days=365)["api"]["days"]) == 365
    assert len(services_of(world, days=90)["api"]["days"]) == 90
    assert len(world.http.get("/api/v1/services").json()["items"][0]["days"]) == 90
    for bad in ("0", "366", "-1", "ninety", "1.5"):
        response = world.http.get("/api/v1/services", params={"days": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_a_rebuild_gives_the_same_answer(world: World) -> None:
    before = (services_of(world, days=365), services_of(world, days=30, headers=READER))
    projections = [p for p in world.services.projector.projections
                   if p.name == "incident_periods"]
    names = projections[0].tables
    with world.services.database.transaction() as cursor:
        tables = [sorted(cursor.execute(f"SELECT * FROM {t}").fetchall()) for t in names]
    assert all(tables)
    rebuild(world.services.projector, projections)
    with world.services.database.transaction() as cursor:
        assert tables == [sorted(cursor.execute(f"SELECT * FROM {t}").fetchall())
                          for t in names]
    assert (services_of(world, days=365), services_of(world, days=30, headers=READER)) == before


def test_history_pages_newest_first_without_hidden_incidents(world: World) -> None:
    update(world, "private", "2026-03-10T12:00:00", Status.RESOLVED)
    world.services.projector.catch_up()
    reads = world.services.service_queries

    def walk(audience: Audience) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            page = reads.history(audience=audience, limit=2, cursor=cursor)
            assert len(page.items) <= 2
            seen += [item["title"] for item in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    assert walk(Audience.PUBLIC) == ["reopened", "escalated", "midnight", "maintenance", "old"]
    assert walk(Audience.READER) == ["private", "reopened", "escalated", "midnight",
                                     "maintenance", "old"]
    first = reads.history(audience=Audience.PUBLIC, limit=1).items[0]
    assert first["month"] == "March 2026"
    assert first["start_time"] == "2026-03-09T10:00:00Z"
    with pytest.raises(BadHistoryCursor):
        reads.history(audience=Audience.PUBLIC, limit=2, cursor="bm90LWEtY3Vyc29y")
