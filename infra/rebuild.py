"""Rebuilding read models: replay the whole store once into tables built aside, then swap
them in with their positions in one transaction, so readers never see a half-built model
and the live projector simply carries on from the swapped-in positions.

Events are read outside the write transactions, so on SQLite the store's writers wait
only for the short transactions that apply a batch, and for the swap."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from infra.database import Database
from infra.projector import TRACKING, Positioned, Projector, analyze, apply_events
from projections.base import Cursor, Projection

log = logging.getLogger("product_status")

ASIDE = "__rebuild"
Progress = Callable[[int, int, float], None]


def progress_bar(label: str, stream: TextIO = sys.stderr) -> Progress:
    def show(done: int, total: int, rate: float) -> None:
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        stream.write(f"\r{label} [{bar:<30}] {share:6.1%} {done:>10,}/{total:,} events "
                     f"{rate:>9,.0f} events/s")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def _is_index(statement: str) -> bool:
    return statement.lstrip().upper().startswith(("CREATE INDEX", "CREATE UNIQUE INDEX"))


def rebuild(projector: Projector, live: Sequence[Projection],
            progress: Progress | None = None, batch_size: int = 5000) -> int:
    """Rebuilds the given read models in one pass over the store; returns the position
    they were rebuilt to."""
    database = projector.database
    aside = [type(projection)(suffix=ASIDE) for projection in live]
    with database.transaction(write=True) as cursor:
        for projection in aside:
            for table in projection.tables:
                cursor.execute(f"DROP TABLE IF EXISTS {projection.t(table)}")
            for statement in projection.create_statements(database.dialect):
                if not _is_index(statement):  # indexes come after the bulk load
                    cursor.execute(statement)
    head = projector.event_log.last_position()
    position, started, applied = 0, time.monotonic(), 0
    while True:
        while events := projector.read_events(position, batch_size):
            with database.transaction(write=True, pipeline=True) as cursor:
                _apply(cursor, aside, events)
            position = events[-1].position
            applied += len(events)
            if progress and position < head:
                progress(position, head, applied / max(time.monotonic() - started, 1e-9))
        if _swap_in(database, live, aside, position):
            break
    analyze(database, live)
    if progress:
        progress(head, head, applied / max(time.monotonic() - started, 1e-9))
    return position


def rebuild_changed(projector: Projector, changed: Sequence[Projection]) -> None:
    """Rebuilds, in one pass, the read models whose tables were made in another shape
    (see `Projector.create_tables`), under the schema lock the caller holds: of several
    processes starting at once, the first rebuilds and the others then find the new
    shape recorded. Until the swap, running processes answer from the old tables."""
    if not changed:
        return
    started = time.monotonic()
    position = rebuild(projector, changed)
    for projection in changed:
        log.warning("read model %s: its tables changed shape (now %s); rebuilt from the "
                    "event store to position %d in %.1f s", projection.name,
                    projection.shape(projector.database.dialect), position,
                    time.monotonic() - started)


def _swap_in(database: Database, live: Sequence[Projection], aside: Sequence[Projection],
             position: int) -> bool:
    """Swaps the tables built aside in, with their position, unless a live projector got
    further than `position` meanwhile (then the caller reads on: readers must never see
    a read model go back in time)."""
    with database.transaction(write=True) as cursor:
        reached = [_lock_position(cursor, database, projection.name) for projection in live]
        if max(reached, default=0) > position:
            return False
        for old, new in zip(live, aside, strict=True):
            _swap(cursor, database, old, new)
            cursor.execute(f"UPDATE {TRACKING} SET position = ?, shape = ? WHERE name = ?",
                           (position, old.shape(database.dialect), old.name))
    return True


def _apply(cursor: Cursor, projections: Sequence[Projection],
           events: Sequence[Positioned]) -> None:
    for projection in projections:
        apply_events(cursor, projection, events)


def _lock_position(cursor: Cursor, database: Database, name: str) -> int:
    """Waits for a live projector's batch to finish and keeps it out until the swap;
    returns the live position."""
    lock = " FOR UPDATE" if database.dialect == "postgres" else ""
    row = cursor.execute(f"SELECT position FROM {TRACKING} WHERE name = ?{lock}",
                         (name,)).fetchone()
    return int(row[0]) if row else 0


def _swap(cursor: Cursor, database: Database, live: Projection, aside: Projection) -> None:
    for table in live.tables:
        cursor.execute(f"DROP TABLE IF EXISTS {live.t(table)}")
        cursor.execute(f"ALTER TABLE {aside.t(table)} RENAME TO {live.t(table)}")
        if database.dialect == "postgres":
            cursor.execute(f"ALTER INDEX IF EXISTS {aside.t(table)}_pkey "
                           f"RENAME TO {live.t(table)}_pkey")
    for statement in live.create_statements(database.dialect):
        if _is_index(statement):
            cursor.execute(statement)
