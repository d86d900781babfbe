"""Tamper evidence: a hash chain over the stored events, kept beside them in `audit_chain`
(one row per store position) and written in the transaction that stores them
(infra/chained_store.py).

Each link is `sha256(previous link || position, incident id, version, type, document)`,
each part length-prefixed; the first link follows 32 zero bytes. `verify` walks the store
and the chain together in position order and names the first position whose event was
altered (its link no longer matches), removed (a link without its event) or inserted (an
event without a link). Each row also keeps the event's actor (its document's `actor`),
so that an actor's events are found without reading every document; a row whose actor
differs from its document's counts as altered. The head (`position`, `sha256`) can be
recorded elsewhere: a chain rewritten from some position on no longer has that head.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from commands.cloudevents import ACTOR_EXTENSION
from infra.database import Database, create_schema
from projections.base import Cursor

if TYPE_CHECKING:  # infra.event_log finds actors through this module's table
    from infra.event_log import EventLog

TABLE = "audit_chain"
GENESIS = "0" * 64
_BATCH = 1000


@dataclass(frozen=True)
class Head:
    position: int
    sha256: str


@dataclass(frozen=True)
class Finding:
    """The first place where the store and its chain disagree."""

    kind: Literal["altered", "removed", "inserted", "head"]
    position: int

    def describe(self) -> str:
        what = {
            "altered": "the event at this position was altered (its link does not match)",
            "removed": "the event at this position was removed (its link remains)",
            "inserted": "the event at this position was inserted (it has no link)",
            "head": "the chain no longer has the recorded head at this position",
        }[self.kind]
        return f"{self.kind} at position {self.position}: {what}"


@dataclass(frozen=True)
class Verdict:
    checked: int  # events whose links matched
    head: Head
    finding: Finding | None


def link(previous: str, position: int, subject: str, version: int, kind: str,
         document: bytes) -> str:
    digest = hashlib.sha256(bytes.fromhex(previous))
    for part in (str(position).encode(), subject.encode(), str(version).encode(),
                 kind.encode(), document):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def create_statements(dialect: str) -> list[str]:
    """The chain, and the events' actors beside their links (GET /api/v1/events?actor=
    finds an actor's events through them)."""
    kind = "BIGINT" if dialect == "postgres" else "INTEGER"
    return [f"CREATE TABLE IF NOT EXISTS {TABLE} (position {kind} PRIMARY KEY, "
            "sha256 TEXT NOT NULL, actor TEXT)",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_actor ON {TABLE} (actor, position)"]


def actor_of(document: bytes) -> str | None:
    """The `actor` extension attribute of a stored document (None before actors)."""
    try:
        found = json.loads(document).get(ACTOR_EXTENSION)
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def head_of(cursor: Any) -> Head:
    """The chain's last link (GENESIS at position 0 for an empty chain); `cursor` may be
    eventsourcing's (rows as dicts on PostgreSQL) or ours."""
    cursor.execute(f"SELECT position, sha256 FROM {TABLE} ORDER BY position DESC LIMIT 1")
    row = cursor.fetchone()
    if row is None:
        return Head(0, GENESIS)
    if isinstance(row, dict):
        return Head(int(row["position"]), str(row["sha256"]))
    return Head(int(row[0]), str(row[1]))


def links_for(previous: str, events: Sequence[tuple[int, str, int, str, bytes]]
              ) -> list[tuple[int, str, str | None]]:
    """The rows of newly stored events (position order), following `previous`:
    (position, link, actor)."""
    found = []
    for position, subject, version, kind, document in sorted(events, key=lambda e: e[0]):
        previous = link(previous, position, subject, version, kind, bytes(document))
        found.append((position, previous, actor_of(bytes(document))))
    return found


INSERT = f"INSERT INTO {TABLE} (position, sha256, actor) VALUES (?, ?, ?)"


def read_head(database: Database) -> Head:
    with database.transaction() as cursor:
        return head_of(cursor)


def start_chain(log: EventLog) -> None:
    """Creates the table; a store that has events but no chain yet (made before the chain
    existed) gets its links now, with writers held off."""
    database = log.database
    create_schema(database, create_statements(database.dialect))
    with database.transaction(write=True) as cursor:
        if database.dialect == "postgres":
            cursor.execute(f"LOCK TABLE {log.table} IN EXCLUSIVE MODE")
        if cursor.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchone() is not None:
            return
        previous, after = GENESIS, 0
        while events := _events(cursor, log, after):
            links = links_for(previous, events)
            cursor.executemany(INSERT, links)
            previous, after = links[-1][1], links[-1][0]


def _events(cursor: Cursor, log: EventLog, after: int
            ) -> list[tuple[int, str, int, str, bytes]]:
    column = log.position_column
    rows = cursor.execute(
        f"SELECT {column}, originator_id, originator_version, topic, state FROM "
        f"{log.table} WHERE {column} > ? ORDER BY {column} LIMIT ?",
        (after, _BATCH)).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2]), str(r[3]), bytes(r[4])) for r in rows]


def _links(cursor: Cursor, after: int) -> list[tuple[int, str, str | None]]:
    rows = cursor.execute(f"SELECT position, sha256, actor FROM {TABLE} WHERE position > ? "
                          "ORDER BY position LIMIT ?", (after, _BATCH)).fetchall()
    return [(int(r[0]), str(r[1]), r[2]) for r in rows]


def _merged(log: EventLog) -> Iterator[tuple[int, Any, Any]]:
    """(position, event or None, chain row or None) for every position either side has."""
    events: deque[tuple[int, str, int, str, bytes]] = deque()
    links: deque[tuple[int, str, str | None]] = deque()
    after_event = after_link = 0
    events_done = links_done = False
    while True:
        with log.database.transaction() as cursor:
            if not events and not events_done:
                events = deque(_events(cursor, log, after_event))
                events_done = len(events) < _BATCH
            if not links and not links_done:
                links = deque(_links(cursor, after_link))
                links_done = len(links) < _BATCH
        if not events and not links:
            return
        next_event = events[0][0] if events else None
        next_link = links[0][0] if links else None
        position = min(p for p in (next_event, next_link) if p is not None)
        event = events.popleft() if next_event == position else None
        found = links.popleft() if next_link == position else None
        if event is not None:
            after_event = position
        if found is not None:
            after_link = position
        yield position, event, found


def verify(log: EventLog, expected: Head | None = None) -> Verdict:
    """Walks store and chain; the first disagreement, if any. With `expected` (a head
    recorded earlier), also whether the chain still has that link at that position."""
    previous, checked, head = GENESIS, 0, Head(0, GENESIS)
    seen_expected = expected is None or expected.position == 0
    for position, event, found in _merged(log):
        if event is None:
            return Verdict(checked, head, Finding("removed", position))
        if found is None:
            return Verdict(checked, head, Finding("inserted", position))
        _, sha, actor = found
        if link(previous, *event) != sha or actor != actor_of(event[4]):
            return Verdict(checked, head, Finding("altered", position))
        previous, checked, head = sha, checked + 1, Head(position, sha)
        if expected is not None and position == expected.position:
            if sha != expected.sha256:
                return Verdict(checked, head, Finding("head", position))
            seen_expected = True
    if not seen_expected:
        assert expected is not None
        return Verdict(checked, head, Finding("head", expected.position))
    return Verdict(checked, head, None)
