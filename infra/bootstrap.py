"""The composition root: the one place that turns settings into running parts."""

from __future__ import annotations

import fcntl
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.utils import get_topic

from commands.alert_groups import AlertGroups
from commands.application import IncidentCommands
from infra import heartbeat
from infra.audit_chain import start_chain
from infra.chained_store import ChainedPostgresRecorder, ChainedSQLiteRecorder
from infra.consistency import ReadBarrier
from infra.database import SCHEMA_LOCK, Database, PostgresDatabase, SQLiteDatabase
from infra.event_log import EventLog
from infra.event_store import PostgresEventStore
from infra.follower_lease import close_leases
from infra.follower_positions import DELIVERIES, Positions
from infra.follower_worker import Follower
from infra.followers import Followers
from infra.integrations.admin import IntegrationAdmin
from infra.integrations.deliverers import Deliverers
from infra.integrations.following import OPTIONS as DELIVERY_OPTIONS
from infra.integrations.following import starter
from infra.integrations.kinds import DeliveryContext
from infra.integrations.store import IntegrationStore
from infra.metrics import events_stored
from infra.projector import Projector
from infra.rate_limits import RateLimits
from infra.rebuild import rebuild_changed
from infra.relay import Relay, RelayConfig
from infra.settings import Settings
from infra.store_watch import StoreWatch
from infra.subscribers.admin import SubscriberAdmin
from infra.subscribers.delivery import SubscriberDelivery
from infra.subscribers.store import SubscriberStore
from infra.timers import Timers
from infra.tokens import Authenticator, TokenStore
from projections.feed_queries import FeedQueries
from projections.queries import IncidentQueries
from projections.reports import LifecycleReports
from projections.service_queries import ServiceQueries

log = logging.getLogger("product_status")


@dataclass
class Services:
    settings: Settings
    commands: IncidentCommands
    event_log: EventLog
    database: Database
    projector: Projector
    queries: IncidentQueries
    reports: LifecycleReports
    feed_queries: FeedQueries
    barrier: ReadBarrier
    followers: Followers  # every follower of the store in this process, and their wake-ups
    store_watch: StoreWatch
    integrations: IntegrationAdmin
    deliverers: Deliverers  # the integrations this process delivers, once started
    authenticator: Authenticator
    rate_limits: RateLimits
    alert_groups: AlertGroups  # Alertmanager's notifications, as incident commands
    subscribers: SubscriberAdmin
    subscriber_mail: Follower  # the subscribers' mail, started with delivery
    service_queries: ServiceQueries
    timers: Timers  # the service's own commands at deadlines, once started
    relay: Relay | None = None  # the NATS relay, when CLOUDEVENT_BROKER_URL is set
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # "now"
    _stop: threading.Event = field(default_factory=threading.Event)
    _delivering: threading.Thread | None = None
    _timing: threading.Thread | None = None
    _heartbeat: threading.Thread | None = None

    def start_projections(self) -> None:
        """Runs the projectors in this process, in the background. Of several processes
        one works on each read model; the others stand by."""
        self.followers.start(self.projector.followers, self._stop)

    def start_heartbeat(self) -> None:
        """Touches HEARTBEAT_FILE every few seconds while the database answers (if set)."""
        if self.settings.heartbeat_file is not None:
            self._heartbeat = threading.Thread(
                target=heartbeat.run, name="heartbeat", daemon=True,
                args=(self.database, self.settings.heartbeat_file, self._stop))
            self._heartbeat.start()

    def start_relay(self) -> None:
        """Runs the NATS relay in this process, in the background (if one is configured).
        Of several relays on one store one publishes; the others stand by."""
        if self.relay is not None:
            self.followers.start([self.relay], self._stop)

    def start_delivery(self) -> None:
        """Delivers to the integrations in this process, in the background. Of several
        processes one delivers to each integration; the others stand by."""
        if self._delivering is None:
            self._delivering = threading.Thread(target=self.deliverers.run, args=(self._stop,),
                                                name="integrations", daemon=True)
            self._delivering.start()
            if self.settings.smtp_url:
                self.followers.start([self.subscriber_mail], self._stop)

    def start_timers(self) -> None:
        """Acts on deadlines (auto-resolve, maintenance) in this process, in the
        background. Of several processes one acts; the others stand by."""
        if self._timing is None:
            self._timing = threading.Thread(target=self.timers.run, args=(self._stop,),
                                            name="timers", daemon=True)
            self._timing.start()

    def close(self) -> None:
        self._stop.set()
        self.deliverers.wake()
        if self._delivering is not None:
            self._delivering.join(timeout=30)
        self.subscribers.close()
        if self._timing is not None:
            self._timing.join(timeout=30)
        self.store_watch.close()
        self.followers.close()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
        close_leases(self.database)
        self.commands.close()
        self.rate_limits.close()
        self.database.close()


def now() -> datetime:
    return datetime.now(UTC)


def new_incident_id() -> str:
    return "incident-" + uuid.uuid4().hex


def sqlite_path(settings: Settings) -> Path | None:
    url = settings.database_url
    if url is None:
        return settings.data_dir / "product-status.db"
    if url.startswith("sqlite:"):
        return Path(urlsplit(url).path)
    return None


def persistence_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's persistence settings for the configured database."""
    path = sqlite_path(settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": get_topic(ChainedSQLiteRecorder),
        }
    parts = urlsplit(settings.database_url or "")
    return {
        "PERSISTENCE_MODULE": get_topic(PostgresEventStore),
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        # The event store's pool opens POOL_SIZE connections at start and grows by up to
        # MAX_OVERFLOW under load: a fleet of processes must fit PostgreSQL's
        # max_connections (100 by default), and followers barely use this pool.
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "28",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # Bound the wait for the store's insert lock (seconds); the store retries.
        "POSTGRES_LOCK_TIMEOUT": "5",
        # End a session that idles inside a transaction (seconds), releasing its locks.
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "5",
        "APPLICATION_RECORDER_TOPIC": get_topic(ChainedPostgresRecorder),
    }


def open_database(settings: Settings) -> Database:
    path = sqlite_path(settings)
    if path is not None:
        return SQLiteDatabase(path)
    return PostgresDatabase(str(settings.database_url))


def open_rate_limits(settings: Settings, database: Database) -> RateLimits:
    """On SQLite the counts get a file of their own beside the store (see rate_limits)."""
    path = sqlite_path(settings)
    limits = RateLimits(database, None if path is None else path.with_name(path.name + ".limits"))
    limits.create_table()
    return limits


@contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Serialises creating tables, and rebuilding read models whose tables changed shape,
    across processes starting at once: PostgreSQL's advisory lock (its IF NOT EXISTS is
    not safe against a concurrent CREATE of the same name), a lock file beside SQLite's."""
    path = sqlite_path(settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_name(path.name + ".schema-lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield
        return
    with psycopg.connect(str(settings.database_url), autocommit=True,
                         connect_timeout=5) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        yield


def bootstrap(settings: Settings, clock: Callable[[], datetime] = now) -> Services:
    """Builds every part from the settings; creates the tables if missing. Nothing runs
    in the background until `start_projections()` / `start_relay()` /
    `start_delivery()` / `start_timers()`. `clock` tells every part what time it is
    (tests move it)."""
    with schema_lock(settings):
        commands = IncidentCommands(
            persistence_env(settings),
            clock=clock,
            new_incident_id=new_incident_id,
            max_updates=settings.incident_max_updates,
        )
        database = open_database(settings)
        recorder = commands.recorder
        assert isinstance(recorder, ApplicationRecorder)
        event_log = EventLog(recorder, database)
        start_chain(event_log)
        followers = Followers(database, event_log)
        projector = Projector(followers, commands.mapper)
        rebuild_changed(projector, projector.create_tables())
        # The positions of followers that deliver elsewhere (the relay, integrations).
        Positions(database, DELIVERIES).create([], schema_locked=True)
        integration_store = IntegrationStore(database, event_log)
        integration_store.create_tables()
        token_store = TokenStore(database, clock)
        token_store.create_table()
        subscriber_store = SubscriberStore(database, event_log, clock)
        subscriber_store.create_tables()
        rate_limits = open_rate_limits(settings, database)
    barrier = ReadBarrier(database, event_log, projector.names)
    followers.listener.on_progress(barrier.progressed)
    # Each commit of this process: constant work, however many streams are open.
    commands.listeners.append(barrier.written)
    commands.listeners.append(followers.listener.written)
    commands.type_listeners.append(events_stored)
    store_watch = StoreWatch(followers.listener)
    relay = None
    if settings.cloudevent_broker_url:
        relay = Relay(database, event_log, RelayConfig.from_settings(settings), followers)
        followers.register(relay)
    delivery = DeliveryContext.build(settings, integration_store, event_log, commands.mapper)
    deliverers = Deliverers(delivery, starter(followers))
    subscriber_mail = followers.add(SubscriberDelivery(subscriber_store, delivery),
                                    DELIVERY_OPTIONS)
    return Services(
        settings=settings,
        commands=commands,
        event_log=event_log,
        database=database,
        projector=projector,
        queries=IncidentQueries(database, settings.response_policy, clock),
        reports=LifecycleReports(database, settings.response_policy, clock),
        feed_queries=FeedQueries(database),
        barrier=barrier,
        followers=followers,
        store_watch=store_watch,
        integrations=IntegrationAdmin(delivery, changed=deliverers.wake),
        deliverers=deliverers,
        authenticator=Authenticator(settings.api_tokens, token_store),
        rate_limits=rate_limits,
        alert_groups=AlertGroups(commands),
        subscribers=SubscriberAdmin(settings, subscriber_store),
        subscriber_mail=subscriber_mail,
        service_queries=ServiceQueries(database),
        timers=Timers(commands, database, clock, settings.incident_auto_resolve_hours),
        relay=relay,
        clock=clock,
    )
