"""Each service's day bars are kept per process (`ServiceQueries.bars`) and read again only
for the services whose `changed` moved (or, while one of its incidents is ongoing, for a new
`now`): after every kind of change the kept answer equals one read afresh, and the services
no change touched are not read again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commands.application import NewIncident, NewUpdate
from domain.values import Severity, Status
from domain.visibility import Audience
from infra.bootstrap import Services, bootstrap
from infra.settings import Settings
from projections.service_queries import ServiceBar, ServiceQueries
from tests.clock import Clock

NOW = datetime(2026, 3, 10, 12, 0, 59, 999_999, tzinfo=UTC)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    found = bootstrap(settings, clock=Clock(datetime(2026, 3, 5, 12, tzinfo=UTC)))
    yield found
    found.close()


def declare(services: Services, title: str, names: tuple[str, ...], *,
            resolve: bool = True, **details: Any) -> str:
    start = datetime(2026, 3, 5, 10, tzinfo=UTC)
    incident_id = services.commands.create(NewIncident(
        title=title, start_time=start, severity=Severity.HIGH, affected_services=names,
        given=frozenset({"title", "severity", "affected_services"}), **details)).incident_id
    if resolve:
        services.commands.add_update(incident_id, NewUpdate(status=Status.RESOLVED))
    return incident_id


def answers(bars: list[ServiceBar]) -> dict[str, Any]:
    return {b.name: {**b.answer(), "affected": b.affected} for b in bars}


def read(services: Services, audience: Audience = Audience.PUBLIC,
         now: datetime = NOW) -> dict[str, ServiceBar]:
    """The kept bars, after checking them against bars read afresh (nothing kept)."""
    services.projector.catch_up()
    kept = services.service_queries.bars(audience=audience, days=90, now=now)
    fresh = ServiceQueries(services.service_queries.store).bars(audience=audience, days=90,
                                                                now=now)
    assert answers(kept) == answers(fresh)
    return {b.name: b for b in kept}


def test_only_the_changed_services_are_read_again(services: Services) -> None:
    declare(services, "Database down", ("db",))
    queue = declare(services, "Queue slow", ("queue", "db"))
    declare(services, "Search down", ("search",))
    first = read(services)
    again = read(services)
    assert all(again[name].days is first[name].days for name in first)  # all kept

    # A change of one incident: its services are read again, the others kept.
    services.commands.change_details(queue, {"title": "Queue very slow"})
    changed = read(services)
    assert changed["search"].days is first["search"].days
    assert changed["queue"].days is not first["queue"].days
    assert changed["db"].days is not first["db"].days
    assert "Queue very slow" in [i.title for d in changed["db"].days for i in d.incidents]

    # Made private: gone from the public bars of both its services, still there for readers.
    services.commands.change_details(queue, {"is_public": False})
    hidden = read(services)
    assert "queue" not in hidden
    assert [i.title for d in hidden["db"].days for i in d.incidents] == ["Database down"]
    assert hidden["search"].days is first["search"].days
    assert "queue" in read(services, Audience.READER)

    # Moved to another service, public again: the old one and the new one both change.
    services.commands.change_details(queue, {"is_public": True,
                                             "affected_services": ["search"]})
    moved = read(services)
    assert sorted(i.title for d in moved["search"].days for i in d.incidents) == [
        "Queue very slow", "Search down"]
    assert [i.title for d in moved["db"].days for i in d.incidents] == ["Database down"]

    # Deleted.
    services.commands.delete(queue)
    deleted = read(services)
    assert [i.title for d in deleted["search"].days for i in d.incidents] == ["Search down"]


def test_an_ongoing_incidents_days_count_up_to_each_now(services: Services) -> None:
    declare(services, "Ongoing", ("api",), resolve=False)
    declare(services, "Past", ("web",))
    one = read(services)
    same = read(services)
    assert same["api"].days is one["api"].days  # the same now: kept
    later = read(services, now=NOW + timedelta(minutes=1))
    assert later["api"].days[-1].minutes_affected == one["api"].days[-1].minutes_affected + 1
    assert later["web"].days is one["web"].days
    assert later["web"].uptime_ratio == one["web"].uptime_ratio  # the same to 6 places
