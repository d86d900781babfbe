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
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
# `ServiceBar.key`
BarKey = tuple[str, str, str, int, int, int, int]
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
    affected: int = 0  # microseconds affected within the window
    # What its days are the same for: the `ServiceQueries` (its store), scope, name,
    # `changed`, first day, days, and (while an incident of it is ongoing: its days count up
    # to now) now. Pages keep what they draw of them by it.
    key: BarKey | None = None

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
    return ServiceBar(name, state_of(ongoing, now), uptime_of(affected, first, now), result,
                      affected=affected)


def uptime_of(affected: int, first: int, now: int) -> float:
    """1 minus the time affected over the window's time (from `first` until `now`)."""
    return round(1 - affected / max(now - first, 1), 6)


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


# The day bars kept per process (`ServiceQueries.bars`): at most this many days of them.
KEPT_DAYS = 60_000


class ServiceQueries:
    def __init__(self, store: ReadStore) -> None:
        self.store = store
        # The days of services by `ServiceBar.key`: a service's days change only with its
        # `changed`, the window (and `now`, while an incident of it is ongoing), so a page
        # of hundreds of services reads again only those that changed (least recently used
        # out first).
        self._kept: OrderedDict[BarKey, ServiceBar] = OrderedDict()
        self._kept_days = 0
        self._lock = threading.Lock()
        # Names these queries' store in the keys: what is drawn from them is kept by key
        # in the process, which may hold several stores (tests do).
        self._identity = uuid.uuid4().hex

    def _kept_bar(self, key: BarKey) -> ServiceBar | None:
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def _keep(self, found: ServiceBar) -> None:
        assert found.key is not None
        with self._lock:
            if found.key in self._kept:
                return
            self._kept[found.key] = found
            self._kept_days += len(found.days)
            while self._kept_days > KEPT_DAYS and len(self._kept) > 1:
                _, dropped = self._kept.popitem(last=False)
                self._kept_days -= len(dropped.days)

    def bars(self, *, audience: Audience, days: int, now: datetime) -> list[ServiceBar]:
        """Every service named by an incident `audience` sees, by name, with its last
        `days` UTC days (the last one today), at most `LONGEST_WINDOW` (the cells hold
        no earlier day of an ended period).

        A service's days are kept (by `ServiceBar.key`) and its cells read again only once
        its `changed` moved (or, while one of its incidents is ongoing, `now`): while writes
        land on a few services, the bars of the others cost nothing. The days returned are
        shared: do not change them."""
        assert 1 <= days <= LONGEST_WINDOW, days
        now_us = micros(now)
        today = now.astimezone(UTC).date()
        first_day = today - timedelta(days=days - 1)
        window_start = micros(datetime(first_day.year, first_day.month, first_day.day,
                                       tzinfo=UTC))
        first_cell = window_start // DAY_US
        visible, params = where(VISIBLE[audience], "i")
        scope = SCOPES[audience]
        with self.store.transaction() as tx:
            names = tx.execute(
                "SELECT name, created_at, updated_at, changed FROM period_service_stats "
                "WHERE scope = ? ORDER BY name", (scope,)).fetchall()
            rows = named(_ONGOING, tx.execute(
                f"SELECT {', '.join(_ONGOING)} FROM period_incidents i WHERE {visible} "
                "AND i.last_end = ?", [*params, OPEN]).fetchall())
            ongoing: dict[str, list[Ongoing]] = {}
            for row in rows:
                since, _, severity = json.loads(row["periods"])[-1]
                item = Ongoing(Listed(int(row["created_at"]), row["id"], row["title"],
                                      row["incident_type"] == MAINTENANCE), int(since),
                               severity)
                for name in dict.fromkeys(load_list(row["services"])):
                    ongoing.setdefault(name, []).append(item)
            keys = {str(name): (self._identity, scope, str(name), int(changed), first_cell,
                                days, now_us if str(name) in ongoing else 0)
                    for name, _, _, changed in names}
            kept = {name: self._kept_bar(key) for name, key in keys.items()}
            wanted = [name for name in keys if kept.get(name) is None]
            by_service = self._cells(tx, scope, wanted, len(keys), first_cell,
                                     now_us // DAY_US)
        found = []
        for name, created, updated, _ in names:
            name = str(name)
            service = kept.get(name)
            if service is None:
                service = bar(name, by_service.get(name, {}), ongoing.get(name, []),
                              first_day, days, now_us)
                service.key = keys[name]
                self._keep(service)
            # Kept with no ongoing incident: the same days, but the window grew until now.
            service = replace(service, uptime_ratio=uptime_of(service.affected, window_start,
                                                              now_us))
            service.created_at, service.updated_at = int(created), int(updated)
            found.append(service)
        return found

    @staticmethod
    def _cells(tx: Any, scope: str, wanted: list[str], known: int, first: int,
               last: int) -> dict[str, dict[int, Cell]]:
        """The day cells `first`..`last` of the `wanted` services."""
        if not wanted:
            return {}
        sql = ("SELECT name, day, worst, affected, spans, incidents FROM period_days "
               "WHERE scope = ? AND day >= ? AND day <= ?")
        values: list[Any] = [scope, first, last]
        if len(wanted) < known and len(wanted) <= 500:  # else all: one range scan
            sql += f" AND name IN ({', '.join('?' * len(wanted))})"
            values += wanted
        cells = tx.execute(sql, values).fetchall()
        by_service: dict[str, dict[int, Cell]] = {}
        # One parse for the incidents of every cell: far cheaper than one per cell.
        listed = json.loads("[" + ",".join(str(c[5]) for c in cells) + "]")
        for (name, day, worst_, affected, spans, _), incidents in zip(cells, listed,
                                                                      strict=True):
            by_service.setdefault(str(name), {})[int(day)] = Cell(
                worst_, int(affected), spans, incidents)
        return by_service

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
