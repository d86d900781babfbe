"""An incident that started long ago (its `start_time` may be any date, given when it is
declared or changed after it was resolved) keeps in the day cells of `incident_periods`
only the days a window of the bars can show, on SQLite and PostgreSQL: its last 366 days
per service and audience, while the services' answers (days, minutes, uptime) are those of
every day counted, for windows ending on its last day or later; a rebuild gives the same
cells, and a deployment whose cells were written before the bound rebuilds them at start."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from commands.application import NewIncident
from domain.values import Severity, Status
from infra.bootstrap import Services, bootstrap
from infra.follower_positions import READ_MODELS
from infra.rebuild import rebuild
from infra.settings import Settings
from projections.base import micros
from projections.day_cells import DAY_US
from projections.incident_periods import IncidentPeriods
from projections.incident_summary import SCOPES
from tests.clock import Clock
from tests.conftest import READER, LiveServer
from tests.integration.test_service_days import (
    World,
    at,
    change,
    day,
    services_of,
    update,
)

SERVICES = ("api", "web")
DECLARED = "2026-03-10T00:00:00"
RESOLVED = "2026-03-10T06:00:30"  # 361 minutes of its last day (the part one counts whole)
NOW = "2026-03-10T12:00:00"
LAST_DAY = micros(at(RESOLVED)) // DAY_US
MINUTE_US = 60_000_000
REBUILT = "read model incident_periods: its tables changed shape"


class UnboundedPeriods(IncidentPeriods):
    """incident_periods as a release made it whose cells held every day of a period."""

    revision = 0


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    clock = Clock(at(DECLARED))
    services = bootstrap(settings, clock=clock)
    server = LiveServer(services)
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield World(services, clock, {}, http)
    server.stop()
    services.close()


def far_back(world: World, how: str) -> None:
    """Declares "ancient" (high, on SERVICES) started on 1900-01-01, either as declared
    or by a change after it was resolved, and resolves it at RESOLVED."""
    world.clock.now = at(DECLARED)
    start = at("1900-01-01T00:00:00") if how == "declared" else at(DECLARED)
    world.ids["ancient"] = world.services.commands.create(NewIncident(
        title="ancient", start_time=start, severity=Severity.HIGH,
        affected_services=SERVICES, given=frozenset({"title"}))).incident_id
    update(world, "ancient", RESOLVED, Status.RESOLVED)
    if how == "changed":
        change(world, "ancient", "2026-03-10T07:00:00", start_time=at("1900-01-01T00:00:00"))
    world.clock.now = at(NOW)
    world.services.projector.catch_up()


def cells(services: Services) -> list[tuple[Any, ...]]:
    with services.database.transaction() as cursor:
        return sorted(cursor.execute("SELECT * FROM period_days").fetchall())


def counted(services: Services) -> tuple[int, int, int]:
    """How many cells there are, and their first and last day."""
    with services.database.transaction() as cursor:
        found = cursor.execute("SELECT count(*), min(day), max(day) FROM period_days")
        count, first, last = found.fetchone()
    return int(count), int(first), int(last)


def uptime(affected_us: int, days: int) -> float:
    """The uptime of a window of `days` ending on NOW's day, seen at the end of its minute,
    with `affected_us` of it affected."""
    window_us = (days - 1) * DAY_US + 12 * 3600_000_000 + MINUTE_US - 1
    return round(1 - affected_us / window_us, 6)


def assert_answers(world: World) -> None:
    """Every day of the longest window (and a shorter one) as if every day were kept."""
    ancient = world.ids["ancient"]
    last = (6 * 3600 + 30) * 1_000_000  # 06:00:30 of the last day
    for headers in ({}, READER):
        year = services_of(world, days=365, headers=headers)
        assert list(year) == list(SERVICES)
        for name in SERVICES:
            days = year[name]["days"]
            assert [d["date"] for d in (days[0], days[-1])] == ["2025-03-11", "2026-03-10"]
            assert all(day(year[name], d["date"]) == ("high", 1440, [ancient])
                       for d in days[:-1])
            assert day(year[name], "2026-03-10") == ("high", 361, [ancient])
            assert year[name]["uptime_ratio"] == uptime(364 * DAY_US + last, 365)
            assert year[name]["state"] == "operational"
        week = services_of(world, days=7, headers=headers)["api"]
        assert week["uptime_ratio"] == uptime(6 * DAY_US + last, 7)
        assert [d["minutes_affected"] for d in week["days"]] == [1440] * 6 + [361]


@pytest.mark.parametrize("how", ["declared", "changed"])
def test_a_period_from_long_ago_keeps_the_days_a_window_can_show(world: World,
                                                                 how: str) -> None:
    far_back(world, how)
    # 2 services, each audience, 366 days: not the 46,000 days since 1900.
    assert counted(world.services) == (len(SERVICES) * len(SCOPES) * 366, LAST_DAY - 365,
                                       LAST_DAY)
    assert_answers(world)
    # Later, the window moves past the days kept and counts none it lacks.
    world.clock.now = at("2026-06-01T09:00:00")
    # Naming the store's position: an anonymous reader who names none may first be
    # answered the previous minute's answer while the new one is read.
    position = {"Min-Position": str(world.services.barrier.store_head())}
    later = services_of(world, days=365, headers=position)["web"]
    first = date(2026, 6, 1) - timedelta(days=364)
    affected = [d["minutes_affected"] for d in later["days"]]
    assert later["days"][0]["date"] == first.isoformat()
    assert affected == ([1440] * (date(2026, 3, 10) - first).days + [361]
                        + [0] * (date(2026, 6, 1) - date(2026, 3, 10)).days)


def test_a_rebuild_keeps_the_same_cells(world: World) -> None:
    far_back(world, "declared")
    before = cells(world.services)
    projections = [p for p in world.services.projector.projections
                   if p.name == "incident_periods"]
    rebuild(world.services.projector, projections)
    assert cells(world.services) == before
    assert_answers(world)


def test_cells_of_every_day_are_rebuilt_at_start(world: World, settings: Settings,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    far_back(world, "declared")
    before = cells(world.services)
    dialect = world.services.database.dialect
    older = UnboundedPeriods.shape(dialect)
    assert older != IncidentPeriods.shape(dialect)
    # As the older release left them: days of the period far back in cells too.
    with world.services.database.transaction(write=True) as cursor:
        cursor.execute(
            "INSERT INTO period_days (scope, name, day, entries, incidents, spans, affected, "
            "worst) SELECT scope, name, day - 20000, entries, incidents, spans, affected, "
            "worst FROM period_days WHERE day = ?", (LAST_DAY - 1,))
        cursor.execute(f"UPDATE {READ_MODELS} SET shape = ? WHERE name = ?",
                       (older, IncidentPeriods.name))
    assert counted(world.services)[0] == len(before) + len(SERVICES) * len(SCOPES)
    with caplog.at_level(logging.INFO, logger="product_status"):
        started = bootstrap(settings, clock=world.clock)
    try:
        assert caplog.text.count(REBUILT) == 1, caplog.text
        assert cells(started) == before
    finally:
        started.close()
