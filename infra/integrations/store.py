"""Where integrations live: their settings and delivery state (`integrations`), every
delivery attempt (`integration_deliveries`), and each one's position in the event store
(a row of the delivering followers' positions table, named after the integration).

Settings are not incident events: they are configuration of this installation, kept in
tables of their own. Each change bumps the integration's `revision`, which is how the
deliverers of every process notice it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.database import Database, create_schema
from infra.event_log import EventLog
from infra.integrations.config import (
    SEVERITY_RANK,
    DeliveryState,
    Filters,
    Integration,
    from_settings,
)
from projections.base import micros, moment

POSITIONS = "relay_positions"  # the delivering followers' positions (see follower_positions)
# Lag is counted exactly over this many pending events; beyond them every event counts.
LAG_SCAN = 10_000
_COLUMNS = ("id, kind, name, enabled, settings, secret, created_at, updated_at, revision, "
            "last_delivered_at, failing_since, next_attempt_at, failures, disabled_reason")


@dataclass(frozen=True)
class Attempt:
    """One try at delivering one message."""

    event_id: str
    position: int | None
    type: str
    attempt: int
    at: datetime
    outcome: str  # "delivered" | "failed"
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "position": self.position, "type": self.type,
                "attempt": self.attempt, "at": self.at, "outcome": self.outcome,
                "status_code": self.status_code, "error": self.error,
                "duration_ms": self.duration_ms}


def _us(value: datetime | None) -> int | None:
    return None if value is None else micros(value)


def _at(value: Any) -> datetime | None:
    return None if value is None else moment(int(value))


class IntegrationStore:
    def __init__(self, database: Database, event_log: EventLog) -> None:
        self.database = database
        self.event_log = event_log

    def create_tables(self) -> None:
        """Creates what is missing, one statement a transaction (see Projector)."""
        serial = ("INTEGER PRIMARY KEY AUTOINCREMENT" if self.database.dialect == "sqlite"
                  else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        statements = [
            f"CREATE TABLE IF NOT EXISTS {POSITIONS} "
            "(name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
            """CREATE TABLE IF NOT EXISTS integrations (
                id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
                enabled INTEGER NOT NULL, settings TEXT NOT NULL, secret TEXT,
                created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
                revision BIGINT NOT NULL, last_delivered_at BIGINT, failing_since BIGINT,
                next_attempt_at BIGINT, failures INTEGER NOT NULL,
                disabled_reason TEXT)""",
            f"""CREATE TABLE IF NOT EXISTS integration_deliveries (
                id {serial}, integration_id TEXT NOT NULL, event_id TEXT NOT NULL,
                position BIGINT, type TEXT NOT NULL, attempt INTEGER NOT NULL,
                at BIGINT NOT NULL, outcome TEXT NOT NULL, status_code INTEGER,
                error TEXT, duration_ms DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS integration_deliveries_newest "
            "ON integration_deliveries (integration_id, id)",
        ]
        create_schema(self.database, statements)

    # Settings.

    def add(self, integration: Integration) -> int:
        """Stores a new integration, positioned at the store's head (it receives what is
        stored after its creation); returns that position."""
        head = self.event_log.last_position()
        with self.database.transaction(write=True) as cursor:
            cursor.execute(
                f"INSERT INTO integrations ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, 0, NULL)",
                (integration.id, integration.kind, integration.name, int(integration.enabled),
                 json.dumps(integration.settings()), integration.secret,
                 micros(integration.created_at), micros(integration.updated_at),
                 integration.revision))
            cursor.execute(f"INSERT INTO {POSITIONS} (name, position) VALUES (?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                           (integration.follower_name, head))
        return head

    def get(self, integration_id: str) -> Integration | None:
        with self.database.transaction() as cursor:
            row = cursor.execute(f"SELECT {_COLUMNS} FROM integrations WHERE id = ?",
                                 (integration_id,)).fetchone()
        return None if row is None else _integration(row)

    def all(self) -> list[Integration]:
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT {_COLUMNS} FROM integrations ORDER BY created_at, id").fetchall()
        return [_integration(row) for row in rows]

    def revisions(self) -> dict[str, int]:
        """Each integration's revision: what deliverers poll to notice changes."""
        with self.database.transaction() as cursor:
            rows = cursor.execute("SELECT id, revision FROM integrations").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def save(self, integration: Integration, *, resume: bool = False) -> Integration:
        """Stores changed settings (and enabled), bumping the revision. `resume` clears
        the failure state so delivery starts again now, where it stopped."""
        sql = ("UPDATE integrations SET name = ?, enabled = ?, settings = ?, secret = ?, "
               "updated_at = ?, revision = revision + 1")
        if resume:
            sql += (", failing_since = NULL, next_attempt_at = NULL, failures = 0, "
                    "disabled_reason = NULL")
        with self.database.transaction(write=True) as cursor:
            cursor.execute(sql + " WHERE id = ?", (
                integration.name, int(integration.enabled), json.dumps(integration.settings()),
                integration.secret, micros(integration.updated_at), integration.id))
        found = self.get(integration.id)
        assert found is not None
        return found

    def remove(self, integration_id: str) -> bool:
        with self.database.transaction(write=True) as cursor:
            gone = cursor.execute("DELETE FROM integrations WHERE id = ? RETURNING id",
                                  (integration_id,)).fetchone()
            cursor.execute("DELETE FROM integration_deliveries WHERE integration_id = ?",
                           (integration_id,))
            cursor.execute(f"DELETE FROM {POSITIONS} WHERE name = ?", (integration_id,))
        return gone is not None

    # Positions.

    def position(self, integration_id: str) -> int:
        with self.database.transaction() as cursor:
            row = cursor.execute(f"SELECT position FROM {POSITIONS} WHERE name = ?",
                                 (integration_id,)).fetchone()
        return int(row[0]) if row else 0

    def head(self) -> int:
        return self.event_log.last_position()

    def replay(self, integration_id: str, after: int) -> bool:
        """Moves the integration back (or on) to `after` and makes the next attempt due
        now; the active deliverer notices the new revision and carries on from there."""
        with self.database.transaction(write=True) as cursor:
            found = cursor.execute(
                "UPDATE integrations SET revision = revision + 1, next_attempt_at = NULL, "
                "failures = 0 WHERE id = ? RETURNING id", (integration_id,)).fetchone()
            if found is None:
                return False
            cursor.execute(f"UPDATE {POSITIONS} SET position = ? WHERE name = ?",
                           (after, integration_id))
        return True

    # Delivery.

    def record(self, integration_id: str, attempts: Sequence[Attempt],
               state: DeliveryState | None = None, *, disable: bool = False) -> None:
        """Keeps attempts and the delivery state together. `disable` turns the integration
        off (a new revision, so every deliverer stops it)."""
        with self.database.transaction(write=True, pipeline=True) as cursor:
            # An integration removed meanwhile keeps no attempts.
            if cursor.execute("SELECT 1 FROM integrations WHERE id = ?",
                              (integration_id,)).fetchone() is None:
                return
            if attempts:
                cursor.executemany(
                    "INSERT INTO integration_deliveries (integration_id, event_id, position, "
                    "type, attempt, at, outcome, status_code, error, duration_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(integration_id, a.event_id, a.position, a.type, a.attempt, micros(a.at),
                      a.outcome, a.status_code, a.error, a.duration_ms) for a in attempts])
            if state is not None:
                off = ", enabled = 0, revision = revision + 1" if disable else ""
                cursor.execute(
                    "UPDATE integrations SET last_delivered_at = ?, failing_since = ?, "
                    f"next_attempt_at = ?, failures = ?, disabled_reason = ?{off} WHERE id = ?",
                    (_us(state.last_delivered_at), _us(state.failing_since),
                     _us(state.next_attempt_at), state.failures, state.disabled_reason,
                     integration_id))

    def deliveries(self, integration_id: str, before: int | None, limit: int
                   ) -> tuple[list[Attempt], int | None]:
        """Attempts newest first, `limit` at a time; the second value is where the next
        page starts (None: no more)."""
        sql = ("SELECT id, event_id, position, type, attempt, at, outcome, status_code, error, "
               "duration_ms FROM integration_deliveries WHERE integration_id = ?")
        params: list[Any] = [integration_id]
        if before is not None:
            sql += " AND id < ?"
            params.append(before)
        with self.database.transaction() as cursor:
            rows = cursor.execute(sql + " ORDER BY id DESC LIMIT ?",
                                  [*params, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [Attempt(str(r[1]), None if r[2] is None else int(r[2]), str(r[3]), int(r[4]),
                         moment(int(r[5])), str(r[6]), None if r[7] is None else int(r[7]),
                         r[8], float(r[9])) for r in rows]
        return items, (int(rows[-1][0]) if more and rows else None)

    def lag(self, integration: Integration, position: int) -> int:
        """Events after `position` that match the integration's filters, as their
        incidents stand now in the incident list (an incident it has not projected yet
        counts). Exact over the next LAG_SCAN events; every event beyond them counts."""
        filters = integration.filters
        pending = self.event_log.read(position, LAG_SCAN, filters.event_types)
        if not pending:
            return 0
        taken = self._incidents_taken(filters, {e.subject for e in pending})
        lag = sum(1 for e in pending if taken.get(e.subject, True))
        if len(pending) == LAG_SCAN:
            lag += max(0, self.event_log.last_position() - pending[-1].position)
        return lag

    def _incidents_taken(self, filters: Filters, ids: set[str]) -> dict[str, bool]:
        """Whether each incident (as the incident list has it now) passes the filters."""
        wanted = [s.value for s, rank in SEVERITY_RANK.items()
                  if rank >= SEVERITY_RANK[filters.min_severity]]
        found: dict[str, bool] = {}
        listed = sorted(ids)
        with self.database.transaction() as cursor:
            for start in range(0, len(listed), 500):
                chunk = listed[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = cursor.execute(
                    "SELECT id, severity, is_public, deleted FROM incidents "
                    f"WHERE id IN ({marks})", chunk).fetchall()
                services: dict[str, set[str]] = {}
                if filters.services:
                    for incident_id, name in cursor.execute(
                            "SELECT incident_id, name FROM incident_services "
                            f"WHERE incident_id IN ({marks})", chunk).fetchall():
                        services.setdefault(str(incident_id), set()).add(str(name))
                for incident_id, severity, is_public, deleted in rows:
                    found[str(incident_id)] = (
                        severity in wanted
                        and (filters.include_internal or (bool(is_public) and not deleted))
                        and (not filters.services
                             or bool(services.get(str(incident_id), set())
                                     & set(filters.services))))
        return found


def _integration(row: Sequence[Any]) -> Integration:
    state = DeliveryState(last_delivered_at=_at(row[9]), failing_since=_at(row[10]),
                          next_attempt_at=_at(row[11]), failures=int(row[12]),
                          disabled_reason=row[13])
    return from_settings(
        str(row[0]), row[1], str(row[2]), bool(row[3]), json.loads(row[4]),
        secret=row[5], created_at=moment(int(row[6])), updated_at=moment(int(row[7])),
        revision=int(row[8]), state=state)
