"""The day cells of the `incident_periods` read model: per audience scope, service and UTC
day, what the incidents' ended periods did that day, so that a bar of 90 days reads at most
90 rows per service, however many incidents there were.

A cell keeps each incident's part of the day (`entries`: when it was declared, its title,
whether it was planned, its pieces of ended periods within the day with their severity) and,
derived from them when written, the incidents in order, the union of the unplanned pieces
(`spans`), its length in microseconds (`affected`) and the worst severity. Periods still
open are not in cells (they grow with the clock): queries add them as they read.

A cell is kept only where an answer can show it. A window of the bars is at most
`LONGEST_WINDOW` days and ends today, and today is never before the day an ended period
ended (its end is the time of the event that ended it, and the clock only moves forward): so
of an ended period only its last `KEPT_DAYS` days are in cells, however early it started
(its `start_time` may be any date), which bounds an incident's cells per period, service
and audience. The bound depends on the period alone, so the cells are the same on a
rebuild, whenever it runs.

An event changes an incident's cells only through its contributions: the cells it is in
before the event and after it (`contributions()` of the row before and after) are compared,
and only the cells that differ are read and written, once per batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from domain.values import IncidentType, Severity
from domain.visibility import VISIBLE, shows
from projections.base import Cursor, load_list
from projections.incident_summary import SCOPES

DAY_US = 86_400_000_000
LONGEST_WINDOW = 365  # days of the longest window of the bars (`GET /api/v1/services`)
# An ended period's days kept in cells: the longest window's, and one to spare for a reader
# whose clock is behind the writer's across a midnight.
KEPT_DAYS = LONGEST_WINDOW + 1
WORST_FIRST = [s.value for s in Severity]
MAINTENANCE = IncidentType.MAINTENANCE.value
Key = tuple[str, str, int]  # scope, service, day (days since the epoch)
Entry = list[Any]  # [created_at, title, planned, [[start, end, severity], ...]]
CELL_COLUMNS = ("scope", "name", "day", "entries", "incidents", "spans", "affected",
                "worst")


def worst(severities: Iterable[str | None]) -> str | None:
    found = [s for s in severities if s in WORST_FIRST]
    return min(found, key=WORST_FIRST.index) if found else None


def merged(spans: Iterable[Sequence[int]]) -> list[list[int]]:
    """Spans (start, end) as the sorted, disjoint spans covering the same time."""
    out: list[list[int]] = []
    for start, end in sorted((int(s[0]), int(s[1])) for s in spans):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def pieces(start: int, end: int) -> Iterable[tuple[int, int, int]]:
    """(day, start, end) of a span cut at each midnight it crosses."""
    if end <= start:
        return
    for day in range(start // DAY_US, (end - 1) // DAY_US + 1):
        yield day, max(start, day * DAY_US), min(end, (day + 1) * DAY_US)


def shown_from(end: int) -> int:
    """The earliest moment of an ended period (ending at `end`, exclusive) that a window
    can show: the midnight starting the first of the `KEPT_DAYS` days that end with the
    period's last day."""
    return ((end - 1) // DAY_US - (KEPT_DAYS - 1)) * DAY_US


def contributions(row: Mapping[str, Any] | None) -> dict[Key, Entry]:
    """The cells an incident (its row) is in, and its entry in each: its ended periods,
    for each audience that sees it and each of its services; of each period only the days
    a window can show (`shown_from`)."""
    if row is None:
        return {}
    scopes = [scope for audience, scope in SCOPES.items()
              if shows(VISIBLE[audience], {"deleted": bool(row["deleted"]),
                                           "is_public": bool(row["is_public"])})]
    by_day: dict[int, list[list[Any]]] = {}
    for start, end, severity in json.loads(row["periods"]):
        if end is not None:
            for day, lo, hi in pieces(max(start, shown_from(end)), end):
                by_day.setdefault(day, []).append([lo, hi, severity])
    if not scopes or not by_day:
        return {}
    planned = row["incident_type"] == MAINTENANCE
    return {(scope, name, day): [row["created_at"], row["title"], planned, parts]
            for scope in scopes for name in dict.fromkeys(load_list(row["services"]))
            for day, parts in by_day.items()}


class Cells:
    """The cells changed in a batch: each read once when first needed, written once (or
    deleted when no incident is left in it) at the end of the batch."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.cells: dict[Key, dict[str, Entry]] = {}

    def move(self, cursor: Cursor, incident_id: str, before: dict[Key, Entry],
             after: dict[Key, Entry]) -> None:
        """The incident leaves the cells it was in before and enters those of after."""
        for key in before.keys() - after.keys():
            self._entries(cursor, key).pop(incident_id, None)
        for key, entry in after.items():
            if before.get(key) != entry:
                self._entries(cursor, key)[incident_id] = entry

    def _entries(self, cursor: Cursor, key: Key) -> dict[str, Entry]:
        if key not in self.cells:
            found = cursor.execute(
                f"SELECT entries FROM {self.table} WHERE scope = ? AND name = ? AND day = ?",
                key).fetchone()
            self.cells[key] = json.loads(found[0]) if found else {}
        return self.cells[key]

    def flush(self, cursor: Cursor) -> None:
        empty = [key for key, entries in sorted(self.cells.items()) if not entries]
        if empty:
            cursor.executemany(
                f"DELETE FROM {self.table} WHERE scope = ? AND name = ? AND day = ?", empty)
        rows = [(*key, *derived(entries)) for key, entries in sorted(self.cells.items())
                if entries]
        if rows:
            updates = ", ".join(f"{c} = excluded.{c}" for c in CELL_COLUMNS[3:])
            cursor.executemany(
                f"INSERT INTO {self.table} ({', '.join(CELL_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(CELL_COLUMNS))}) "
                f"ON CONFLICT (scope, name, day) DO UPDATE SET {updates}", rows)
        self.cells.clear()


def derived(entries: dict[str, Entry]) -> tuple[str, str, str, int, str | None]:
    """A cell's columns from its entries: entries, incidents (ordered by declaration),
    merged unplanned spans, their length, the worst unplanned severity."""
    unplanned = [part for entry in entries.values() if not entry[2] for part in entry[3]]
    spans = merged(unplanned)
    incidents = sorted([entry[0], incident_id, entry[1], entry[2]]
                       for incident_id, entry in entries.items())
    return (json.dumps(entries, sort_keys=True, ensure_ascii=False),
            json.dumps(incidents, ensure_ascii=False), json.dumps(spans),
            sum(end - start for start, end in spans), worst(p[2] for p in unplanned))
