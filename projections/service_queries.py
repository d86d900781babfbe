"""Queries over the `incident_periods` read model: each service's day bars and state, the
components of the Statuspage-compatible API, and the history of past incidents.

Which incidents count is `domain.visibility`'s rule (the SQL predicate). A day is a UTC
day; its worst severity is the worst an incident of the service had while active during it,
its minutes affected the length of the union of those active periods within the day
(whole minutes, a part of a minute counting as one). Maintenance incidents are listed on the
days they were active and make a service's state `under_maintenance`, but they are planned:
they give no severity to a day, no minutes affected and cost no uptime. `uptime_ratio` is
1 minus the time affected over the time of the window (its first day's midnight until now).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain.values import IncidentType, Severity, Status
from domain.visibility import VISIBLE, Audience, where
from projections.base import ReadStore, load_list, micros, moment, rfc3339_micros
from projections.columns import named
from projections.incident_summary import SCOPES

DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
WORST_FIRST = [s.value for s in Severity]
MAINTENANCE = IncidentType.MAINTENANCE.value
CLOSED = (Status.RESOLVED.value, Status.POST_INCIDENT.value)
# A service's state (Statuspage's component statuses) from its worst active severity: as on
# the status page's banner, a critical or high incident is a major outage.
STATE_OF_SEVERITY = {
    Severity.CRITICAL.value: "major_outage",
    Severity.HIGH.value: "major_outage",
    Severity.MEDIUM.value: "partial_outage",
    Severity.LOW.value: "degraded_performance",
    Severity.MINOR.value: "degraded_performance",
}
OPERATIONAL = "operational"
UNDER_MAINTENANCE = "under_maintenance"


class BadHistoryCursor(ValueError):
    pass


@dataclass(frozen=True)
class Involved:
    """An incident naming a service, with its active periods."""

    id: str
    title: str
    incident_type: str
    periods: tuple[tuple[int, int | None, str], ...]

    @property
    def planned(self) -> bool:
        return self.incident_type == MAINTENANCE


@dataclass
class Day:
    date: str
    worst_severity: str | None
    minutes_affected: int
    incidents: list[Involved] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        return {"date": self.date, "worst_severity": self.worst_severity,
                "minutes_affected": self.minutes_affected,
                "incidents": [i.id for i in self.incidents]}


@dataclass
class ServiceBar:
    name: str
    state: str
    uptime_ratio: float
    days: list[Day]
    created_at: int = 0  # when the first incident naming it was declared (microseconds)
    updated_at: int = 0  # when one of them last changed

    def answer(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "uptime_ratio": self.uptime_ratio,
                "days": [d.answer() for d in self.days]}


def worst(severities: Iterable[str]) -> str | None:
    found = [s for s in severities if s in WORST_FIRST]
    return min(found, key=WORST_FIRST.index) if found else None


def union_length(spans: Iterable[tuple[int, int]]) -> int:
    """The length covered by spans (start, end), overlaps counted once."""
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def state_of(incidents: Sequence[Involved], now: int) -> str:
    """A service's state now: its worst active unplanned severity, else under maintenance
    while a maintenance is active, else operational."""
    active = [(i, p[2]) for i in incidents for p in i.periods
              if p[1] is None and p[0] <= now]
    severity = worst(s for i, s in active if not i.planned)
    if severity is not None:
        return STATE_OF_SEVERITY[severity]
    return UNDER_MAINTENANCE if active else OPERATIONAL


def bar(name: str, incidents: Sequence[Involved], first_day: date, days: int,
        now: int) -> ServiceBar:
    """One service's days, oldest first (the last one holds `now`), from the incidents
    naming it. Each period is clipped to the window and cut at each midnight it spans, so
    the work grows with the days incidents were active, not with days times incidents."""
    start = micros(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC))
    spans: list[list[tuple[int, int]]] = [[] for _ in range(days)]
    severities: list[list[str]] = [[] for _ in range(days)]
    involved: list[dict[str, Involved]] = [{} for _ in range(days)]
    for incident in incidents:
        for begin, end, severity in incident.periods:
            lo, hi = max(begin, start), min(now if end is None else end, now)
            if hi <= lo:
                continue
            for n in range((lo - start) // DAY_US, min((hi - 1 - start) // DAY_US + 1, days)):
                day_start = start + n * DAY_US
                piece = (max(lo, day_start), min(hi, day_start + DAY_US))
                involved[n][incident.id] = incident
                if not incident.planned:
                    spans[n].append(piece)
                    severities[n].append(severity)
    result = [Day((first_day + timedelta(days=n)).isoformat(), worst(severities[n]),
                  math.ceil(union_length(spans[n]) / MINUTE_US), list(involved[n].values()))
              for n in range(days)]
    affected = sum(union_length(s) for s in spans)  # days do not overlap
    window = max(now - start, 1)
    return ServiceBar(name, state_of(incidents, now), round(1 - affected / window, 6),
                      result)


def encode_history_cursor(start_time: int, incident_id: str) -> str:
    text = f"h1:{start_time}:{incident_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_history_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        found = re.fullmatch(r"h1:(-?[0-9]{1,18}):(incident-[A-Za-z0-9_-]{1,128})", text)
        if found is None:
            raise ValueError(text)
        return int(found.group(1)), found.group(2)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadHistoryCursor(f"not a cursor of the history: {cursor!r}") from None


@dataclass(frozen=True)
class HistoryPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


_INVOLVED = ("id", "title", "incident_type", "periods", "created_at", "services")
_HISTORY = ("id", "title", "status", "severity", "incident_type", "start_time", "resolved_at")


class ServiceQueries:
    def __init__(self, store: ReadStore) -> None:
        self.store = store

    def bars(self, *, audience: Audience, days: int, now: datetime) -> list[ServiceBar]:
        """Every service named by an incident `audience` sees, by name, with its last
        `days` UTC days (the last one today)."""
        now_us = micros(now)
        today = now.astimezone(UTC).date()
        first_day = today - timedelta(days=days - 1)
        window_start = micros(datetime(first_day.year, first_day.month, first_day.day,
                                       tzinfo=UTC))
        visible, params = where(VISIBLE[audience], "i")
        with self.store.transaction() as tx:
            names = tx.execute(
                "SELECT name, created_at, updated_at FROM period_service_stats "
                "WHERE scope = ? ORDER BY name", (SCOPES[audience],)).fetchall()
            rows = named(_INVOLVED, tx.execute(
                f"SELECT {', '.join(_INVOLVED)} FROM period_incidents i WHERE {visible} "
                "AND i.last_end > ? AND i.first_start < ?",
                [*params, window_start, now_us]).fetchall())
        by_service: dict[str, list[Involved]] = {}
        for row in sorted(rows, key=lambda r: (r["created_at"], r["id"])):
            involved = Involved(row["id"], row["title"], row["incident_type"], tuple(
                (int(p[0]), None if p[1] is None else int(p[1]), str(p[2]))
                for p in json.loads(row["periods"])))
            for name in dict.fromkeys(load_list(row["services"])):
                by_service.setdefault(name, []).append(involved)
        found = []
        for name, created, updated in names:
            service = bar(str(name), by_service.get(str(name), []), first_day, days, now_us)
            service.created_at, service.updated_at = int(created), int(updated)
            found.append(service)
        return found

    def history(self, *, audience: Audience, limit: int, cursor: str | None = None
                ) -> HistoryPage:
        """Past (resolved or post-incident) incidents, newest start first; pass
        `next_cursor` back as `cursor` for the next page (its cost does not grow with
        depth)."""
        visible, params = where(VISIBLE[audience])
        sql = (f"SELECT {', '.join(_HISTORY)} FROM period_incidents WHERE {visible} "
               f"AND status IN ({', '.join('?' * len(CLOSED))})")
        params += list(CLOSED)
        if cursor is not None:
            start, incident_id = decode_history_cursor(cursor)
            sql += " AND (start_time < ? OR (start_time = ? AND id < ?))"
            params += [start, start, incident_id]
        sql += " ORDER BY start_time DESC, id DESC LIMIT ?"
        with self.store.transaction() as tx:
            rows = named(_HISTORY, tx.execute(sql, [*params, limit + 1]).fetchall())
        more = len(rows) > limit
        rows = rows[:limit]
        items = [{**row, "start_time": rfc3339_micros(row["start_time"]),
                  "resolved_at": (None if row["resolved_at"] is None
                                  else rfc3339_micros(row["resolved_at"])),
                  "month": f"{moment(row['start_time']):%B %Y}"} for row in rows]
        next_cursor = (encode_history_cursor(rows[-1]["start_time"], rows[-1]["id"])
                       if more and rows else None)
        return HistoryPage(items, next_cursor)
