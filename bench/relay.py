"""NATS relay throughput from a backlog, beside raw nats-py publishing of the same documents.

1. **Backlog.** ``--events`` stored events (default 50,000) are written into a fresh store
   through ``commands.save(*aggregates)``, ``--save-batch`` incidents per save: each
   incident is declared, moves to identified and monitoring, then resolves (5 events).
   The store is a SQLite file in a temporary directory (``--store sqlite``, the default)
   or a fresh PostgreSQL database (``--store postgres``: on ``TEST_DATABASE_URL`` or a
   throwaway cluster, dropped afterwards).
2. **raw.** The same documents, read into memory beforehand (not timed), published with
   nats-py ``publish_async`` to a stream of their own, at most ``--concurrency``
   unacknowledged, with the same headers (``Nats-Msg-Id``, ``Content-Type``); timed from
   the first publish to the last acknowledgement.
3. **relay.** ``Relay.run_once()`` from position 0 over the whole backlog to another stream
   of its own, same concurrency: reading the store, publishing, waiting for every ack of
   each ``--batch-size`` batch, saving the position; timed including connecting.
4. **store read.** The backlog read alone through ``EventLog.read`` in batches of
   ``--batch-size``, for the breakdown.

``--rounds`` repeats raw and relay alternately (each round with fresh streams and the
relay's position reset to 0) and reports each round and the best. Target (reported,
never enforced): relay >= 70% of raw. NATS is ``TEST_NATS_URL`` or a throwaway
``nats-server -js`` on a free loopback port (``tests.servers.nats_server``); the streams
are deleted at the end.

Run from the project root::

    TEST_NATS_URL=nats://127.0.0.1:4222 .venv/bin/python -m bench.relay
    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test TEST_NATS_URL=... \\
        .venv/bin/python -m bench.relay --store postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
from nats.js.errors import NotFoundError

from bench.harness import postgres_database
from domain.incident import Incident
from domain.values import Severity, Status, UpdateType
from infra.bootstrap import Services, bootstrap
from infra.event_log import StoredCloudEvent
from infra.relay import (
    CONTENT_TYPE,
    POSITIONS,
    Relay,
    RelayConfig,
    cloudevent_id,
    stream_name,
    subject_for,
)
from infra.settings import load_settings
from tests.servers import nats_server

EVENTS_PER_INCIDENT = 5


def seed(services: Services, events: int, save_batch: int) -> float:
    """Writes incidents until `events` events are stored; returns the seconds it took."""
    base = datetime.now(UTC) - timedelta(days=30)
    incidents = -(-events // EVENTS_PER_INCIDENT)
    started = time.perf_counter()
    for first in range(0, incidents, save_batch):
        built = []
        for number in range(first, min(first + save_batch, incidents)):
            at = base + timedelta(seconds=number)
            incident = Incident.declare(
                incident_id=f"incident-{uuid.uuid4().hex}", at=at,
                title=f"Checkout errors {number}",
                description="Elevated error rates on checkout; engineers are on it.",
                severity=Severity.HIGH, affected_services=("checkout", "payments"),
                affected_regions=("eu-west",), public_message="We are investigating.",
            )
            for minutes, status, kind in ((5, Status.IDENTIFIED, UpdateType.IDENTIFIED),
                                          (20, Status.MONITORING, UpdateType.MONITORING),
                                          (45, Status.RESOLVED, UpdateType.RESOLUTION)):
                incident.add_update(
                    at=at + timedelta(minutes=minutes), max_updates=100, status=status,
                    update_type=kind, message=f"internal note after {minutes} min",
                    public_message=f"Status: {status.value}.", author="oncall@example.com",
                )
            built.append(incident)
        services.commands.save(*built)
    return time.perf_counter() - started


def read_all(services: Services, batch: int) -> list[StoredCloudEvent]:
    events: list[StoredCloudEvent] = []
    while chunk := services.event_log.read(events[-1].position if events else 0, batch):
        events.extend(chunk)
    return events


async def _connect(url: str) -> Any:
    return await nats.connect(url, connect_timeout=2, allow_reconnect=False,
                              max_reconnect_attempts=1, reconnect_time_wait=0)


@dataclass
class Timed:
    count: int
    seconds: float  # wall clock
    cpu: float  # this process's CPU time, all threads

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def row(self, label: str) -> str:
        return (f"{label:28} {self.count:>7,} in {self.seconds:6.2f} s {self.rate:>9,.0f} /s"
                f"  cpu {self.cpu / self.count * 1e6:5.1f} us/msg")


@contextlib.contextmanager
def timed(count: int, into: list[Timed]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append(Timed(count, time.perf_counter() - wall, time.process_time() - cpu))


async def raw_publish(url: str, topic: str, events: Sequence[StoredCloudEvent],
                      concurrency: int) -> Timed:
    """Publishes the documents with publish_async; timed to the last acknowledgement."""
    messages = [(subject_for(topic, e.type), e.document,
                 {"Nats-Msg-Id": cloudevent_id(e.document), "Content-Type": CONTENT_TYPE})
                for e in events]
    client = await _connect(url)
    try:
        js = client.jetstream(timeout=10, publish_async_max_pending=concurrency)
        await js.add_stream(name=stream_name(topic), subjects=[f"{topic}.>"],
                            duplicate_window=24 * 3600)
        result: list[Timed] = []
        with timed(len(messages), result):
            futures = [await js.publish_async(subject, document, headers=headers)
                       for subject, document, headers in messages]
            acks = await asyncio.gather(*futures)
        assert len(acks) == len(events)
        assert not any(a.duplicate for a in acks)
        return result[0]
    finally:
        await client.close()


async def stream_messages(url: str, topic: str) -> int:
    client = await _connect(url)
    try:
        info = await client.jetstream(timeout=10).stream_info(stream_name(topic))
        return int(info.state.messages)
    finally:
        await client.close()


async def delete_streams(url: str, topics: Sequence[str]) -> None:
    client = await _connect(url)
    try:
        js = client.jetstream(timeout=10)
        for topic in topics:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream_name(topic))
    finally:
        await client.close()


def reset_position(services: Services, name: str) -> None:
    with services.database.transaction(write=True) as cursor:
        cursor.execute(f"UPDATE {POSITIONS} SET position = 0 WHERE name = ?", (name,))


@contextlib.contextmanager
def store(kind: str) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="bench-relay-") as directory:
            yield f"sqlite:///{directory}/store.db"


def run(args: argparse.Namespace, nats_url: str, database_url: str) -> None:
    services = bootstrap(load_settings({"DATABASE_URL": database_url}))
    topics: list[str] = []
    try:
        print(f"seeding {args.events:,} events ({args.store}) ...", file=sys.stderr, flush=True)
        seeded = seed(services, args.events, args.save_batch)
        read: list[Timed] = []
        with timed(args.events, read):
            events = read_all(services, args.batch_size)
        print(f"relay bench: {len(events):,} stored events ({args.store}, seeded in "
              f"{seeded:.1f} s), concurrency {args.concurrency}, batch {args.batch_size}, "
              f"NATS {nats_url}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
        print("  " + read[0].row("store read (EventLog.read)"))
        raws: list[Timed] = []
        relays: list[Timed] = []
        for round_number in range(1, args.rounds + 1):
            raw_topic, relay_topic = (f"bench{uuid.uuid4().hex[:10]}" for _ in range(2))
            topics += [raw_topic, relay_topic]
            raws.append(asyncio.run(raw_publish(nats_url, raw_topic, events, args.concurrency)))
            config = RelayConfig(broker_url=nats_url, topic=relay_topic,
                                 batch_size=args.batch_size, concurrency=args.concurrency,
                                 name="bench_relay", publish_timeout=10)
            relay = Relay(services.database, services.event_log, config)
            reset_position(services, config.name)
            with timed(len(events), relays):
                published = relay.run_once()
            assert published == len(events), (published, len(events))
            assert asyncio.run(stream_messages(nats_url, relay_topic)) == len(events)
            print(f"  round {round_number}: " + raws[-1].row("raw publish_async"))
            print(f"  round {round_number}: " + relays[-1].row("relay run_once()")
                  + f"  {relays[-1].rate / raws[-1].rate:6.1%} of raw")
        best = max(r.rate for r in relays) / max(r.rate for r in raws)
        paired = statistics.median(relay.rate / raw.rate for relay, raw in zip(relays, raws,
                                                                                strict=True))
        print(f"  relay/raw: best {best:.1%}, median of rounds {paired:.1%}; "
              f"target >= 70%: {'met' if best >= 0.7 else 'NOT met'}")
    finally:
        if topics:
            asyncio.run(delete_streams(nats_url, topics))
        services.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay",
        description="NATS relay throughput from a backlog beside raw nats-py publishing.")
    parser.add_argument("--events", type=int, default=50_000, help="backlog size (50,000)")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=256,
                        help="unacknowledged messages in flight, both runs (256)")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="relay batch between position saves (1000)")
    parser.add_argument("--save-batch", type=int, default=500,
                        help="incidents per commands.save() while seeding (500)")
    parser.add_argument("--rounds", type=int, default=3, help="raw/relay rounds (3)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with nats_server() as nats_url, store(args.store) as database_url:
        run(args, nats_url, database_url)


if __name__ == "__main__":
    main()
