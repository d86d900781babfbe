"""Commands per second through HTTP, beside the raw limit of the same store.

For each store (SQLite file, PostgreSQL database) this starts uvicorn in a separate
process on a free port of 127.0.0.1 and drives it with ``--concurrency`` threads, each
with its own keep-alive ``httpx.Client``:

* ``create``  POST /api/v1/incidents (writer token): one new incident per request;
* ``update``  POST /api/v1/incidents/{id}/updates, spread at random over ``--incidents``
  incidents, without If-Match, so lost version races are retried server-side;
* ``bare``    POST /bare on a bare FastAPI app (a plain ``def`` route, same uvicorn
  setup, same client) doing one durable INSERT into a table of the same database kind:
  SQLite opened the way ``eventsourcing.sqlite`` opens it (autocommit connection,
  explicit BEGIN, WAL journal, default ``synchronous``, writers serialized by one lock
  like eventsourcing's pool writer lock); PostgreSQL one INSERT + commit per request
  through a ``psycopg_pool.ConnectionPool``.

It prints one row per store and case: requests, errors, seconds, req/s, p50/p99 latency,
the server process's CPU time per request, and the ratio to the bare endpoint of the same
store. The target (creates >= 50% of bare) is reported, never enforced.

PostgreSQL comes from ``TEST_DATABASE_URL`` (a fresh database is created on it and
dropped afterwards) or from a throwaway cluster (``tests.servers.postgres_server``).

Run from the project root::

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.commands_http --requests 2000 --concurrency 8
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.harness import (
    Child,
    Result,
    bench_server,
    command_line,
    cpu_seconds,
    keep_alive_client,
    machine,
    postgres_database,
    serve_arguments,
    serve_on_loopback,
)

MODULE = "bench.commands_http"
WRITER_TOKEN = "bench-writer-token"  # a throwaway token of a loopback server
WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
SQLITE_LOCK_TIMEOUT = 30  # what infra.bootstrap.persistence_env gives eventsourcing
PG_POOL_MIN, PG_POOL_MAX = 10, 30  # POSTGRES_POOL_SIZE=10 + POSTGRES_MAX_OVERFLOW=20
CREATE_TARGET = 0.5

# --------------------------------------------------------------------------------------
# Server side (runs in the child process: ``python -m bench.commands_http _serve ...``)
# --------------------------------------------------------------------------------------


def _app_server(database_url: str) -> tuple[Any, Callable[[], None]]:
    from api.app import create_app
    from infra.bootstrap import bootstrap
    from infra.settings import load_settings

    settings = load_settings(
        {
            "DATABASE_URL": database_url,
            "API_TOKENS": f"writer:{WRITER_TOKEN}",
            # Updates spread over few incidents would otherwise hit the 100-update cap.
            "INCIDENT_MAX_UPDATES": "100000",
            # The writes of one token, measured: the per-token limit counts them all.
            "RATE_LIMIT_WRITES_PER_MINUTE": "1000000",
        }
    )
    services = bootstrap(settings)
    return create_app(services), services.close


def _sqlite_bare(path: str) -> tuple[Callable[[str], int], Callable[[], dict[str, str]],
                                     Callable[[], None]]:
    """One INSERT per call, on connections opened as eventsourcing.sqlite opens them."""
    local = threading.local()
    writer_lock = threading.Lock()
    connections: list[sqlite3.Connection] = []

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                path,
                uri=True,
                check_same_thread=False,
                isolation_level=None,  # autocommit: BEGIN/COMMIT issued explicitly
                cached_statements=True,
                timeout=SQLITE_LOCK_TIMEOUT,
            )
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            local.conn = conn
            connections.append(conn)
        return conn

    with contextlib.closing(connection()) as setup:
        setup.execute(
            "CREATE TABLE IF NOT EXISTS bare_events "
            "(id INTEGER PRIMARY KEY, subject TEXT NOT NULL, body TEXT NOT NULL)"
        )
    local.conn = None
    connections.clear()

    def insert(body: str) -> int:
        conn = connection()
        with writer_lock:
            cursor = conn.cursor()
            cursor.execute("BEGIN")
            try:
                cursor.execute(
                    "INSERT INTO bare_events (subject, body) VALUES (?, ?)", ("bare", body)
                )
                row_id = cursor.lastrowid
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return int(row_id or 0)

    def info() -> dict[str, str]:
        conn = connection()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {
            "sqlite_version": sqlite3.sqlite_version,
            "journal_mode": str(journal),
            "synchronous": f"{sync} ({names.get(int(sync), '?')})",
        }

    def close() -> None:
        for conn in connections:
            conn.close()

    return insert, info, close


def _postgres_bare(url: str) -> tuple[Callable[[str], int], Callable[[], dict[str, str]],
                                      Callable[[], None]]:
    """One INSERT + COMMIT per call, through a psycopg connection pool."""
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(url, min_size=PG_POOL_MIN, max_size=PG_POOL_MAX, open=True)
    pool.wait(timeout=30)
    with pool.connection() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bare_events "
            "(id BIGSERIAL PRIMARY KEY, subject TEXT NOT NULL, body BYTEA NOT NULL)"
        )

    def insert(body: str) -> int:
        with pool.connection() as conn:  # commits when the block ends
            row = conn.execute(
                "INSERT INTO bare_events (subject, body) VALUES (%s, %s) RETURNING id",
                ("bare", body.encode()),
            ).fetchone()
        return int(row[0]) if row else 0

    def info() -> dict[str, str]:
        found: dict[str, str] = {}
        with pool.connection() as conn:
            for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method"):
                row = conn.execute(f"SHOW {name}").fetchone()
                found[name] = str(row[0]) if row else "?"
        return found

    return insert, info, pool.close


def _bare_server(database_url: str) -> tuple[Any, Callable[[], None]]:
    from fastapi import Body, FastAPI

    if database_url.startswith("sqlite:"):
        insert, info, close = _sqlite_bare(urlsplit(database_url).path)
    else:
        insert, info, close = _postgres_bare(database_url)
    app = FastAPI(title="bare INSERT")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def store_info() -> dict[str, str]:
        return info()

    @app.post("/bare", status_code=201)
    def bare(body: dict[str, Any] = Body()) -> dict[str, int]:  # noqa: B008
        return {"id": insert(json.dumps(body))}

    return app, close


def serve(argv: Sequence[str]) -> None:
    args = serve_arguments("commands_http _serve").parse_args(argv)

    build = _app_server if args.kind == "app" else _bare_server
    app, close = build(args.database_url)
    serve_on_loopback(app, args.port, close)


# --------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------


Request = tuple[str, dict[str, Any]]  # path, JSON body


def drive(
    base_url: str,
    make: Callable[[int, random.Random], Request],
    count: int,
    concurrency: int,
    headers: dict[str, str],
) -> tuple[float, list[float], Counter[int], list[str]]:
    """``count`` requests from ``concurrency`` threads, each with a keep-alive client."""
    numbers = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    clients = [keep_alive_client(base_url, headers) for _ in range(concurrency)]
    for client in clients:  # open each keep-alive connection before the clock starts
        client.get("/healthz")
    start_line = threading.Barrier(concurrency + 1)

    def worker(client: httpx.Client, seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        seen: Counter[int] = Counter()
        start_line.wait()
        while (number := next(numbers)) < count:
            path, body = make(number, rng)
            began = time.perf_counter()
            try:
                response = client.post(path, json=body)
            except httpx.HTTPError as error:
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                seen[0] += 1
                continue
            mine.append(time.perf_counter() - began)
            seen[response.status_code] += 1
            if response.status_code >= 300 and len(errors) < 5:
                with lock:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    threads = [
        threading.Thread(target=worker, args=(client, n), daemon=True)
        for n, client in enumerate(clients)
    ]
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


def run_case(
    store: str,
    case: str,
    server: Child,
    make: Callable[[int, random.Random], Request],
    args: argparse.Namespace,
    headers: dict[str, str],
) -> Result:
    drive(server.url, make, args.warmup, args.concurrency, headers)
    cpu_before = cpu_seconds(server.pid)
    seconds, latencies, statuses, errors = drive(
        server.url, make, args.requests, args.concurrency, headers
    )
    cpu_after = cpu_seconds(server.pid)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    result = Result(store, case, args.requests, seconds, latencies, statuses, cpu, errors)
    print(f"  {store:8} {case:7} {result.rate:8.1f} req/s", file=sys.stderr, flush=True)
    return result


def create_body(number: int, _: random.Random) -> Request:
    return "/api/v1/incidents", {
        "title": f"Benchmark incident {number}",
        "description": "Elevated error rates on the checkout API.",
        "severity": "high",
        "incident_type": "degraded_performance",
        "affected_services": ["checkout", "payments"],
        "affected_regions": ["eu-west-1"],
        "public_message": "We are investigating elevated error rates.",
    }


def bare_body(number: int, rng: random.Random) -> Request:
    return "/bare", create_body(number, rng)[1]


def update_maker(incident_ids: Sequence[str]) -> Callable[[int, random.Random], Request]:
    def make(number: int, rng: random.Random) -> Request:
        incident_id = rng.choice(incident_ids)
        return f"/api/v1/incidents/{incident_id}/updates", {
            "message": f"Benchmark update {number}: still looking.",
            "public_message": "We are still investigating.",
        }

    return make


def bench_store(store: str, database_url: str, workdir: Path,
                args: argparse.Namespace) -> tuple[list[Result], dict[str, str]]:
    results: list[Result] = []
    with bench_server(MODULE, "bare", _bare_url(database_url, workdir),
                      workdir / "bare.log") as bare:
        info: dict[str, str] = httpx.get(bare.url + "/info", timeout=10).json()
        results.append(run_case(store, "bare", bare, bare_body, args, {}))
    with bench_server(MODULE, "app", database_url, workdir / "app.log") as app:
        results.append(run_case(store, "create", app, create_body, args, WRITER))
        with keep_alive_client(app.url, WRITER) as client:
            incident_ids = []
            for n in range(args.incidents):
                response = client.post("/api/v1/incidents", json=create_body(n, random.Random())[1])
                response.raise_for_status()
                incident_ids.append(str(response.json()["id"]))
        results.append(run_case(store, "update", app, update_maker(incident_ids), args, WRITER))
    for result in results:
        if result.errors:
            print(f"  {store} {result.case} errors (first few):", file=sys.stderr)
            for error in result.errors[:5]:
                print(f"    {error}", file=sys.stderr)
    return results, info


def _bare_url(database_url: str, workdir: Path) -> str:
    if database_url.startswith("sqlite:"):
        return f"sqlite:///{workdir / 'bare.db'}"
    return database_url  # same PostgreSQL database, its own table




def print_table(results: Sequence[Result], infos: dict[str, dict[str, str]]) -> None:
    header = (f"{'store':8} {'case':7} {'requests':>8} {'errors':>6} {'seconds':>8} "
              f"{'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv cpu ms/req':>14} {'vs bare':>8}")
    print(header)
    print("-" * len(header))
    bare_rates = {r.store: r.rate for r in results if r.case == "bare"}
    for r in results:
        bare = bare_rates.get(r.store)
        ratio = f"{r.rate / bare:7.0%}" if bare else "-"
        cpu = f"{r.server_cpu / r.requests * 1000:14.2f}" if r.server_cpu is not None else "-"
        print(f"{r.store:8} {r.case:7} {r.requests:8d} {r.failed:6d} {r.seconds:8.2f} "
              f"{r.rate:8.1f} {r.percentile(0.50):7.1f} {r.percentile(0.99):7.1f} "
              f"{cpu:>14} {ratio:>8}")
    print()
    for store, info in infos.items():
        print(f"{store}: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    for r in results:
        bare = bare_rates.get(r.store)
        if r.case == "create" and bare:
            share = r.rate / bare
            verdict = "met" if share >= CREATE_TARGET else "NOT met"
            print(f"target creates >= {CREATE_TARGET:.0%} of bare on {r.store}: "
                  f"{share:.0%} -> {verdict}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Commands per second through HTTP beside a bare one-INSERT endpoint."
    )
    parser.add_argument("--requests", type=int, default=2000,
                        help="timed requests per case (default 2000)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed requests before each case (default requests/10, >= 50)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="client threads, one keep-alive connection each (default 8)")
    parser.add_argument("--incidents", type=int, default=50,
                        help="incidents the update case spreads over (default 50)")
    parser.add_argument("--stores", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres (default both)")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = sorted(set(stores) - {"sqlite", "postgres"})
    if unknown or not stores:
        parser.error(f"--stores takes sqlite and/or postgres, not {', '.join(unknown) or '-'}")
    for name in ("requests", "concurrency", "incidents"):
        if not 1 <= getattr(args, name) <= 1_000_000:
            parser.error(f"--{name} must be between 1 and 1000000")
    if args.warmup is None:
        args.warmup = max(50, args.requests // 10)
    if not 0 <= args.warmup <= 1_000_000:
        parser.error("--warmup must be between 0 and 1000000")
    args.stores = stores
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = command_line(argv, serve, parse_args)
    if args is None:
        return
    print(f"{machine()}, "
          f"concurrency {args.concurrency}, {args.requests} requests per case "
          f"(+{args.warmup} warm-up), updates over {args.incidents} incidents",
          file=sys.stderr, flush=True)
    results: list[Result] = []
    infos: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        for store in args.stores:
            workdir = Path(tmp) / store
            workdir.mkdir()
            if store == "sqlite":
                store_results, infos[store] = bench_store(
                    store, f"sqlite:///{workdir / 'store.db'}", workdir, args)
            else:
                with postgres_database() as url:
                    store_results, infos[store] = bench_store(store, url, workdir, args)
            results.extend(store_results)
    print()
    print(f"commands through HTTP: concurrency {args.concurrency}, "
          f"{args.requests} requests per case, updates over {args.incidents} incidents")
    print_table(results, infos)


if __name__ == "__main__":
    main()
