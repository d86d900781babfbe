"""Queries over the read tables: what the list, detail and summary endpoints answer.

Visibility is decided here, once: `internal=False` (no reader token) sees public,
undeleted incidents and public fields only.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.values import ACTIVE_STATUSES, IncidentType, Severity, Status
from projections.base import ReadStore, load_list, micros, moment
from projections.incident_summary import SERVICE_SEPARATOR

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


_INCIDENT_COLUMNS = (
    "id, created_position, title, description, status, severity, incident_type, "
    "affected_services, affected_regions, start_time, resolved_at, public_message, "
    "internal_notes, is_public, rss_enabled, created_at, updated_at, version"
)


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return moment(us).isoformat().replace("+00:00", "Z")


def _incident(row: Sequence[Any], *, internal: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row[0],
        "title": row[2],
        "description": row[3],
        "status": row[4],
        "severity": row[5],
        "incident_type": row[6],
        "affected_services": load_list(row[7]),
        "affected_regions": load_list(row[8]),
        "start_time": _iso(row[9]),
        "resolved_at": _iso(row[10]),
        "public_message": row[11],
        "is_public": bool(row[13]),
        "rss_enabled": bool(row[14]),
        "created_at": _iso(row[15]),
        "updated_at": _iso(row[16]),
        "version": row[17],
    }
    if internal:
        body["internal_notes"] = row[12]
    return body


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


def _updates(tx: Any, incident_ids: Sequence[str], *, internal: bool
             ) -> dict[str, list[dict[str, Any]]]:
    rows = tx.execute(
        "SELECT incident_id, number, status, previous_status, message, public_message, "
        f"update_type, author, created_at FROM incident_updates WHERE incident_id IN "
        f"({', '.join('?' * len(incident_ids))}) ORDER BY incident_id, number",
        list(incident_ids),
    ).fetchall()
    found: dict[str, list[dict[str, Any]]] = {}
    for u in rows:
        found.setdefault(u[0], []).append({
            "number": u[1], "status": u[2], "previous_status": u[3],
            **({"message": u[4]} if internal else {}),
            "public_message": u[5], "update_type": u[6], "author": u[7],
            "created_at": _iso(u[8]),
        })
    return found


class IncidentQueries:
    def __init__(self, store: ReadStore) -> None:
        self.store = store
        self.like = "ILIKE" if store.dialect == "postgres" else "LIKE"
        self._totals = _TotalCache()

    def page_query(
        self, filters: ListFilters, *, internal: bool, limit: int, cursor: str | None = None
    ) -> tuple[str, list[Any]]:
        """The SQL of one page (limit + 1 rows, to know whether more follow)."""
        where, params = self._where(filters, internal)
        if cursor is not None:
            where.append("created_position < ?")
            params.append(decode_cursor(cursor))
        sql = (f"SELECT {_INCIDENT_COLUMNS} FROM incidents i WHERE {' AND '.join(where)} "
               "ORDER BY created_position DESC LIMIT ?")
        return sql, [*params, limit + 1]

    def list_incidents(
        self, filters: ListFilters, *, internal: bool, limit: int = 20, cursor: str | None = None
    ) -> Page:
        page_sql, page_params = self.page_query(filters, internal=internal, limit=limit,
                                                cursor=cursor)
        where, params = self._where(filters, internal)
        with self.store.transaction() as tx:
            rows = tx.execute(page_sql, page_params).fetchall()
            key = (filters, internal)
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
        next_cursor = encode_cursor(int(rows[-1][1])) if more and rows else None
        return Page([_incident(r, internal=internal) for r in rows], total, next_cursor)

    def _where(self, filters: ListFilters, internal: bool) -> tuple[list[str], list[Any]]:
        where = ["deleted = ?"]
        params: list[Any] = [False]
        if not internal:
            where.append("is_public = ?")
            params.append(True)
        for column, values in (("status", filters.status), ("severity", filters.severity),
                               ("incident_type", filters.incident_type)):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += list(values)
        for table, values in (("incident_services", filters.service),
                              ("incident_regions", filters.region)):
            if values:
                where.append(
                    f"EXISTS (SELECT 1 FROM {table} n WHERE n.incident_id = i.id "
                    f"AND n.name IN ({', '.join('?' * len(values))}))"
                )
                params += list(values)
        if filters.q:
            pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            where.append(f"(title {self.like} ? ESCAPE '\\' OR description {self.like} ? "
                         "ESCAPE '\\')")
            params += [pattern, pattern]
        if filters.since is not None:
            where.append("start_time >= ?")
            params.append(micros(filters.since))
        if filters.until is not None:
            where.append("start_time < ?")
            params.append(micros(filters.until))
        return where, params

    def get_incident(self, incident_id: str, *, internal: bool) -> dict[str, Any] | None:
        with self.store.transaction() as tx:
            row = tx.execute(
                f"SELECT {_INCIDENT_COLUMNS}, deleted FROM incidents WHERE id = ?",
                (incident_id,),
            ).fetchone()
            if row is None or row[18] or not (row[13] or internal):
                return None
            updates = _updates(tx, [incident_id], internal=internal)
        body = _incident(row, internal=internal)
        body["updates"] = updates.get(incident_id, [])
        return body

    def updates_of(self, incident_ids: Sequence[str], *, internal: bool
                   ) -> dict[str, list[dict[str, Any]]]:
        """The updates of several incidents (oldest first), in one query."""
        if not incident_ids:
            return {}
        with self.store.transaction() as tx:
            return _updates(tx, incident_ids, internal=internal)

    def public_ids(self, incident_ids: Collection[str], *, as_of: int) -> set[str] | None:
        """Of `incident_ids`, those a reader without a token may see now: public and not
        deleted. None while the list has not reached store position `as_of`: until then
        it could still show as public an incident the store has since made private."""
        if not incident_ids:
            return set()
        with self.store.transaction() as tx:
            # The position first: rows read after it are at least that recent.
            if self._position(tx) < as_of:
                return None
            ids = list(incident_ids)
            rows = tx.execute(
                "SELECT id FROM incidents WHERE is_public = ? AND deleted = ? "
                f"AND id IN ({', '.join('?' * len(ids))})",
                [True, False, *ids],
            ).fetchall()
        return {str(r[0]) for r in rows}

    @staticmethod
    def _position(tx: Any) -> int:
        row = tx.execute(
            "SELECT position FROM projection_positions WHERE name = 'incident_list'"
        ).fetchone()
        return int(row[0]) if row else 0

    def summary(self, *, internal: bool) -> dict[str, Any]:
        scope = "all" if internal else "public"
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
            "services": [{"name": name, "state": worst.get(name, "operational")}
                         for name in services],
        }
