"""Named bearer tokens: those of API_TOKENS, and those made with `product-status tokens
create`, kept in the `api_tokens` table as SHA-256 digests only (the token itself is shown
once). Every process checks a presented token against the table at most
`CACHE_SECONDS` after its last look, so a revocation is refused everywhere within that."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from infra.database import Database, create_schema
from infra.token_settings import ROLES, ConfiguredToken, Role, check_token_name

TABLE = "api_tokens"
CACHE_SECONDS = 2.0  # a revoked token is refused by every process within this (and < 5 s)
_CACHE_ENTRIES = 10_000
_PREFIX = "pst_"


class TokenError(Exception):
    """A token cannot be created or revoked as asked; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who presented a valid token: its name (the actor of its commands) and role."""

    name: str
    role: Role


@dataclass(frozen=True)
class StoredToken:
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or moment < self.expires_at)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class TokenStore:
    """The `api_tokens` table: one row per token made, revoked ones kept for the record."""

    def __init__(self, database: Database, clock: Callable[[], datetime]) -> None:
        self.database = database
        self.clock = clock

    def create_table(self) -> None:
        statements = [
            f"CREATE TABLE IF NOT EXISTS {TABLE} (token_sha256 TEXT PRIMARY KEY, "
            "name TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL, "
            "expires_at TEXT, revoked_at TEXT)",
            # One live token per name: the name is who the audit log says acted.
            f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_live_name ON {TABLE} (name) "
            "WHERE revoked_at IS NULL",
        ]
        create_schema(self.database, statements)

    def create(self, name: str, role: str, expires_days: int | None = None,
               reserved: Sequence[str] = ()) -> tuple[StoredToken, str]:
        """Makes a token; answers its record and the token itself (never stored)."""
        try:
            check_token_name(name)
        except ValueError as error:
            raise TokenError(str(error)) from None
        if role not in ROLES:
            raise TokenError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if name in reserved:
            raise TokenError(f"API_TOKENS already has a token named {name!r}")
        now = self.clock()
        expires = None if expires_days is None else now + timedelta(days=expires_days)
        token = _PREFIX + secrets.token_urlsafe(32)
        with self.database.transaction(write=True) as cursor:
            live = cursor.execute(f"SELECT 1 FROM {TABLE} WHERE name = ? AND revoked_at IS NULL",
                                  (name,)).fetchone()
            if live is not None:
                raise TokenError(f"a token named {name!r} exists; revoke it first")
            cursor.execute(
                f"INSERT INTO {TABLE} (token_sha256, name, role, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest(token), name, role, now.isoformat(),
                 None if expires is None else expires.isoformat()),
            )
        return StoredToken(name, role, now, expires, None), token

    def list(self) -> list[StoredToken]:
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT name, role, created_at, expires_at, revoked_at FROM {TABLE} "
                "ORDER BY created_at, name").fetchall()
        return [StoredToken(r[0], r[1], _moment(r[2]), _moment(r[3]), _moment(r[4]))  # type: ignore[arg-type]
                for r in rows]

    def revoke(self, name: str) -> bool:
        """Revokes the live token of that name; False if there is none."""
        with self.database.transaction(write=True) as cursor:
            changed: int = cursor.execute(
                f"UPDATE {TABLE} SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (self.clock().isoformat(), name)).rowcount
        return changed > 0

    def find(self, token_sha256: str) -> StoredToken | None:
        with self.database.transaction() as cursor:
            row = cursor.execute(
                f"SELECT name, role, created_at, expires_at, revoked_at FROM {TABLE} "
                "WHERE token_sha256 = ?", (token_sha256,)).fetchone()
        if row is None:
            return None
        return StoredToken(row[0], row[1], _moment(row[2]), _moment(row[3]),  # type: ignore[arg-type]
                           _moment(row[4]))


class Authenticator:
    """Answers who a presented token is, or None. Configured tokens are compared by digest
    in constant time; stored ones are looked up by digest and remembered for at most
    `cache_seconds` (also a miss, so a flood of bad tokens costs one query each per
    period at most per distinct token)."""

    def __init__(self, configured: Sequence[ConfiguredToken], store: TokenStore,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self._configured = [(digest(t.secret).encode(), Principal(t.name, t.role))
                            for t in configured]
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, StoredToken | None]] = {}
        self._lock = threading.Lock()

    def configured(self, token: str) -> Principal | None:
        """Whether it is one of API_TOKENS; no I/O."""
        presented = digest(token).encode()
        found = None
        for known, principal in self._configured:  # no early exit: constant time
            if hmac.compare_digest(known, presented):
                found = principal
        return found

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(known, principal) from memory: known is False when the table must be asked."""
        key = digest(token)
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or time.monotonic() - entry[0] > self.cache_seconds:
            return False, None
        return True, self._valid(entry[1])

    def lookup(self, token: str) -> Principal | None:
        """Asks the table (blocking I/O) and remembers the answer."""
        key = digest(token)
        stored = self.store.find(key)
        with self._lock:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = (time.monotonic(), stored)
        return self._valid(stored)

    def authenticate(self, token: str) -> Principal | None:
        principal = self.configured(token)
        if principal is not None:
            return principal
        known, principal = self.cached(token)
        return principal if known else self.lookup(token)

    def _valid(self, stored: StoredToken | None) -> Principal | None:
        if stored is None or not stored.valid_at(self.store.clock()):
            return None
        return Principal(stored.name, stored.role)
