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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain.values import Severity, Status
from domain.visibility import VISIBLE, Audience, where
from projections.base import ReadStore, load_list, micros, moment, rfc3339_micros
from projections.columns import named
from projections.day_cells import DAY_US, LONGEST_WINDOW, MAINTENANCE, merged, pieces, worst
from projections.incident_periods import OPEN
from projections.incident_summary import SCOPES

MINUTE_US = 60_000_000
CLOSED = (Status.RESOLVED.value, Status.POST_INCIDENT.value)
# A service's state (Statuspage's component statuses) from its worst active severity: as on
# the status page's banner, a critical or high incident is a major outage. The one table of
# what a severity means publicly: `api.statuspage` derives impacts and the indicator from it.
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
class Listed:
    """An incident as a day lists it."""

    created_at: int
    id: str
    title: str
    planned: bool


@dataclass(frozen=True)
class Ongoing:
    """An incident with an open period (not in the day cells): since when, how bad."""

    listed: Listed
    since: int
    severity: str


@dataclass(frozen=True)
class Cell:
    """A day cell of `projections.day_cells`, as read."""

    worst: str | None
    affected: int
    spans: str  # JSON, read only when an ongoing incident is added to the day
    incidents: list[list[Any]]  # [[created_at, id, title, planned], ...]

    def listed(self) -> list[Listed]:
        return [Listed(int(c), str(i), str(t), bool(p)) for c, i, t, p in self.incidents]


@dataclass
class Day:
    date: str
    worst_severity: str | None
    minutes_affected: int
    incidents: list[Listed] = field(default_factory=list)

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


def state_of(ongoing: Sequence[Ongoing], now: int) -> str:
    """A service's state now: its worst active unplanned severity, else under maintenance
    while a maintenance is active, else operational."""
    active = [o for o in ongoing if o.since <= now]
    severity = worst(o.severity for o in active if not o.listed.planned)
    if severity is not None:
        return STATE_OF_SEVERITY[severity]
    return UNDER_MAINTENANCE if active else OPERATIONAL


def bar(name: str, cells: dict[int, Cell], ongoing: Sequence[Ongoing], first_day: date,
        days: int, now: int) -> ServiceBar:
    """One service's days, oldest first (the last one holds `now`): the cells of ended
    periods, with the open periods of ongoing incidents added up to `now`."""
    first = micros(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC))
    base = first // DAY_US
    added: dict[int, list[tuple[int, int, Ongoing]]] = {}
    for item in ongoing:
        for day, lo, hi in pieces(max(item.since, first), now):
            added.setdefault(day, []).append((lo, hi, item))
    result: list[Day] = []
    affected = 0
    for n in range(days):
        cell, extra = cells.get(base + n), added.get(base + n, [])
        listed = cell.listed() if cell else []
        if not extra:
            length, severity = (cell.affected, cell.worst) if cell else (0, None)
        else:
            spans = [*(json.loads(cell.spans) if cell else []),
                     *((lo, hi) for lo, hi, o in extra if not o.listed.planned)]
            length = sum(end - start for start, end in merged(spans))
            severity = worst([cell.worst if cell else None,
                              *(o.severity for _, _, o in extra if not o.listed.planned)])
            known = {i.id for i in listed}
            new = {o.listed.id: o.listed for _, _, o in extra if o.listed.id not in known}
            listed = sorted([*listed, *new.values()], key=lambda i: (i.created_at, i.id))
        affected += length
        result.append(Day((first_day + timedelta(days=n)).isoformat(), severity,
                          math.ceil(length / MINUTE_US), listed))
    uptime = round(1 - affected / max(now - first, 1), 6)
    return ServiceBar(name, state_of(ongoing, now), uptime, result)


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


_ONGOING = ("id", "title", "incident_type", "periods", "created_at", "services")
_HISTORY = ("id", "title", "status", "severity", "incident_type", "start_time", "resolved_at")


class ServiceQueries:
    def __init__(self, store: ReadStore) -> None:
        self.store = store

    def bars(self, *, audience: Audience, days: int, now: datetime) -> list[ServiceBar]:
        """Every service named by an incident `audience` sees, by name, with its last
        `days` UTC days (the last one today), at most `LONGEST_WINDOW` (the cells hold
        no earlier day of an ended period)."""
        assert 1 <= days <= LONGEST_WINDOW, days
        now_us = micros(now)
        today = now.astimezone(UTC).date()
        first_day = today - timedelta(days=days - 1)
        window_start = micros(datetime(first_day.year, first_day.month, first_day.day,
                                       tzinfo=UTC))
        visible, params = where(VISIBLE[audience], "i")
        scope = SCOPES[audience]
        with self.store.transaction() as tx:
            names = tx.execute(
                "SELECT name, created_at, updated_at FROM period_service_stats "
                "WHERE scope = ? ORDER BY name", (scope,)).fetchall()
            cells = tx.execute(
                "SELECT name, day, worst, affected, spans, incidents FROM period_days "
                "WHERE scope = ? AND day >= ? AND day <= ?",
                (scope, window_start // DAY_US, now_us // DAY_US)).fetchall()
            rows = named(_ONGOING, tx.execute(
                f"SELECT {', '.join(_ONGOING)} FROM period_incidents i WHERE {visible} "
                "AND i.last_end = ?", [*params, OPEN]).fetchall())
        by_service: dict[str, dict[int, Cell]] = {}
        # One parse for the incidents of every cell: far cheaper than one per cell.
        listed = json.loads("[" + ",".join(str(c[5]) for c in cells) + "]")
        for (name, day, worst_, affected, spans, _), incidents in zip(cells, listed,
                                                                      strict=True):
            by_service.setdefault(str(name), {})[int(day)] = Cell(
                worst_, int(affected), spans, incidents)
        ongoing: dict[str, list[Ongoing]] = {}
        for row in rows:
            since, _, severity = json.loads(row["periods"])[-1]
            item = Ongoing(Listed(int(row["created_at"]), row["id"], row["title"],
                                  row["incident_type"] == MAINTENANCE), int(since), severity)
            for name in dict.fromkeys(load_list(row["services"])):
                ongoing.setdefault(name, []).append(item)
        found = []
        for name, created, updated in names:
            service = bar(str(name), by_service.get(str(name), {}),
                          ongoing.get(str(name), []), first_day, days, now_us)
            service.created_at, service.updated_at = int(created), int(updated)
            found.append(service)
        return found

    def public_changes(self, incident_ids: Sequence[str]) -> dict[str, int]:
        """When each of these incidents last changed publicly (microseconds; internal
        notes and internal updates are no change); an incident the read model does not
        hold yet is left out."""
        found: dict[str, int] = {}
        with self.store.transaction() as tx:
            for start in range(0, len(incident_ids), 500):
                chunk = list(incident_ids[start:start + 500])
                rows = tx.execute(
                    "SELECT id, updated_at FROM period_incidents "
                    f"WHERE id IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
                found.update((str(i), int(at)) for i, at in rows)
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
