"""Where each follower of the event store is: one row (name, position) per follower.

Two tables keep them, by what "done" means for the follower:

* `projection_positions`: read models, whose rows commit with their position. Its minimum
  is what the read barrier waits for ("every read model reached N"). Beside each position
  is the shape of the read model's tables (`Projection.shape`) the rows were written in.
* `relay_positions`: followers that deliver outside the database (the NATS relay, and the
  integrations to come). They are kept apart so that one held back by an outage of its
  destination never holds back reads.

A position only moves by compare-and-set (`advance`): from the position the follower
read to the last position of the batch it finished. A batch that does not start where
the row says was done (or is being done) by someone else, and is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from infra.database import SCHEMA_LOCK, Database
from projections.base import Cursor

READ_MODELS = "projection_positions"
DELIVERIES = "relay_positions"


class PositionRefused(Exception):
    """A batch that does not start at the follower's recorded position: it was (or is
    being) done already, so it is refused and whatever it wrote is rolled back."""


class Positions:
    """One positions table."""

    def __init__(self, database: Database, table: str) -> None:
        assert table in (READ_MODELS, DELIVERIES), table
        self.database = database
        self.table = table

    def create(self, names: Iterable[str], *, schema_locked: bool = False) -> None:
        """Creates the table and the followers' rows if missing, one statement a
        transaction. On PostgreSQL the table is created under the schema lock, which the
        caller may hold already (`schema_locked`): IF NOT EXISTS is not safe against a
        concurrent CREATE of the same name."""
        with self.database.transaction(write=True) as cursor:
            if self.database.dialect == "postgres" and not schema_locked:
                cursor.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            shape = ", shape TEXT" if self.table == READ_MODELS else ""
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {self.table} "
                           f"(name TEXT PRIMARY KEY, position BIGINT NOT NULL{shape})")
            if shape and not _has_column(cursor, self.database, self.table, "shape"):
                # Made before shapes were recorded: the read models' shapes are unknown.
                cursor.execute(f"ALTER TABLE {self.table} ADD COLUMN shape TEXT")
        for name in names:
            self.ensure(name)

    def ensure(self, name: str) -> None:
        """Gives `name` a row at position 0 unless it has one (the table exists)."""
        with self.database.transaction(write=True) as cursor:
            cursor.execute(f"INSERT INTO {self.table} (name, position) VALUES (?, 0) "
                           "ON CONFLICT (name) DO NOTHING", (name,))

    def shapes(self) -> dict[str, str | None]:
        """The recorded shape of each read model's tables (None: not known)."""
        assert self.table == READ_MODELS
        with self.database.transaction() as cursor:
            rows = cursor.execute(f"SELECT name, shape FROM {self.table}").fetchall()
        return {str(name): shape for name, shape in rows}

    def record_shape(self, name: str, shape: str) -> None:
        """Records the shape of `name`'s tables, giving it a row at position 0 if it has
        none (its tables were just created, empty)."""
        assert self.table == READ_MODELS
        with self.database.transaction(write=True) as cursor:
            cursor.execute(f"INSERT INTO {self.table} (name, position, shape) VALUES (?, 0, ?) "
                           "ON CONFLICT (name) DO UPDATE SET shape = excluded.shape",
                           (name, shape))

    def load(self, name: str) -> int:
        with self.database.transaction() as cursor:
            row = cursor.execute(f"SELECT position FROM {self.table} WHERE name = ?",
                                 (name,)).fetchone()
        return int(row[0]) if row else 0

    def all(self) -> dict[str, int]:
        with self.database.transaction() as cursor:
            rows = cursor.execute(f"SELECT name, position FROM {self.table}").fetchall()
        return {str(name): int(position) for name, position in rows}

    def minimum(self, names: Iterable[str]) -> int:
        """The lowest position among these followers (0 if one has no row yet)."""
        wanted = list(names)
        found = {name: position for name, position in self.all().items() if name in wanted}
        return min((found.get(name, 0) for name in wanted), default=0)

    def advance(self, cursor: Cursor, name: str, start: int, end: int) -> None:
        advance(cursor, self.table, name, start, end)


def _has_column(cursor: Cursor, database: Database, table: str, column: str) -> bool:
    if database.dialect == "postgres":
        return cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? AND column_name = ?", (table, column)).fetchone() is not None
    return any(row[1] == column
               for row in cursor.execute(f"PRAGMA table_info({table})").fetchall())


def table_exists(cursor: Cursor, database: Database, table: str) -> bool:
    if database.dialect == "postgres":
        found = cursor.execute("SELECT to_regclass(?)", (table,)).fetchone()
        return found is not None and found[0] is not None
    return cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (table,)).fetchone() is not None


def advance(cursor: Cursor, table: str, name: str, start: int, end: int) -> None:
    """Moves `name` from `start` to `end` in the caller's transaction, or raises
    PositionRefused. On PostgreSQL the row stays locked until the transaction ends: a
    second worker's batch waits, then finds the position moved."""
    # RETURNING, not rowcount: in pipeline mode the count is known only once fetched.
    updated = cursor.execute(
        f"UPDATE {table} SET position = ? WHERE name = ? AND position = ? "
        "AND ? > ? RETURNING position",
        (end, name, start, end, start),
    ).fetchone()
    if updated is None:
        raise PositionRefused(f"{name}: position {start} -> {end} was already recorded")
