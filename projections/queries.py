"""Queries over the read tables: what the list, detail and summary endpoints answer.

Each query is asked for an audience, and `domain.visibility` decides what it sees: which
incidents (the SQL predicate) and which fields (the serialiser of
`projections.incident_view`). Rows are read by column name.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.fields import INCIDENT_FIELDS, POSTMORTEM_FIELDS, STORED_FIELDS, UPDATE_FIELDS
from domain.response import ResponsePolicy
from domain.values import ACTIVE_STATUSES, IncidentType, Severity, Status
from domain.visibility import VISIBLE, Audience, Conditions, visible_fields, where
from projections.base import ReadStore, micros, moment
from projections.columns import json_writer, named, select
from projections.incident_history import PUBLIC_STAMPS, PUBLIC_UPDATE_AT
from projections.incident_summary import SCOPES, SERVICE_SEPARATOR
from projections.incident_view import (
    Body,
    Serialiser,
    incident_body,
    response_steady_until,
    with_response,
)

_SEVERITY_ORDER = [s.value for s in Severity]  # worst first


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class ListFilters:
    status: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    incident_type: tuple[str, ...] = ()
    service: tuple[str, ...] = ()
    region: tuple[str, ...] = ()
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None
    # The last moment its items' derived fields (what the clock judges) stay as written
    # (None: while the rows stay as they are).
    steady_until: datetime | None = None


def encode_cursor(created_position: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{created_position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, number = text.partition(":")
        if version != "v1" or not re.fullmatch(r"[0-9]{1,18}", number):
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"not a cursor from this list: {cursor!r}") from None


_INCIDENT_COLUMNS = ("created_position", *(f.name for f in STORED_FIELDS), PUBLIC_UPDATE_AT,
                     *PUBLIC_STAMPS.values())
_UPDATE_COLUMNS = ("incident_id", *(f.name for f in UPDATE_FIELDS))
_POSTMORTEM_COLUMNS = tuple(f.name for f in POSTMORTEM_FIELDS)
_ROWS = Serialiser(json_writer)  # answers straight from the read tables' rows
# Whether an audience sees fields the clock judges (the response's: a reader's only).
_SEES_DERIVED = {audience: any(f.derived for f in visible_fields(INCIDENT_FIELDS, audience))
                 for audience in Audience}


@dataclass
class _TotalCache:
    """Totals per filter, valid while the list's position stays where it was."""

    size: int = 512
    entries: OrderedDict[Any, tuple[int, int]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: Any, position: int) -> int | None:
        with self.lock:
            found = self.entries.get(key)
            if found is None or found[0] != position:
                return None
            self.entries.move_to_end(key)
            return found[1]

    def put(self, key: Any, position: int, total: int) -> None:
        with self.lock:
            self.entries[key] = (position, total)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


def _updates(tx: Any, incident_ids: Sequence[str], audience: Audience
             ) -> dict[str, list[Body]]:
    rows = select(tx, _UPDATE_COLUMNS, f"FROM incident_updates WHERE incident_id IN "
                  f"({', '.join('?' * len(incident_ids))}) ORDER BY incident_id, number",
                  list(incident_ids))
    found: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["incident_id"], []).append(row)
    return {incident_id: _ROWS.updates(of, audience) for incident_id, of in found.items()}


class IncidentQueries:
    def __init__(self, store: ReadStore, policy: ResponsePolicy,
                 clock: Callable[[], datetime]) -> None:
        """`policy` and `clock` judge the response's derived fields of each answer."""
        self.store = store
        self.policy = policy
        self.clock = clock
        self.like = "ILIKE" if store.dialect == "postgres" else "LIKE"
        self._totals = _TotalCache()

    def page_query(
        self, filters: ListFilters, *, audience: Audience, limit: int, cursor: str | None = None
    ) -> tuple[str, list[Any]]:
        """The SQL of one page (limit + 1 rows, to know whether more follow)."""
        where, params = self._where(filters, audience)
        if cursor is not None:
            where.append("created_position < ?")
            params.append(decode_cursor(cursor))
        sql = (f"SELECT {', '.join(_INCIDENT_COLUMNS)} FROM incidents i "
               f"WHERE {' AND '.join(where)} ORDER BY created_position DESC LIMIT ?")
        return sql, [*params, limit + 1]

    def list_incidents(
        self, filters: ListFilters, *, audience: Audience, limit: int = 20,
        cursor: str | None = None
    ) -> Page:
        page_sql, page_params = self.page_query(filters, audience=audience, limit=limit,
                                                cursor=cursor)
        where, params = self._where(filters, audience)
        with self.store.transaction() as tx:
            rows = named(_INCIDENT_COLUMNS, tx.execute(page_sql, page_params).fetchall())
            key = (filters, audience)
            position = self._position(tx)
            total = self._totals.get(key, position)
            if total is None:
                counted = tx.execute(
                    f"SELECT count(*) FROM incidents i WHERE {' AND '.join(where)}",
                    params,
                ).fetchone()
                total = int(counted[0]) if counted else 0
                self._totals.put(key, position, total)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(int(rows[-1]["created_position"])) if more and rows \
            else None
        now = self.clock()
        steady = [response_steady_until(r, self.policy, now, read=moment) for r in rows
                  ] if _SEES_DERIVED[audience] else []
        return Page([_ROWS.incident(self._responded(r, now), audience) for r in rows], total,
                    next_cursor, min((s for s in steady if s is not None), default=None))

    def _responded(self, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """A read table's row with the response's derived fields at `now`."""
        return with_response(row, self.policy, now, read=moment, write=micros)

    def folded(self, record: Mapping[str, Any], audience: Audience,
               as_of: datetime | None = None) -> Body:
        """An incident of the audit fold as `audience` may see it now (or as it stood at
        `as_of`, when that is earlier), with its status updates."""
        now = self.clock()
        return incident_body(record, audience, self.policy,
                             now if as_of is None else min(now, as_of))

    def newest(self, filters: ListFilters, *, audience: Audience, limit: int
               ) -> list[Body]:
        """The first page without its total: one query on the index, whatever matches
        (the status page's lists, which show no total)."""
        page_sql, page_params = self.page_query(filters, audience=audience, limit=limit)
        with self.store.transaction() as tx:
            rows = named(_INCIDENT_COLUMNS, tx.execute(page_sql, page_params).fetchall())
        now = self.clock()
        return [_ROWS.incident(self._responded(r, now), audience) for r in rows[:limit]]

    def _where(self, filters: ListFilters, audience: Audience
               ) -> tuple[list[str], list[Any]]:
        visible, params = where(VISIBLE[audience], "i")
        where_ = [visible]
        for column, values in (("status", filters.status), ("severity", filters.severity),
                               ("incident_type", filters.incident_type)):
            if values:
                where_.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += list(values)
        for table, values in (("incident_services", filters.service),
                              ("incident_regions", filters.region)):
            if values:
                where_.append(
                    f"EXISTS (SELECT 1 FROM {table} n WHERE n.incident_id = i.id "
                    f"AND n.name IN ({', '.join('?' * len(values))}))"
                )
                params += list(values)
        if filters.q:
            pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            where_.append(f"(title {self.like} ? ESCAPE '\\' OR description {self.like} ? "
                          "ESCAPE '\\')")
            params += [pattern, pattern]
        if filters.since is not None:
            where_.append("start_time >= ?")
            params.append(micros(filters.since))
        if filters.until is not None:
            where_.append("start_time < ?")
            params.append(micros(filters.until))
        return where_, params

    def get_incident(self, incident_id: str, *, audience: Audience) -> Body | None:
        """The incident with its updates, if `audience` may see it; None otherwise (an
        unknown incident and a hidden one are alike)."""
        visible, params = where(VISIBLE[audience])
        with self.store.transaction() as tx:
            rows = select(tx, _INCIDENT_COLUMNS,
                          f"FROM incidents WHERE id = ? AND {visible}", [incident_id, *params])
            if not rows:
                return None
            updates = _updates(tx, [incident_id], audience)
            postmortems = select(tx, _POSTMORTEM_COLUMNS,
                                 "FROM incident_postmortems WHERE incident_id = ?",
                                 [incident_id])
        return _ROWS.incident(self._responded(rows[0], self.clock()), audience,
                              updates=updates.get(incident_id, []),
                              postmortem=postmortems[0] if postmortems else None)

    def updates_of(self, incident_ids: Sequence[str], *, audience: Audience
                   ) -> dict[str, list[Body]]:
        """The updates of several incidents (oldest first), in one query."""
        if not incident_ids:
            return {}
        with self.store.transaction() as tx:
            return _updates(tx, incident_ids, audience)

    def visible_ids(self, incident_ids: Collection[str], conditions: Conditions, *,
                    as_of: int) -> set[str] | None:
        """Of `incident_ids`, those that meet `conditions` (of `domain.visibility`) now.
        None while the list has not reached store position `as_of`: until then it could
        still show as visible an incident the store has since hidden."""
        if not incident_ids:
            return set()
        with self.store.transaction() as tx:
            # The position first: rows read after it are at least that recent.
            if self._position(tx) < as_of:
                return None
            ids = list(incident_ids)
            visible, params = where(conditions)
            rows = tx.execute(
                f"SELECT id FROM incidents WHERE {visible} "
                f"AND id IN ({', '.join('?' * len(ids))})",
                [*params, *ids],
            ).fetchall()
        return {str(r[0]) for r in rows}

    @staticmethod
    def _position(tx: Any) -> int:
        row = tx.execute(
            "SELECT position FROM projection_positions WHERE name = 'incident_list'"
        ).fetchone()
        return int(row[0]) if row else 0

    def summary(self, *, audience: Audience) -> dict[str, Any]:
        scope = SCOPES[audience]
        with self.store.transaction() as tx:
            rows = tx.execute(
                "SELECT dimension, key, count FROM summary_counts WHERE scope = ? AND count > 0",
                (scope,),
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for dimension, key, count in rows:
            counts.setdefault(str(dimension), {})[str(key)] = int(count)
        by_status = {s.value: counts.get("status", {}).get(s.value, 0) for s in Status}
        worst: dict[str, str] = {}
        for key in counts.get("service_severity", {}):
            service, _, severity = key.partition(SERVICE_SEPARATOR)
            current = worst.get(service)
            if current is None or _SEVERITY_ORDER.index(severity) < _SEVERITY_ORDER.index(
                    current):
                worst[service] = severity
        services = sorted(counts.get("service", {}))
        in_maintenance = counts.get("service_maintenance", {})
        active = sum(by_status[s.value] for s in ACTIVE_STATUSES)
        return {
            "total": sum(by_status.values()),
            "active": active,
            "resolved": by_status["resolved"] + by_status["post_incident"],
            "by_status": by_status,
            "by_severity": {s.value: counts.get("severity", {}).get(s.value, 0)
                            for s in Severity},
            "active_by_severity": {s.value: counts.get("active_severity", {}).get(s.value, 0)
                                   for s in Severity},
            "by_type": {t.value: counts.get("type", {}).get(t.value, 0) for t in IncidentType},
            "maintenance": {k: counts.get("maintenance", {}).get(k, 0)
                            for k in ("scheduled", "in_progress")},
            "services": [{"name": name, "state": worst.get(name, "maintenance" if name in
                                                           in_maintenance else "operational")}
                         for name in services],
        }
