"""Feed requests per second, full answers and 304s, beside a bare one-row SELECT.

On a fresh PostgreSQL database (``TEST_DATABASE_URL`` or a throwaway cluster, see
``tests.servers``; dropped afterwards):

1. ``--incidents`` incidents (default 100,000: varied status, severity, type and services;
   most resolved, some private or out of the feeds, some deleted; each with one to three
   status updates) are written straight through the commands application, many
   aggregates per ``commands.save(*aggregates)``, then ``projector.catch_up()`` builds the
   read tables in this process.
2. The API runs in a separate uvicorn process on a free port of 127.0.0.1 (the same
   uvicorn setup as the tests' LiveServer; the read tables stay as they are, so it runs no
   projectors), and so does a bare FastAPI app whose plain ``def`` route
   ``GET /bare/{id}`` does ``SELECT * FROM feed_incidents WHERE id = %s`` (one row of the
   real read table, by primary key) through a ``psycopg_pool.ConnectionPool`` sized like
   the app's (1-10 connections).
3. ``--concurrency`` client threads, each with its own keep-alive connection, call each
   case; every case runs right after a bare run of its own and its ratio is to that run
   (the machine's background load drifts):

   * ``rss``          ``GET /api/v1/incidents/rss/feed`` (20 items), a full answer;
   * ``rss 304``      the same with ``If-None-Match`` of its ETag;
   * ``rss cold``     the RSS feed at a new URL each time (``?cold=<random>``, ignored by
                      the route but part of the self link): read and rendered afresh,
                      never answered from the in-memory answers;
   * ``atom``         ``GET /api/v1/incidents/atom/feed``, a full answer;
   * ``rss service``  the RSS feed of one service (``?service=svc-7``);
   * ``rss active``   without resolved incidents (``?include_resolved=false``);
   * ``incident``     ``GET /api/v1/incidents/{id}/rss`` of random public incidents;
   * ``incident 304`` one incident's feed with ``If-None-Match``.

Each row prints requests, unexpected answers, req/s, p50/p99 latency, the server's CPU
time per request and the ratio to bare. Targets (reported, never enforced): 304 >= 80%
of bare, full answer >= 40% of bare.

Run from the project root::

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.feeds --incidents 100000
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    Child,
    Timings,
    bench_server,
    command_line,
    cpu_seconds,
    keep_alive_client,
    machine,
    postgres_database,
    serve_arguments,
    serve_on_loopback,
)

PG_POOL_MIN, PG_POOL_MAX = 1, 10  # what infra.database.PostgresDatabase opens
MODULE = "bench.feeds"
NOT_MODIFIED_TARGET = 0.80
FULL_TARGET = 0.40
SERVICES = [f"svc-{n}" for n in range(30)]
RSS = "/api/v1/incidents/rss/feed"
ATOM = "/api/v1/incidents/atom/feed"

# --------------------------------------------------------------------------------------
# Server side (child processes: ``python -m bench.feeds _serve ...``)
# --------------------------------------------------------------------------------------


def _app_server(database_url: str) -> tuple[Any, Callable[[], None]]:
    from api.app import create_app
    from infra.bootstrap import bootstrap
    from infra.settings import load_settings

    services = bootstrap(load_settings({"DATABASE_URL": database_url}))
    return create_app(services), services.close


def _bare_server(database_url: str) -> tuple[Any, Callable[[], None]]:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(database_url, min_size=PG_POOL_MIN, max_size=PG_POOL_MAX,
                          open=True, kwargs={"autocommit": False})
    pool.wait(timeout=30)
    app = FastAPI(title="bare SELECT")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare/{incident_id}")
    def bare(incident_id: str) -> JSONResponse:
        with pool.connection() as conn:  # a transaction, committed when the block ends
            row = conn.execute("SELECT * FROM feed_incidents WHERE id = %s",
                               (incident_id,)).fetchone()
        return JSONResponse({"found": row is not None, "title": row[2] if row else None})

    return app, pool.close


def serve(argv: Sequence[str]) -> None:
    args = serve_arguments("feeds _serve").parse_args(argv)

    build = _app_server if args.kind == "app" else _bare_server
    app, close = build(args.database_url)
    serve_on_loopback(app, args.port, close)





# --------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------


def seed(database_url: str, count: int, batch: int) -> tuple[list[str], dict[str, float]]:
    """Writes `count` incidents and builds the read tables; returns the ids of those a
    feed shows, and timings."""
    from domain.incident import Incident
    from domain.values import IncidentType, Severity, Status
    from infra.bootstrap import bootstrap
    from infra.projector import analyze
    from infra.settings import load_settings

    rng = random.Random(7)
    services = bootstrap(load_settings({"DATABASE_URL": database_url}))
    severities, types = list(Severity), list(IncidentType)
    active = [Status.INVESTIGATING, Status.IDENTIFIED, Status.MONITORING]
    start = datetime.now(UTC) - timedelta(minutes=count + 10)
    shown: list[str] = []
    events = 0
    began = time.perf_counter()
    try:
        for first in range(0, count, batch):
            aggregates = []
            for n in range(first, min(first + batch, count)):
                at = start + timedelta(minutes=n)
                public, in_feeds = rng.random() > 0.1, rng.random() > 0.05
                incident = Incident.declare(
                    incident_id=f"incident-bench-{n:07d}", at=at,
                    title=f"Elevated error rates on service {n % 997} & friends",
                    description="Requests to the checkout API fail intermittently. " * 3,
                    severity=rng.choice(severities), incident_type=rng.choice(types),
                    affected_services=tuple(rng.sample(SERVICES, rng.randint(1, 3))),
                    affected_regions=("eu-west-1",),
                    public_message="We are investigating elevated error rates <again>.",
                    internal_notes="pager: on-call has it", is_public=public,
                    rss_enabled=in_feeds)
                for step in range(1, rng.randint(2, 4)):
                    incident.add_update(
                        at=at + timedelta(seconds=step), max_updates=100,
                        status=rng.choice(active), message="internal detail",
                        public_message=f"Update {step}: the fix is rolling out.")
                if rng.random() < 0.75:
                    incident.add_update(at=at + timedelta(seconds=10), max_updates=100,
                                        status=Status.RESOLVED,
                                        public_message="Resolved: error rates are normal.")
                if rng.random() < 0.01:
                    incident.delete(at=at + timedelta(seconds=20))
                elif public and in_feeds:
                    shown.append(incident.id)
                events += len(incident.pending_events)
                aggregates.append(incident)
            services.commands.save(*aggregates)
            print(f"\r  seeding: {min(first + batch, count)}/{count} incidents",
                  end="", file=sys.stderr, flush=True)
        stored = time.perf_counter() - began
        print(file=sys.stderr)
        began = time.perf_counter()
        services.projector.catch_up()
        analyze(services.database, services.projector.projections)
        projected = time.perf_counter() - began
    finally:
        services.close()
    timings = {"events": float(events), "store_seconds": stored,
               "project_seconds": projected}
    return shown, timings


# --------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------

Request = tuple[str, dict[str, str]]  # path, headers


@dataclass
class Run(Timings):
    case: str
    expected: int
    requests: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    server_cpu: float | None
    bare_rate: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def unexpected(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != self.expected)


def drive(base_url: str, make: Callable[[random.Random], Request], count: int,
          concurrency: int, expected: int) -> tuple[float, list[float], Counter[int], list[str]]:
    """``count`` GETs from ``concurrency`` threads, each with a keep-alive client."""
    numbers = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    clients = [keep_alive_client(base_url, {}) for _ in range(concurrency)]
    for client in clients:  # open each keep-alive connection before the clock starts
        client.get("/healthz")
    start_line = threading.Barrier(concurrency + 1)

    def worker(client: httpx.Client, seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        seen: Counter[int] = Counter()
        start_line.wait()
        while next(numbers) < count:
            path, headers = make(rng)
            began = time.perf_counter()
            try:
                response = client.get(path, headers=headers)
            except httpx.HTTPError as error:
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                seen[0] += 1
                continue
            mine.append(time.perf_counter() - began)
            seen[response.status_code] += 1
            if response.status_code != expected and len(errors) < 5:
                with lock:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    threads = [threading.Thread(target=worker, args=(c, n), daemon=True)
               for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    try:
        start_line.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
    finally:
        for client in clients:
            client.close()
    return seconds, latencies, statuses, errors


def run_case(case: str, server: Child, make: Callable[[random.Random], Request],
             expected: int, args: argparse.Namespace) -> Run:
    drive(server.url, make, args.warmup, args.concurrency, expected)
    cpu_before = cpu_seconds(server.pid)
    seconds, latencies, statuses, errors = drive(server.url, make, args.requests,
                                                 args.concurrency, expected)
    cpu_after = cpu_seconds(server.pid)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    run = Run(case, expected, args.requests, seconds, latencies, statuses, cpu, errors=errors)
    print(f"  {case:13} {run.rate:8.1f} req/s", file=sys.stderr, flush=True)
    return run


def fixed(path: str, headers: dict[str, str] | None = None) -> Callable[[random.Random], Request]:
    def make(_: random.Random) -> Request:
        return path, headers or {}

    return make


def bench(database_url: str, shown: Sequence[str], workdir: Path,
          args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    one = shown[len(shown) // 2]
    with bench_server(MODULE, "bare", database_url, workdir / "bare.log") as bare, \
            bench_server(MODULE, "app", database_url, workdir / "app.log") as app:

        def bare_request(rng: random.Random) -> Request:
            return f"/bare/{rng.choice(shown)}", {}

        def incident_request(rng: random.Random) -> Request:
            return f"/api/v1/incidents/{rng.choice(shown)}/rss", {}

        def cold_request(rng: random.Random) -> Request:
            # An unknown parameter is ignored, but the URL (the self link) is new each
            # time: the feed is read and rendered afresh, never answered from memory.
            return f"{RSS}?cold={rng.getrandbits(64)}", {}

        def etag(path: str) -> dict[str, str]:
            response = httpx.get(app.url + path, timeout=30)
            response.raise_for_status()
            return {"If-None-Match": response.headers["etag"]}

        cases: list[tuple[str, Callable[[random.Random], Request], int]] = [
            ("rss", fixed(RSS), 200),
            ("rss 304", fixed(RSS, etag(RSS)), 304),
            ("rss cold", cold_request, 200),
            ("atom", fixed(ATOM), 200),
            ("rss service", fixed(f"{RSS}?service=svc-7"), 200),
            ("rss active", fixed(f"{RSS}?include_resolved=false"), 200),
            ("incident", incident_request, 200),
            ("incident 304", fixed(f"/api/v1/incidents/{one}/rss",
                                   etag(f"/api/v1/incidents/{one}/rss")), 304),
        ]
        sizes = {name: len(httpx.get(app.url + make(random.Random(1))[0], timeout=30).content)
                 for name, make, _ in cases}
        for name, make, expected in cases:
            baseline = run_case("bare", bare, bare_request, 200, args)
            runs.append(baseline)
            run = run_case(name, app, make, expected, args)
            run.bare_rate = baseline.rate
            runs.append(run)
    for run in runs:
        if run.errors:
            print(f"  {run.case} errors (first few):", file=sys.stderr)
            for error in run.errors[:5]:
                print(f"    {error}", file=sys.stderr)
    print("\nanswer sizes (bytes): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return runs


def print_table(runs: Sequence[Run]) -> None:
    header = (f"{'case':13} {'requests':>8} {'unexp.':>6} {'seconds':>8} {'req/s':>8} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'srv cpu ms/req':>14} {'vs bare':>8}")
    print(header)
    print("-" * len(header))
    for r in runs:
        ratio = f"{r.rate / r.bare_rate:7.0%}" if r.bare_rate else "-"
        cpu = f"{r.server_cpu / r.requests * 1000:14.2f}" if r.server_cpu is not None else "-"
        print(f"{r.case:13} {r.requests:8d} {r.unexpected:6d} {r.seconds:8.2f} {r.rate:8.1f} "
              f"{r.percentile(0.50):7.1f} {r.percentile(0.99):7.1f} {cpu:>14} {ratio:>8}")
    print()
    for r in runs:
        if not r.bare_rate:
            continue
        target = NOT_MODIFIED_TARGET if r.expected == 304 else FULL_TARGET
        share = r.rate / r.bare_rate
        verdict = "met" if share >= target else "NOT met"
        print(f"target {r.case} >= {target:.0%} of bare: {share:.0%} -> {verdict}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Feed requests per second (full and 304) beside a bare one-row SELECT.")
    parser.add_argument("--incidents", type=int, default=100_000,
                        help="incidents seeded into PostgreSQL (default 100000)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="incidents saved per commands.save() call (default 1000)")
    parser.add_argument("--requests", type=int, default=3000,
                        help="timed requests per case (default 3000)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed requests before each case (default requests/10, >= 50)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="client threads, one keep-alive connection each (default 8)")
    args = parser.parse_args(argv)
    for name in ("incidents", "batch", "requests", "concurrency"):
        if not 1 <= getattr(args, name) <= 10_000_000:
            parser.error(f"--{name} must be between 1 and 10000000")
    if args.warmup is None:
        args.warmup = max(50, args.requests // 10)
    if args.incidents < 20:
        parser.error("--incidents must be at least 20 (a full feed)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = command_line(argv, serve, parse_args)
    if args is None:
        return
    print(f"{machine()}, concurrency "
          f"{args.concurrency}, {args.requests} requests per case (+{args.warmup} warm-up), "
          f"{args.incidents} incidents", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-feeds-") as tmp, \
            postgres_database() as url:
        shown, timings = seed(url, args.incidents, args.batch)
        events = int(timings["events"])
        print(f"  seeded {args.incidents} incidents ({events} events) in "
              f"{timings['store_seconds']:.1f} s ({events / timings['store_seconds']:.0f} "
              f"events/s), projected in {timings['project_seconds']:.1f} s; "
              f"{len(shown)} in the feeds", file=sys.stderr, flush=True)
        runs = bench(url, shown, Path(tmp), args)
    print(f"\nfeeds over HTTP on PostgreSQL: {args.incidents} incidents, concurrency "
          f"{args.concurrency}, {args.requests} requests per case; each case beside its "
          "own bare run")
    print_table(runs)


if __name__ == "__main__":
    main()
