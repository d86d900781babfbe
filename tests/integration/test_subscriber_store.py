"""The subscribers' store on SQLite and PostgreSQL, with a clock the test moves: one
confirmation per address an hour, confirmation links that expire after 7 days and
sign-ups never confirmed forgotten then, tokens that do one thing once, stored hashed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra.bootstrap import Services
from infra.subscribers.store import SubscriberStore, unsubscribe_token
from tests.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def store(services: Services, clock: Clock) -> SubscriberStore:
    return SubscriberStore(services.database, services.event_log, clock)


def rows(store: SubscriberStore) -> list[tuple[object, ...]]:
    with store.database.transaction() as cursor:
        return [tuple(r) for r in cursor.execute("SELECT * FROM subscribers").fetchall()]


def test_one_confirmation_an_hour(store: SubscriberStore, clock: Clock) -> None:
    first = store.subscribe("a@example.org", [])
    assert first is not None
    clock.move(minutes=59)
    assert store.subscribe("a@example.org", ["api"]) is None
    assert store.subscribe("a@EXAMPLE.org", ["api"]) is None  # the same mailbox
    clock.move(minutes=2)
    second = store.subscribe("a@example.org", ["api"])
    assert second is not None
    assert second.token != first.token
    assert not store.confirm(first.token)  # replaced by the newer link
    assert store.confirm(second.token)
    (subscriber,) = store.confirmed()
    assert subscriber.services == ("api",)


def test_confirmation_links_expire_after_7_days(store: SubscriberStore, clock: Clock) -> None:
    late = store.subscribe("late@example.org", [])
    timely = store.subscribe("timely@example.org", [])
    assert late is not None
    assert timely is not None
    clock.move(days=6, hours=23)
    assert store.confirm(timely.token)
    clock.move(hours=1)
    assert not store.confirm(late.token)
    store.subscribe("other@example.org", [])  # a sign-up forgets expired ones
    assert {s.email for s in store.all()} == {"timely@example.org", "other@example.org"}


def test_tokens_are_single_purpose_single_use_and_stored_hashed(
        store: SubscriberStore) -> None:
    sent = store.subscribe("b@example.org", [])
    assert sent is not None
    assert not store.unsubscribe(sent.token)
    assert store.confirm(sent.token)
    assert not store.confirm(sent.token)
    (subscriber,) = store.confirmed()
    leave = unsubscribe_token(subscriber.mail_key)
    assert not store.confirm(leave)
    stored = repr(rows(store))
    assert sent.token not in stored
    assert leave not in stored
    assert store.unsubscribe(leave)
    assert rows(store) == []
    assert not store.unsubscribe(leave)
