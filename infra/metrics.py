"""The service's Prometheus metrics, defined once, and their exposition.

Two kinds:

* Counted in the process (`instruments()`): HTTP requests and their latency, open event
  streams, events stored, delivery failures. With `PROMETHEUS_MULTIPROC_DIR` set (several
  worker processes behind one port), prometheus-client keeps them in files there and the
  exposition sums every process's.
* Read from the database when scraped (`StoreCollector`): the store's head and each
  follower's position and lag, the same whichever process answers.

What a scrape without a token gets is limited to what anyone could see from outside
(`public_families`): the requests and open streams of callers without a token. Everything
else counts private activity too (the store's head counts every write).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from infra.database import Database
from infra.event_log import EventLog
from infra.follower_positions import DELIVERIES, READ_MODELS, Positions

log = logging.getLogger("product_status.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "product_status"
# Latency buckets, seconds: most answers take milliseconds; read-your-writes waits up to 2 s.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0)
# The followers' positions (infra/follower_positions.py), by what "done" means for them.
FOLLOWER_TABLES = ((READ_MODELS, "projection"), (DELIVERIES, "delivery"))


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(frozen=True)
class Instruments:
    requests: Counter
    latency: Histogram
    open_streams: Gauge
    events_stored: Counter
    delivery_failures: Counter
    timer_commands: Counter


_REGISTRY = CollectorRegistry(auto_describe=True)


@cache
def instruments() -> Instruments:
    """The metric objects, made on first use (in multiprocess mode each one has a file)."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created`: clutter
    caller = ("caller",)  # "anonymous" (no Authorization header) or "token"
    return Instruments(
        requests=Counter(
            f"{PREFIX}_http_requests", "HTTP requests answered, by route template, method and "
            "status", ("route", "method", "status", *caller), registry=_REGISTRY),
        latency=Histogram(
            f"{PREFIX}_http_request_duration_seconds", "Time to the start of the answer, by "
            "route template, method and status", ("route", "method", "status", *caller),
            buckets=_LATENCY_BUCKETS, registry=_REGISTRY),
        open_streams=Gauge(
            f"{PREFIX}_open_event_streams", "Live event streams (text/event-stream) open",
            caller, multiprocess_mode="livesum", registry=_REGISTRY),
        events_stored=Counter(
            f"{PREFIX}_events_stored", "Events stored by this service's commands, by type",
            ("type",), registry=_REGISTRY),
        delivery_failures=Counter(
            f"{PREFIX}_delivery_failures", "Failed attempts to deliver an event to an "
            "integration, by integration", ("integration",), registry=_REGISTRY),
        timer_commands=Counter(
            f"{PREFIX}_timer_commands", "Commands the service issued itself at a deadline "
            "(auto-resolve, maintenance start and end), by kind", ("kind",),
            registry=_REGISTRY),
    )


def delivery_failed(integration: str) -> None:
    """For deliverers: one failed attempt to deliver to `integration`."""
    instruments().delivery_failures.labels(integration=integration).inc()


def timer_fired(kind: str) -> None:
    """For the timers: one command recorded at a deadline of this kind."""
    instruments().timer_commands.labels(kind=kind).inc()


def events_stored(types: Iterable[str]) -> None:
    """For the write side: events just committed, by CloudEvents type."""
    counter = instruments().events_stored
    for kind in types:
        counter.labels(type=kind).inc()


def process_exited(pid: int) -> None:
    """In multiprocess mode, drops the live gauges of a process that ended."""
    if multiprocess_dir() is not None:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


class StoreCollector:
    """The store's head and each follower's position and lag, read when scraped."""

    def __init__(self, event_log: EventLog) -> None:
        self.event_log = event_log
        self.database: Database = event_log.database

    def describe(self) -> list[Metric]:
        return []  # read at collection only: describing would query the database

    def collect(self) -> Iterator[Metric]:
        reachable = GaugeMetricFamily(f"{PREFIX}_store_reachable",
                                      "1 when the database answered this scrape, else 0")
        try:
            head, positions = self._read()
        except Exception:  # an unreachable database is what this reports
            log.warning("metrics: the database did not answer", exc_info=True)
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield reachable
        yield GaugeMetricFamily(f"{PREFIX}_store_head_position",
                                "Position of the last event in the store", value=head)
        position = GaugeMetricFamily(
            f"{PREFIX}_follower_position", "Store position each follower has done",
            labels=["follower", "kind"])
        lag = GaugeMetricFamily(
            f"{PREFIX}_follower_lag_events", "Store positions between the head and each "
            "follower's position", labels=["follower", "kind"])
        for name, kind, at in positions:
            position.add_metric([name, kind], at)
            lag.add_metric([name, kind], max(0, head - at))
        yield position
        yield lag

    def _read(self) -> tuple[int, list[tuple[str, str, int]]]:
        head = self.event_log.last_position()
        found = [(name, kind, at) for table, kind in FOLLOWER_TABLES
                 for name, at in Positions(self.database, table).all().items()]
        return head, sorted(found)


class _Families:
    """What one scrape exposes: some collectors, optionally filtered."""

    def __init__(self, sources: list[Any], keep: Callable[[Metric], Metric | None]) -> None:
        self.sources = sources
        self.keep = keep

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            for family in source.collect():
                kept = self.keep(family)
                if kept is not None:
                    yield kept


def public_families(family: Metric) -> Metric | None:
    """Of a family, what anyone may see: requests and streams of callers without a token."""
    if family.name not in (f"{PREFIX}_http_requests", f"{PREFIX}_http_request_duration_seconds",
                           f"{PREFIX}_open_event_streams"):
        return None
    kept = Metric(family.name, family.documentation, family.type, family.unit)
    kept.samples = [s for s in family.samples if s.labels.get("caller") == "anonymous"]
    return kept


def exposition(store: StoreCollector, *, everything: bool) -> bytes:
    """The Prometheus text exposition: everything for a token, else the public part."""
    instruments()  # every family is listed, also before its first sample
    if multiprocess_dir() is not None:
        counted: Any = CollectorRegistry()
        MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    else:
        counted = _REGISTRY
    sources: list[Any] = [counted, store] if everything else [counted]
    keep: Callable[[Metric], Metric | None] = (lambda f: f) if everything else public_families
    return generate_latest(_Families(sources, keep))
