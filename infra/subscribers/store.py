"""Where subscribers live: mutable tables only, never the event store.

`subscribers` holds each address, its services, and the hashes of its two tokens (confirm,
unsubscribe; each found only through its own column, so neither can do the other's work);
`subscriber_receipts` holds, per subscriber and event, that the mail was accepted (no
address in it). Erasure and unsubscribing delete both rows, so nothing of the address is
left in a table; nothing about subscribers is ever stored as an event.

A token is `secrets.token_urlsafe(32)`; only its SHA-256 is stored. The unsubscribe token
is written into every mail, so it is made from the subscriber's own random key (kept in
its row, destroyed with it) rather than kept in plain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from infra.database import Database, create_schema
from infra.event_log import EventLog
from infra.follower_positions import DELIVERIES
from projections.base import micros, moment

FOLLOWER = "subscribers"  # the name of the subscribers' mail follower (position, lease)
CONFIRM_TTL = timedelta(days=7)
CONFIRM_EVERY = timedelta(hours=1)  # at most one confirmation message per address
_COLUMNS = ("id, email, services, pending_services, created_at, confirmed_at, "
            "confirmed_position, confirm_hash, confirm_expires_at, confirm_sent_at, "
            "unsubscribe_hash, mail_key")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def unsubscribe_token(mail_key: str) -> str:
    """The subscriber's unsubscribe token, made from its key (the same in every mail)."""
    return hmac.new(bytes.fromhex(mail_key), b"unsubscribe", hashlib.sha256).hexdigest()


def normal_address(address: str) -> str:
    """One row per mailbox: the domain is case-insensitive (the local part is the mail
    server's to interpret, RFC 5321, so it is kept as written)."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


@dataclass(frozen=True)
class Subscriber:
    id: str
    email: str
    services: tuple[str, ...]
    created_at: datetime
    confirmed_at: datetime | None
    confirmed_position: int | None
    mail_key: str

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None

    def takes(self, services: Sequence[str]) -> bool:
        """Whether an incident affecting `services` concerns this subscriber."""
        return not self.services or any(s in self.services for s in services)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "services": list(self.services),
                "confirmed": self.confirmed, "created_at": self.created_at,
                "confirmed_at": self.confirmed_at}


@dataclass(frozen=True)
class Confirmation:
    """A confirmation message to send: to whom, and the token its link carries."""

    email: str
    token: str


def _subscriber(row: Sequence[Any]) -> Subscriber:
    return Subscriber(
        id=str(row[0]), email=str(row[1]), services=tuple(json.loads(row[2])),
        created_at=moment(int(row[4])),
        confirmed_at=None if row[5] is None else moment(int(row[5])),
        confirmed_position=None if row[6] is None else int(row[6]), mail_key=str(row[11]))


class SubscriberStore:
    def __init__(self, database: Database, event_log: EventLog,
                 clock: Callable[[], datetime]) -> None:
        self.database = database
        self.event_log = event_log
        self.clock = clock

    def create_tables(self) -> None:
        """Creates what is missing (under the caller's schema lock); the mail follower
        starts at the store's head, as an integration does."""
        statements = [
            """CREATE TABLE IF NOT EXISTS subscribers (
                id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, services TEXT NOT NULL,
                pending_services TEXT, created_at BIGINT NOT NULL, confirmed_at BIGINT,
                confirmed_position BIGINT, confirm_hash TEXT UNIQUE,
                confirm_expires_at BIGINT, confirm_sent_at BIGINT,
                unsubscribe_hash TEXT NOT NULL UNIQUE, mail_key TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS subscriber_receipts (
                subscriber_id TEXT NOT NULL, event_id TEXT NOT NULL,
                position BIGINT NOT NULL, sent_at BIGINT NOT NULL,
                PRIMARY KEY (subscriber_id, event_id))""",
            "CREATE INDEX IF NOT EXISTS subscriber_receipts_event "
            "ON subscriber_receipts (event_id)",
            "CREATE INDEX IF NOT EXISTS subscriber_receipts_position "
            "ON subscriber_receipts (position)",
        ]
        create_schema(self.database, statements)
        head = self.event_log.last_position()
        with self.database.transaction(write=True) as cursor:
            cursor.execute(f"INSERT INTO {DELIVERIES} (name, position) VALUES (?, ?) "
                           "ON CONFLICT (name) DO NOTHING", (FOLLOWER, head))

    # Signing up.

    def subscribe(self, email: str, services: Sequence[str]) -> Confirmation | None:
        """Records a sign-up waiting for confirmation. A confirmation is returned to send
        unless one went to this address in the last hour; for a confirmed address the
        services chosen take effect only once confirmed again."""
        now = self.clock()
        address = normal_address(email)
        token = new_token()
        chosen = json.dumps(sorted(set(services)))
        expires, resend = micros(now + CONFIRM_TTL), micros(now - CONFIRM_EVERY)
        with self.database.transaction(write=True) as cursor:
            # Sign-ups never confirmed are forgotten once their link expired.
            cursor.execute("DELETE FROM subscribers WHERE confirmed_at IS NULL "
                           "AND confirm_expires_at <= ?", (micros(now),))
            row = cursor.execute("SELECT id, confirm_sent_at FROM subscribers WHERE email = ?",
                                 (address,)).fetchone()
            if row is None:
                key = secrets.token_hex(32)
                cursor.execute(
                    f"INSERT INTO subscribers ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING "
                    "RETURNING id",
                    (str(uuid.uuid4()), address, "[]", chosen, micros(now), digest(token),
                     expires, micros(now), digest(unsubscribe_token(key)), key))
                added = cursor.fetchone()
                # None: a sign-up of the same address at the same moment sends its own.
                return None if added is None else Confirmation(address, token)
            if row[1] is not None and int(row[1]) > resend:
                return None
            cursor.execute(
                "UPDATE subscribers SET pending_services = ?, confirm_hash = ?, "
                "confirm_expires_at = ?, confirm_sent_at = ? WHERE id = ?",
                (chosen, digest(token), expires, micros(now), row[0]))
        return Confirmation(address, token)

    def not_sent(self, confirmation: Confirmation) -> None:
        """The confirmation could not be sent: the address may ask again at once."""
        with self.database.transaction(write=True) as cursor:
            cursor.execute("UPDATE subscribers SET confirm_sent_at = NULL "
                           "WHERE confirm_hash = ?", (digest(confirmation.token),))

    def confirm(self, token: str) -> bool:
        """Confirms the sign-up the token was sent for (False: unknown or expired). From
        now on the subscriber gets mail for events stored after this moment."""
        now = micros(self.clock())
        head = self.event_log.last_position()
        with self.database.transaction(write=True) as cursor:
            found = cursor.execute(
                "UPDATE subscribers SET services = COALESCE(pending_services, services), "
                "pending_services = NULL, confirm_hash = NULL, confirm_expires_at = NULL, "
                "confirmed_position = COALESCE(confirmed_position, ?), "
                "confirmed_at = COALESCE(confirmed_at, ?) "
                "WHERE confirm_hash = ? AND confirm_expires_at > ? RETURNING id",
                (head, now, digest(token), now)).fetchone()
        return found is not None

    def unsubscribe(self, token: str) -> bool:
        """Removes the subscriber the token belongs to (False: no such subscriber)."""
        with self.database.transaction(write=True) as cursor:
            found = cursor.execute("SELECT id FROM subscribers WHERE unsubscribe_hash = ?",
                                   (digest(token),)).fetchone()
            if found is None:
                return False
            self._remove(cursor, str(found[0]))
        return True

    def erase(self, subscriber_id: str) -> bool:
        with self.database.transaction(write=True) as cursor:
            found = cursor.execute("SELECT id FROM subscribers WHERE id = ?",
                                   (subscriber_id,)).fetchone()
            if found is None:
                return False
            self._remove(cursor, subscriber_id)
        return True

    @staticmethod
    def _remove(cursor: Any, subscriber_id: str) -> None:
        cursor.execute("DELETE FROM subscriber_receipts WHERE subscriber_id = ?",
                       (subscriber_id,))
        cursor.execute("DELETE FROM subscribers WHERE id = ?", (subscriber_id,))

    # Reading.

    def all(self) -> list[Subscriber]:
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT {_COLUMNS} FROM subscribers ORDER BY created_at, id").fetchall()
        return [_subscriber(row) for row in rows]

    def confirmed(self) -> list[Subscriber]:
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT {_COLUMNS} FROM subscribers WHERE confirmed_at IS NOT NULL "
                "ORDER BY confirmed_position, id").fetchall()
        return [_subscriber(row) for row in rows]

    # Receipts.

    def receipted(self, event_id: str) -> set[str]:
        """The subscribers whose mail about this event was accepted already."""
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT subscriber_id FROM subscriber_receipts WHERE event_id = ?",
                (event_id,)).fetchall()
        return {str(row[0]) for row in rows}

    def forget_receipts(self, before: int) -> None:
        """Drops the receipts of events before `before`: the follower has saved a position
        past them, so they are never asked for again."""
        with self.database.transaction(write=True) as cursor:
            cursor.execute("DELETE FROM subscriber_receipts WHERE position < ?", (before,))

    def receipts(self, subscriber_ids: Sequence[str], event_id: str, position: int) -> None:
        """Records accepted mails of one event, in one transaction (nothing for
        subscribers removed meanwhile)."""
        at = micros(self.clock())
        with self.database.transaction(write=True, pipeline=True) as cursor:
            cursor.executemany(
                "INSERT INTO subscriber_receipts (subscriber_id, event_id, position, sent_at) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM subscribers WHERE id = ?) "
                "ON CONFLICT (subscriber_id, event_id) DO NOTHING",
                [(subscriber_id, event_id, position, at, subscriber_id)
                 for subscriber_id in subscriber_ids])
