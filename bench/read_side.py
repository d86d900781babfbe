"""The read side: queries per second beside a bare one-row SELECT, projection lag, rebuild rate.

Everything runs on a fresh PostgreSQL database (``TEST_DATABASE_URL`` or a throwaway
cluster, see ``tests.servers``), dropped afterwards; every server is a child process on a
free port of 127.0.0.1, stopped at the end. The output names a hash of the application's
sources (other people may be changing them; it says so if they changed during the run).

1. **Reads.** ``--incidents`` incidents (varied status, severity, type, services, regions,
   visibility; some with status updates, resolved, changed or deleted) are written straight
   through the commands application in batches (``commands.save(*aggregates)``), then
   ``projector.catch_up()`` builds the read tables in this process. The API then runs in a
   separate uvicorn process that does not run the projectors (the read tables stay as they
   are; ``--app-server cli`` runs ``product-status serve --no-projectors`` instead) and
   ``--concurrency`` client threads, each with a keep-alive connection, call:

   * ``list``    ``GET /api/v1/incidents?status=investigating&severity=high&limit=20``,
                 anonymous and with a reader token;
   * ``list x5`` the same list walked 5 pages deep by ``next_cursor`` (one unit = 5 GETs);
   * ``summary`` ``GET /api/v1/incidents/status/summary``;
   * ``get``     ``GET /api/v1/incidents/{id}`` of random public incidents;
   * ``bare``    ``GET /bare/{id}`` on a bare FastAPI app (plain ``def`` route, same uvicorn
                 setup, same client) doing ``SELECT * FROM incidents WHERE id = %s`` (one row
                 of the real read table) through a ``psycopg_pool.ConnectionPool`` sized like
                 the app's (1-10 connections, a transaction per request).

   Each app case runs right after a bare run of its own (both servers stay up) and its
   ratio is to that run, since the machine's background load drifts. If the read tables
   have no planner statistics yet (autovacuum off, or not yet run), one ``list*`` case runs
   as they are, then the database is ANALYZEd (what autovacuum would do) for the others;
   the list's query plan is printed both ways. Each row prints requests, errors, req/s,
   p50/p99 latency, the server's CPU time per request and the ratio to bare. Target
   (reported, never enforced): >= 70% of bare.

2. **Lag** from a command's commit to its visibility in the read tables: a create is POSTed
   at ``--write-rate`` per second; the ``Store-Position`` it answers is then awaited by
   polling ``SELECT min(position) FROM projection_positions`` from this process every
   ``--poll-interval`` seconds. The commit happened between sending the POST and receiving
   the answer, so two figures bound the lag: from the answer (a lower bound) and from the
   send (an upper bound). Modes: PostgreSQL embedded (``product-status serve``), PostgreSQL
   separate (``product-status serve --no-projectors`` + ``product-status project``), and
   SQLite embedded (a fresh file holding only these samples). Target: p99 < 50 ms.

3. **Rebuild rate.** ``infra.rebuild.rebuild`` of all four projections in this process
   (what ``product-status projections rebuild`` does), timed, over the store of part 1,
   beside a raw sequential read of the events table (server-side cursor, fetched in batches
   of 5000) and a read + decode through ``Projector.read_events``; then each projection is
   rebuilt alone, as a breakdown. The read models' answers are compared before and after.
   Target: rebuild >= 25% of the raw read. A part that fails is reported, and the others
   still run.

Run from the project root::

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.read_side --incidents 100000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

import httpx
import psycopg

from bench.harness import (
    LOOPBACK,
    PROJECT_ROOT,
    STARTUP_TIMEOUT,
    Child,
    Result,
    bench_server,
    command_line,
    cpu_seconds,
    free_port,
    keep_alive_client,
    machine,
    postgres_database,
    serve_arguments,
    serve_on_loopback,
)

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    Pool = ConnectionPool[psycopg.Connection[tuple[Any, ...]]]

READER_TOKEN = "bench-reader-token"  # throwaway tokens of loopback servers
WRITER_TOKEN = "bench-writer-token"
API_TOKENS = f"reader:{READER_TOKEN},writer:{WRITER_TOKEN}"
READER = {"Authorization": f"Bearer {READER_TOKEN}"}
WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
ANONYMOUS: dict[str, str] = {}
PG_POOL_MIN, PG_POOL_MAX = 1, 10  # what infra.database.PostgresDatabase opens
LAG_TIMEOUT = 10.0  # a sample not visible after this long counts as timed out
READ_TARGET = 0.70
LAG_TARGET_MS = 50.0
REBUILD_TARGET = 0.25
RAW_BATCH = 5000
LIST_QUERY = {"status": "investigating", "severity": "high", "limit": "20"}
LIST_PATH = "/api/v1/incidents?" + urlencode(LIST_QUERY)
DEEP_PAGES = 5
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "")

# --------------------------------------------------------------------------------------
# Server side (child processes: ``python -m bench.read_side _serve ...``)
# --------------------------------------------------------------------------------------


def _app_server(database_url: str) -> tuple[Any, Callable[[], None]]:
    """The real API (``create_app``) without projectors: the read tables stay as built."""
    from api.app import create_app
    from infra.bootstrap import bootstrap
    from infra.settings import load_settings

    settings = load_settings({"DATABASE_URL": database_url, "API_TOKENS": API_TOKENS,
                              "RATE_LIMIT_WRITES_PER_MINUTE": "1000000"})
    services = bootstrap(settings)
    return create_app(services), services.close


def bare_pool(database_url: str) -> Pool:
    """A bare server's psycopg pool, sized like the app's, opened and filled."""
    from psycopg_pool import ConnectionPool

    pool: Pool = ConnectionPool(
        database_url, min_size=PG_POOL_MIN, max_size=PG_POOL_MAX, open=True, timeout=10,
        kwargs={"autocommit": False, "connect_timeout": 5},
    )
    pool.wait(timeout=30)
    return pool


def incident_row(pool: Pool, incident_id: str) -> Any:
    """The bare read: ``SELECT *`` of one incidents row, as JSON (404 if none)."""
    from fastapi.responses import JSONResponse

    with pool.connection() as conn, conn.cursor() as cursor:  # commits at the end
        cursor.execute("SELECT * FROM incidents WHERE id = %s", (incident_id,))
        row = cursor.fetchone()
        names = [c.name for c in cursor.description or ()]
    if row is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return dict(zip(names, row, strict=True))


def _bare_server(database_url: str) -> tuple[Any, Callable[[], None]]:
    """One SELECT of one incidents row per request, through a psycopg pool."""
    from fastapi import FastAPI

    pool = bare_pool(database_url)
    app = FastAPI(title="bare SELECT")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare/{incident_id}")
    def bare(incident_id: str) -> Any:
        return incident_row(pool, incident_id)

    return app, pool.close


def serve(argv: Sequence[str]) -> None:
    args = serve_arguments("read_side _serve").parse_args(argv)

    build = _app_server if args.kind == "app" else _bare_server
    app, close = build(args.database_url)
    serve_on_loopback(app, args.port, close)


# --------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------


def read_side_server(kind: str, database_url: str, workdir: Path) -> Child:
    return bench_server("bench.read_side", kind, database_url, workdir / f"{kind}.log")


def cli_env(database_url: str, port: int | None = None) -> dict[str, str]:
    """The environment of a ``product-status`` child: this one's, minus the app's own
    settings, plus the benchmark's."""
    names = ("DATABASE_URL", "HOST", "PORT", "API_TOKENS", "CLOUDEVENT_BROKER_URL",
             "PUBLIC_BASE_URL", "INCIDENT_RSS_ENABLED", "INCIDENT_MAX_UPDATES",
             "INCIDENT_AUTO_RESOLVE_HOURS", "CLOUDEVENT_TOPIC", "RSS_TTL_MINUTES", "DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update({"DATABASE_URL": database_url, "API_TOKENS": API_TOKENS, "HOST": LOOPBACK,
                "RATE_LIMIT_WRITES_PER_MINUTE": "1000000"})
    if port is not None:
        env["PORT"] = str(port)
    return env


def cli(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("product-status")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "infra.cli", *args]


def cli_server(name: str, database_url: str, workdir: Path, *, projectors: bool) -> Child:
    port = free_port()
    argv = cli("serve") if projectors else cli("serve", "--no-projectors")
    return Child(name, argv, workdir / f"{name.replace(' ', '-')}.log",
                 env=cli_env(database_url, port), port=port)


# --------------------------------------------------------------------------------------
# Loading incidents straight through the commands application
# --------------------------------------------------------------------------------------

SERVICES = ("api", "checkout", "payments", "search", "auth", "dashboard", "email", "sms",
            "webhooks", "cdn", "storage", "billing", "reports", "mobile", "admin", "sso")
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1",
           "ap-northeast-1", "sa-east-1")
SEVERITY_WEIGHTS = {"critical": 5, "high": 20, "medium": 35, "low": 25, "minor": 15}



@dataclass(frozen=True)
class Built:
    incident: Any  # domain.incident.Incident, with its events still pending
    public: bool
    severity: str
    status: str
    deleted: bool


@dataclass
class Loaded:
    incidents: int = 0
    events: int = 0
    seconds: float = 0.0
    public_ids: list[str] = field(default_factory=list)
    deleted: int = 0
    matching: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    catch_up_seconds: float = 0.0
    catch_up_applied: int = 0


def build_incident(number: int, count: int, rng: random.Random, base: datetime,
                   names: Sequence[str] = SERVICES, *, settle: bool = False) -> Built:
    """One incident with a plausible history, built in memory (not yet saved), affecting
    one to three of `names`. `settle`: one still active at the end of its history is
    resolved a few hours later (a past incident, as most of a real history is)."""
    from domain.incident import Incident
    from domain.values import ACTIVE_STATUSES, IncidentType, Severity, Status, UpdateType

    active = sorted(ACTIVE_STATUSES)
    at = base + timedelta(days=180) * (number / count)
    services = tuple(rng.sample(names, rng.choice((1, 1, 2, 3))))
    severity = Severity(rng.choices(list(SEVERITY_WEIGHTS),
                                    weights=list(SEVERITY_WEIGHTS.values()))[0])
    public = rng.random() < 0.9
    incident = Incident.declare(
        incident_id="incident-" + uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        at=at,
        title=f"{services[0].capitalize()} incident {number}",
        description=f"Elevated error rates on {', '.join(services)}; engineers are on it.",
        status=rng.choice(active),
        severity=severity,
        incident_type=rng.choice(list(IncidentType)),
        affected_services=services,
        affected_regions=tuple(rng.sample(REGIONS, rng.choice((1, 1, 2)))),
        public_message="We are investigating reports of errors.",
        internal_notes=f"pager #{rng.randrange(100_000)}",
        is_public=public,
        rss_enabled=rng.random() < 0.95,
    )
    moment = at
    for index in range(rng.choices((0, 1, 2, 3), weights=(40, 30, 20, 10))[0]):
        moment += timedelta(minutes=rng.randrange(1, 90))
        current = incident.status
        if current is Status.POST_INCIDENT:
            break
        if current is Status.RESOLVED:
            status = Status.POST_INCIDENT if rng.random() < 0.7 else rng.choice(active)
        elif rng.random() < 0.6:
            status = Status.RESOLVED
        else:
            status = rng.choice(active)
        update_type = {Status.RESOLVED: UpdateType.RESOLUTION,
                       Status.POST_INCIDENT: UpdateType.POST_INCIDENT,
                       Status.IDENTIFIED: UpdateType.IDENTIFIED,
                       Status.MONITORING: UpdateType.MONITORING}.get(
                           status, UpdateType.INVESTIGATION)
        incident.add_update(
            at=moment, max_updates=100, status=status, update_type=update_type,
            message=f"internal: step {index + 1}",
            public_message="" if rng.random() < 0.1 else f"Update {index + 1}: {status.value}.",
            author="oncall@example.com",
        )
    if rng.random() < 0.05:
        moment += timedelta(minutes=5)
        severity = Severity(rng.choice(list(SEVERITY_WEIGHTS)))
        incident.change_details(at=moment, changes={
            "severity": severity, "public_message": "We have updated the impact assessment."})
    if settle and incident.status in ACTIVE_STATUSES:
        moment += timedelta(minutes=rng.randrange(10, 240))
        incident.add_update(
            at=moment, max_updates=100, status=Status.RESOLVED,
            update_type=UpdateType.RESOLUTION, message="internal: resolved",
            public_message="This incident has been resolved.", author="oncall@example.com",
        )
    deleted = rng.random() < 0.01
    if deleted:
        incident.delete(at=moment + timedelta(minutes=1))
    return Built(incident, public, severity.value, incident.status.value, deleted)


def load_incidents(services: Any, count: int, batch: int, seed: int,
                   names: Sequence[str] = SERVICES, *, ongoing: int | None = None) -> Loaded:
    """Writes ``count`` incidents through ``commands.save(*aggregates)``, ``batch`` at a
    time (one transaction each); then builds the read tables with ``catch_up()``.
    ``ongoing``: only the newest ``ongoing`` incidents may end their history active, the
    older ones are resolved (None: each ends where its history left it, most active)."""
    rng = random.Random(seed)
    base = datetime.now(UTC) - timedelta(days=181)
    loaded = Loaded()
    started = last_report = time.perf_counter()
    for first in range(0, count, batch):
        built = [build_incident(n, count, rng, base, names,
                                settle=ongoing is not None and n < count - ongoing)
                 for n in range(first, min(first + batch, count))]
        for item in built:
            if item.deleted:
                loaded.deleted += 1
                continue
            if item.public:
                loaded.public_ids.append(item.incident.id)
            if item.status == "investigating" and item.severity == "high":
                loaded.matching[True] += 1
                loaded.matching[False] += item.public
        recordings = services.commands.save(*(item.incident for item in built))
        loaded.events += len(recordings)
        loaded.incidents += len(built)
        now = time.perf_counter()
        if now - last_report > 10:
            last_report = now
            print(f"  loaded {loaded.incidents:,}/{count:,} incidents, {loaded.events:,} "
                  f"events ({loaded.events / (now - started):,.0f} events/s)",
                  file=sys.stderr, flush=True)
    loaded.seconds = time.perf_counter() - started
    print(f"  loaded {loaded.incidents:,} incidents, {loaded.events:,} events in "
          f"{loaded.seconds:.1f} s; projector.catch_up() ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    loaded.catch_up_applied = services.projector.catch_up()
    loaded.catch_up_seconds = time.perf_counter() - started
    print(f"  catch_up(): {loaded.catch_up_applied:,} event applications in "
          f"{loaded.catch_up_seconds:.1f} s", file=sys.stderr, flush=True)
    return loaded


# --------------------------------------------------------------------------------------
# Part 1: reads per second
# --------------------------------------------------------------------------------------

Sample = tuple[float, int]  # latency in seconds, HTTP status (0: transport error)
# A unit of work on a client: httpx's, or bench.harness.RawClient (the same `get`).
Unit = Callable[[Any, random.Random, list[str]], list[Sample]]


def _get(client: httpx.Client, path: str, errors: list[str],
         check: Callable[[httpx.Response], str | None] | None = None) -> tuple[Sample, Any]:
    began = time.perf_counter()
    try:
        response = client.get(path)
    except httpx.HTTPError as error:
        errors.append(f"{type(error).__name__}: {error}")
        return (time.perf_counter() - began, 0), None
    latency = time.perf_counter() - began
    status = response.status_code
    if status != 200:
        errors.append(f"{path}: {status} {response.text[:200]}")
        return (latency, status), None
    body = response.json()
    problem = check(response) if check else None
    if problem:
        errors.append(f"{path}: {problem}")
        return (latency, 599), body  # counted as failed: a wrong answer
    return (latency, status), body


def _full_page(response: httpx.Response) -> str | None:
    """A page is full and has a next cursor, unless it is the list's last page."""
    body = response.json()
    items, limit = len(body.get("items", ())), int(LIST_QUERY["limit"])
    if body.get("next_cursor") and items != limit:
        return f"a next cursor after a page of {items} items, not {limit}"
    return None


def list_unit(pages: int) -> Unit:
    def unit(client: httpx.Client, _: random.Random, errors: list[str]) -> list[Sample]:
        samples: list[Sample] = []
        path = LIST_PATH
        for _page in range(pages):
            sample, body = _get(client, path, errors, _full_page)
            samples.append(sample)
            if body is None or not body.get("next_cursor"):
                break
            path = LIST_PATH + "&" + urlencode({"cursor": body["next_cursor"]})
        return samples

    return unit


def path_unit(make_path: Callable[[random.Random], str]) -> Unit:
    def unit(client: httpx.Client, rng: random.Random, errors: list[str]) -> list[Sample]:
        return [_get(client, make_path(rng), errors)[0]]

    return unit


@dataclass
class ReadCase:
    case: str
    who: str
    unit: Unit
    headers: dict[str, str]
    server: str  # "app" or "bare"


def drive(base_url: str, unit: Unit, units: int, concurrency: int,
          headers: dict[str, str], client: Callable[[str, dict[str, str]], Any]
          = keep_alive_client, seconds: float | None = None
          ) -> tuple[float, list[list[Sample]], list[str]]:
    """``units`` units of work (or as many as fit in ``seconds``) from ``concurrency``
    threads, each with a keep-alive client (httpx's, or `client(base_url, headers)`);
    returns the seconds, the samples of each unit, and the first few errors."""
    counter = iter(range(units))
    lock = threading.Lock()
    done: list[list[Sample]] = []
    errors: list[str] = []
    clients = [client(base_url, headers) for _ in range(concurrency)]
    for each in clients:  # open each keep-alive connection before the clock starts
        each.get("/healthz")
    start_line = threading.Barrier(concurrency + 1)

    def worker(client: Any, seed: int) -> None:
        rng = random.Random(seed)
        mine: list[list[Sample]] = []
        my_errors: list[str] = []
        start_line.wait()
        while True:
            with lock:
                number = next(counter, None)
            if number is None or (deadline is not None and time.perf_counter() > deadline):
                break
            mine.append(unit(client, rng, my_errors))
        with lock:
            done.extend(mine)
            errors.extend(my_errors[:5])

    threads = [threading.Thread(target=worker, args=(client, n), daemon=True)
               for n, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    deadline = None
    try:
        start_line.wait()
        began = time.perf_counter()
        deadline = began + seconds if seconds is not None else None
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
    finally:
        for each in clients:
            each.close()
    return seconds, done, errors


@dataclass
class ReadResult:
    result: Result
    who: str
    pages: dict[int, list[float]] = field(default_factory=dict)  # page -> latencies
    bare: Result | None = None  # the bare run just before this case (same load)


def run_case_once(case: ReadCase, server: Child, args: argparse.Namespace) -> ReadResult:
    per_unit = DEEP_PAGES if case.case.startswith("list x") else 1
    units = max(1, args.requests // per_unit)
    warm = max(1, args.warmup // per_unit)
    drive(server.url, case.unit, warm, args.concurrency, case.headers)
    cpu_before = cpu_seconds(server.pid)
    seconds, done, errors = drive(server.url, case.unit, units, args.concurrency, case.headers)
    cpu_after = cpu_seconds(server.pid)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    latencies = [latency for samples in done for latency, _ in samples]
    statuses: Counter[int] = Counter(status for samples in done for _, status in samples)
    pages: dict[int, list[float]] = {}
    for samples in done:
        for page, (latency, _) in enumerate(samples, 1):
            pages.setdefault(page, []).append(latency)
    result = Result("postgres", case.case, len(latencies), seconds, latencies, statuses, cpu,
                    errors)
    print(f"  {case.case:8} {case.who:9} {result.rate:8.1f} req/s", file=sys.stderr,
          flush=True)
    return ReadResult(result, case.who, pages if per_unit > 1 else {})


def read_cases(public_ids: Sequence[str]) -> list[ReadCase]:
    def random_incident(rng: random.Random) -> str:
        return f"/api/v1/incidents/{rng.choice(public_ids)}"

    def random_bare(rng: random.Random) -> str:
        return f"/bare/{rng.choice(public_ids)}"

    summary = path_unit(lambda _: "/api/v1/incidents/status/summary")
    return [
        ReadCase("bare", "anonymous", path_unit(random_bare), ANONYMOUS, "bare"),
        ReadCase("list", "anonymous", list_unit(1), ANONYMOUS, "app"),
        ReadCase("list", "reader", list_unit(1), READER, "app"),
        ReadCase(f"list x{DEEP_PAGES}", "anonymous", list_unit(DEEP_PAGES), ANONYMOUS, "app"),
        ReadCase(f"list x{DEEP_PAGES}", "reader", list_unit(DEEP_PAGES), READER, "app"),
        ReadCase("summary", "anonymous", summary, ANONYMOUS, "app"),
        ReadCase("summary", "reader", summary, READER, "app"),
        ReadCase("get", "anonymous", path_unit(random_incident), ANONYMOUS, "app"),
    ]


def check_totals(url: str, loaded: Loaded) -> list[str]:
    """The list's totals and the summary against what was loaded (a sanity check)."""
    notes = []
    for who, headers, internal in (("anonymous", ANONYMOUS, False),
                                   ("reader", READER, True)):
        body = httpx.get(url + LIST_PATH, headers=headers, timeout=30).json()
        expected = loaded.matching[internal]
        verdict = "ok" if body["total"] == expected else f"EXPECTED {expected}"
        notes.append(f"list total ({who}): {body['total']:,} {verdict}")
        if body["total"] < DEEP_PAGES * int(LIST_QUERY["limit"]):
            notes.append(f"  (fewer than {DEEP_PAGES} pages: the x{DEEP_PAGES} walk stops early)")
    summary = httpx.get(url + "/api/v1/incidents/status/summary", headers=READER,
                        timeout=30).json()
    expected = loaded.incidents - loaded.deleted
    verdict = "ok" if summary["total"] == expected else f"EXPECTED {expected:,}"
    notes.append(f"summary total (reader): {summary['total']:,} {verdict} (active "
                 f"{summary['active']:,}, resolved {summary['resolved']:,}, "
                 f"{len(summary['services'])} services)")
    return notes


LIST_PAGE_SQL = (  # the list's page query as projections/queries.py builds it (anonymous)
    "SELECT id FROM incidents i WHERE deleted = %s AND is_public = %s AND status IN (%s) "
    "AND severity IN (%s) ORDER BY created_position DESC LIMIT %s")


def list_plan(url: str) -> str:
    """The plan PostgreSQL picks for the anonymous list's first page, e.g.
    ``Limit > Index Scan Backward (incidents_newest)`` or ``Limit > Sort > Seq Scan``."""
    params = (False, True, "investigating", "high", int(LIST_QUERY["limit"]) + 1)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + LIST_PAGE_SQL, params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]
    nodes, node = [], plan["Plan"]
    while True:
        name = str(node["Node Type"])
        if node.get("Scan Direction") == "Backward":
            name += " Backward"
        if "Index Name" in node:
            name += f" ({node['Index Name']})"
        nodes.append(name)
        children = node.get("Plans") or []
        if not children:
            break
        node = children[0]
    return f"{' > '.join(nodes)}, {float(plan['Execution Time']):.2f} ms"


def has_statistics(url: str, table: str = "incidents") -> bool:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stats WHERE tablename = %s",
                           (table,)).fetchone()
    return bool(row and row[0])


def analyze(url: str) -> float:
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("ANALYZE")
    return time.perf_counter() - began


def bench_reads(url: str, workdir: Path, loaded: Loaded, args: argparse.Namespace
                ) -> tuple[list[ReadResult], list[str]]:
    results: list[ReadResult] = []
    notes: list[str] = []
    cases = read_cases(loaded.public_ids)
    bare_case = next(c for c in cases if c.server == "bare")
    if args.app_server == "cli":
        app = cli_server("app server", url, workdir, projectors=False)
    else:
        app = read_side_server("app", url, workdir)
    # Both servers stay up (an idle one costs nothing); each app case runs right after a
    # bare run, and its ratio is to that run: the box's background load drifts.
    with read_side_server("bare", url, workdir) as bare, app:

        def run_read_case(case: ReadCase, server: Child, args: argparse.Namespace
                          ) -> ReadResult:
            before = run_case_once(bare_case, bare, args)
            results.append(before)
            measured = run_case_once(case, server, args)
            measured.bare = before.result
            return measured

        notes += check_totals(app.url, loaded)
        if not has_statistics(url):
            # As the read tables are after catch-up or a rebuild until autovacuum (off on
            # some servers) analyzes them: one list case as it is, then ANALYZE.
            notes.append(f"list page plan without statistics: {list_plan(url)}")
            few = argparse.Namespace(**{**vars(args), "requests": max(1, args.requests // 4),
                                        "warmup": max(1, args.warmup // 4)})
            first = next(c for c in cases if c.case == "list")
            unanalyzed = ReadCase("list*", first.who, first.unit, first.headers, "app")
            results.append(run_read_case(unanalyzed, app, few))
            notes.append(f"list* = before ANALYZE (no planner statistics on incidents); "
                         f"then ANALYZE took {analyze(url):.1f} s")
        notes.append(f"list page plan with statistics: {list_plan(url)}")
        for case in cases:
            if case.server == "app":
                results.append(run_read_case(case, app, args))
    return results, notes


# --------------------------------------------------------------------------------------
# Part 2: lag from commit to read-table visibility
# --------------------------------------------------------------------------------------


@dataclass
class LagResult:
    mode: str
    after_answer: list[float] = field(default_factory=list)  # lower bound of the lag
    from_send: list[float] = field(default_factory=list)  # upper bound of the lag
    write_latency: list[float] = field(default_factory=list)
    timeouts: int = 0
    polls: int = 0
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def position_poller(database_url: str) -> Iterator[Callable[[], int]]:
    """``SELECT min(position) FROM projection_positions``, each call a fresh snapshot."""
    query = "SELECT min(position) FROM projection_positions"
    if database_url.startswith("sqlite:"):
        path = "/" + urlsplit(database_url).path.lstrip("/")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                isolation_level=None, timeout=30)) as lite:
            def poll_sqlite() -> int:
                row = lite.execute(query).fetchone()
                return int(row[0]) if row and row[0] is not None else 0

            yield poll_sqlite
        return
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        def poll_postgres() -> int:
            row = conn.execute(query, prepare=True).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        yield poll_postgres


def measure_lag(mode: str, api: Child, database_url: str, watch: Sequence[Child],
                args: argparse.Namespace) -> LagResult:
    from bench.commands_http import create_body

    result = LagResult(mode)
    interval = 1.0 / args.write_rate
    rng = random.Random(args.seed)
    total = args.lag_warmup + args.lag_samples
    with keep_alive_client(api.url, WRITER) as client, position_poller(database_url) as poll:
        next_slot = time.perf_counter()
        for number in range(total):
            timed = number >= args.lag_warmup
            # The first sample also waits for a projector process that is still starting.
            timeout = STARTUP_TIMEOUT if number == 0 else LAG_TIMEOUT
            sent = time.perf_counter()
            response = client.post("/api/v1/incidents", json=create_body(number, rng)[1])
            answered = time.perf_counter()
            position = response.headers.get("Store-Position")
            if response.status_code != 201 or position is None:
                result.errors.append(f"{response.status_code}: {response.text[:200]}")
                continue
            target = int(position)
            polls = 0
            while True:
                seen = poll()
                now = time.perf_counter()
                polls += 1
                if seen >= target:
                    break
                if now - answered > timeout:
                    for child in watch:
                        child.check_alive()
                    result.timeouts += timed
                    break
                time.sleep(args.poll_interval)
            if timed and seen >= target:
                result.after_answer.append(now - answered)
                result.from_send.append(now - sent)
                result.write_latency.append(answered - sent)
                result.polls += polls
            next_slot = max(next_slot + interval, time.perf_counter())
            time.sleep(max(0.0, next_slot - time.perf_counter()))
    print(f"  lag {mode:20} p50 {percentile(result.after_answer, 0.5):6.1f} ms "
          f"p99 {percentile(result.after_answer, 0.99):6.1f} ms (after the answer)",
          file=sys.stderr, flush=True)
    return result


def bench_lag(mode: str, pg_url: str, workdir: Path, args: argparse.Namespace) -> LagResult:
    name = mode.replace(" ", "-")
    if mode == "sqlite embedded":
        url = f"sqlite:///{workdir / 'lag.db'}"
        with cli_server(f"{name} serve", url, workdir, projectors=True) as api:
            return measure_lag(mode, api, url, [api], args)
    if mode == "postgres embedded":
        with cli_server(f"{name} serve", pg_url, workdir, projectors=True) as api:
            return measure_lag(mode, api, pg_url, [api], args)
    with cli_server(f"{name} serve", pg_url, workdir, projectors=False) as api, \
            Child(f"{name} project", cli("project"), workdir / f"{name}-project.log",
                  env=cli_env(pg_url)) as projector:
        return measure_lag(mode, api, pg_url, [api, projector], args)


# --------------------------------------------------------------------------------------
# Part 3: rebuild rate
# --------------------------------------------------------------------------------------


@dataclass
class Timed:
    what: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class RebuildResult:
    store_events: int
    raw: list[Timed]
    decoded: Timed
    all_four: Timed | None  # None: it failed (see checks)
    passes: list[Timed]  # each projection rebuilt alone
    checks: list[str]
    mode: str

    @property
    def headline(self) -> Timed | None:
        """The all-four rebuild or, if it failed, the four projections rebuilt one by one."""
        if self.all_four is not None:
            return self.all_four
        if len(self.passes) == 4:
            return Timed("four rebuilt one by one", self.store_events,
                         sum(p.seconds for p in self.passes))
        return None


def raw_read(url: str, table: str) -> Timed:
    """The events table, in order, through a server-side cursor, RAW_BATCH rows a fetch."""
    events = 0
    began = time.perf_counter()
    with psycopg.connect(url, connect_timeout=5) as conn, \
            conn.cursor(name="bench_raw_read") as cursor:
        cursor.itersize = RAW_BATCH
        cursor.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {table} ORDER BY notification_id")
        while rows := cursor.fetchmany(RAW_BATCH):
            events += len(rows)
    return Timed("raw read", events, time.perf_counter() - began)


def decoded_read(projector: Any) -> Timed:
    """What each rebuild pass reads: ``read_events`` batches (keyset, decoded events)."""
    events, position = 0, 0
    began = time.perf_counter()
    while True:
        batch = projector.read_events(position, RAW_BATCH)
        if not batch:
            break
        events += len(batch)
        position = batch[-1].position
    return Timed("read + decode", events, time.perf_counter() - began)


def read_model_state(services: Any) -> dict[str, Any]:
    queries = services.queries
    from domain.visibility import Audience
    from projections.queries import ListFilters

    state: dict[str, Any] = {"summary": queries.summary(audience=Audience.READER)}
    for audience in Audience:
        page = queries.list_incidents(ListFilters(status=("investigating",),
                                                  severity=("high",)), audience=audience)
        state[f"list {audience}"] = (page.total, [item["id"] for item in page.items])
    return state


def bench_rebuild(url: str, breakdown: bool) -> RebuildResult:
    from infra.bootstrap import bootstrap
    from infra.rebuild import rebuild
    from infra.settings import load_settings

    services = bootstrap(load_settings({"DATABASE_URL": url, "API_TOKENS": API_TOKENS}))
    try:
        table = services.event_log.table
        with services.database.transaction() as cursor:
            row = cursor.execute(f"SELECT count(*) FROM {table}").fetchone()
        store_events = int(row[0]) if row else 0
        raw = [raw_read(url, table) for _ in range(2)]
        raw[0].what, raw[1].what = "raw read (1st)", "raw read (2nd)"
        decoded = decoded_read(services.projector)
        before = read_model_state(services)
        projections = list(services.projector.projections)
        # infra.rebuild.rebuild takes one projection (one pass each) or, in newer code, a
        # sequence of them (one pass for all): time whichever this code has.
        rebuild_any: Any = rebuild
        one_pass = "Sequence" in str(inspect.signature(rebuild).parameters["live"].annotation)

        def timed(what: str, chosen: Sequence[Any]) -> Timed:
            began = time.perf_counter()
            if one_pass:
                rebuild_any(services.projector, chosen, None, batch_size=RAW_BATCH)
            else:
                for projection in chosen:
                    rebuild_any(services.projector, projection, None, batch_size=RAW_BATCH)
            done = Timed(what, store_events, time.perf_counter() - began)
            print(f"  {done.what}: {done.rate:,.0f} events/s", file=sys.stderr, flush=True)
            return done

        failures: list[str] = []
        all_four: Timed | None = None
        try:
            all_four = timed("rebuild, all four", projections)
        except Exception as error:  # reported; the breakdown may still work
            failures.append(f"rebuild of all four FAILED: {_failure(error)}")
        passes = []
        if breakdown or all_four is None:
            for projection in projections:
                try:
                    passes.append(timed(f"  {projection.name} alone", [projection]))
                except Exception as error:
                    failures.append(f"rebuild of {projection.name} alone FAILED: "
                                    f"{_failure(error)}")
        after = read_model_state(services)
        checks = [f"summary and list answers after the rebuild "
                  f"{'match' if after == before else 'DIFFER FROM'} those before it",
                  f"incidents has planner statistics after the rebuild: "
                  f"{'yes' if has_statistics(url) else 'no'}; list page plan: {list_plan(url)}",
                  *failures]
    finally:
        services.close()
    mode = ("one pass over the store for all four (infra.rebuild.rebuild(projector, "
            "projections))" if one_pass else "one pass over the store per projection")
    return RebuildResult(store_events, raw, decoded, all_four, passes, checks, mode)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """In milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def print_reads(results: Sequence[ReadResult], notes: Sequence[str]) -> None:
    header = (f"{'case':9} {'caller':9} {'requests':>8} {'errors':>6} {'seconds':>8} "
              f"{'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv cpu ms/req':>14} "
              f"{'bare req/s':>10} {'vs bare':>8}")
    print(header)
    print("-" * len(header))
    bares = [item.result for item in results if item.result.case == "bare"]
    for item in results:
        r = item.result
        if r.case == "bare":
            continue
        bare = item.bare.rate if item.bare else None
        ratio = f"{r.rate / bare:7.0%}" if bare else "-"
        cpu = f"{r.server_cpu / r.requests * 1000:14.2f}" if r.server_cpu is not None else "-"
        print(f"{r.case:9} {item.who:9} {r.requests:8d} {r.failed:6d} {r.seconds:8.2f} "
              f"{r.rate:8.1f} {r.percentile(0.50):7.1f} {r.percentile(0.99):7.1f} "
              f"{cpu:>14} {bare or 0:10.1f} {ratio:>8}")
    if bares:
        rates = sorted(b.rate for b in bares)
        cpus = [b.server_cpu / b.requests * 1000 for b in bares if b.server_cpu is not None]
        p50s = sorted(b.percentile(0.5) for b in bares)
        p99s = sorted(b.percentile(0.99) for b in bares)
        print(f"{'bare':9} {'anonymous':9} {len(bares)} runs of {bares[0].requests}, just "
              f"before each case: {rates[0]:.0f}..{rates[-1]:.0f} req/s (median "
              f"{rates[len(rates) // 2]:.0f}), p50 {p50s[len(p50s) // 2]:.1f} ms, p99 "
              f"{p99s[len(p99s) // 2]:.1f} ms, srv cpu "
              f"{sorted(cpus)[len(cpus) // 2] if cpus else float('nan'):.2f} ms/req (medians); "
              f"errors {sum(b.failed for b in bares)}")
    print()
    for item in results:
        if item.pages:
            pages = ", ".join(f"p{page} {percentile(lat, 0.5):.1f}"
                              for page, lat in sorted(item.pages.items()))
            print(f"list x{DEEP_PAGES} {item.who}: p50 ms by page depth: {pages}")
    for note in notes:
        print(note)
    for item in results:
        r = item.result
        if r.errors:
            print(f"{r.case} {item.who} errors (first few): " + " | ".join(r.errors[:3]))
        bare = item.bare.rate if item.bare else None
        if bare and r.case != "bare":
            share = r.rate / bare
            verdict = "met" if share >= READ_TARGET else "NOT met"
            print(f"target {r.case} ({item.who}) >= {READ_TARGET:.0%} of bare: "
                  f"{share:.0%} -> {verdict}")


def print_lags(results: Sequence[LagResult], args: argparse.Namespace) -> None:
    header = (f"{'mode':20} {'samples':>7} {'t/outs':>6} {'POST p50':>8} "
              f"{'lag>answer p50':>14} {'p99':>6} {'max':>6} "
              f"{'lag>send p50':>12} {'p99':>6} {'polls/s':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.mode:20} {len(r.after_answer):7d} {r.timeouts:6d} "
              f"{percentile(r.write_latency, 0.5):8.1f} "
              f"{percentile(r.after_answer, 0.5):14.1f} {percentile(r.after_answer, 0.99):6.1f} "
              f"{percentile(r.after_answer, 1.0):6.1f} "
              f"{percentile(r.from_send, 0.5):12.1f} {percentile(r.from_send, 0.99):6.1f} "
              f"{r.polls / max(sum(r.after_answer), 1e-9):7.0f}")
    print("(ms; 'lag>answer' runs from receiving the POST's answer to seeing its position in "
          "projection_positions (a lower bound of the commit-to-visibility lag), 'lag>send' "
          "from sending it (an upper bound))")
    for r in results:
        for error in r.errors[:3]:
            print(f"{r.mode} error: {error}")
        low, high = percentile(r.after_answer, 0.99), percentile(r.from_send, 0.99)
        if high < LAG_TARGET_MS and not r.timeouts:
            verdict = "met"
        elif low >= LAG_TARGET_MS or r.timeouts:
            verdict = "NOT met"
        else:
            verdict = "between the bounds"
        print(f"target lag p99 < {LAG_TARGET_MS:.0f} ms, {r.mode}: {low:.1f}..{high:.1f} ms "
              f"-> {verdict}")


def print_rebuild(result: RebuildResult) -> None:
    header = f"{'what':28} {'events':>9} {'seconds':>8} {'events/s':>10} {'vs raw':>7}"
    print(header)
    print("-" * len(header))
    raw = max(t.rate for t in result.raw)
    headline = result.headline
    rows = [*result.raw, result.decoded, *([headline] if headline else []), *result.passes]
    for t in rows:
        print(f"{t.what:28} {t.events:9d} {t.seconds:8.2f} {t.rate:10,.0f} {t.rate / raw:7.1%}")
    print(f"('vs raw' against the faster raw read; 'rebuild, all four' is what `product-status "
          f"projections rebuild` does: {result.mode}; the rows below it rebuild one "
          f"projection each, as a breakdown)")
    for check in result.checks:
        print(check)
    if headline is None:
        print(f"target rebuild >= {REBUILD_TARGET:.0%} of raw read: no figure (failed)")
        return
    share = headline.rate / raw
    verdict = "met" if share >= REBUILD_TARGET else "NOT met"
    print(f"target rebuild >= {REBUILD_TARGET:.0%} of raw read ({headline.what}): "
          f"{share:.1%} -> {verdict}")


def source_fingerprint() -> str:
    """A short hash of the application's sources, to tell which code a run measured (other
    people may be changing it); no git command is run."""
    digest = hashlib.sha256()
    files = sorted(path for package in ("api", "commands", "domain", "infra", "projections")
                   for path in (PROJECT_ROOT / package).rglob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    newest = max(path.stat().st_mtime for path in files)
    changed = datetime.fromtimestamp(newest, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{digest.hexdigest()[:12]} ({len(files)} files, newest change {changed})"


def postgres_info(url: str) -> str:
    found = []
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        for name in ("server_version", "shared_buffers", "fsync", "synchronous_commit",
                     "autovacuum"):
            row = conn.execute(f"SHOW {name}").fetchone()
            found.append(f"{name}={row[0] if row else '?'}")
    return ", ".join(found)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

PARTS = ("reads", "lag", "rebuild")
LAG_MODES = {"pg-embedded": "postgres embedded", "pg-separate": "postgres separate",
             "sqlite-embedded": "sqlite embedded"}


def _bounded(parser: argparse.ArgumentParser, name: str, value: float, low: float,
             high: float) -> None:
    if not low <= value <= high:
        parser.error(f"--{name.replace('_', '-')} must be between {low:g} and {high:g}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Read side: queries beside a bare one-row SELECT, projection lag, "
        "rebuild rate (PostgreSQL from TEST_DATABASE_URL or a throwaway cluster).")
    parser.add_argument("--incidents", type=int, default=100_000,
                        help="incidents loaded before the reads (default 100000)")
    parser.add_argument("--batch", type=int, default=500,
                        help="incidents per commands.save() transaction (default 500)")
    parser.add_argument("--requests", type=int, default=2000,
                        help="timed requests per read case (default 2000)")
    parser.add_argument("--warmup", type=int, default=200,
                        help="untimed requests before each read case (default 200)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="client threads, one keep-alive connection each (default 8)")
    parser.add_argument("--app-server", choices=("bench", "cli"), default="bench",
                        help="the API of the read cases: 'bench' (uvicorn set up as for bare,"
                        " no access log) or 'cli' (product-status serve --no-projectors)")
    parser.add_argument("--lag-samples", type=int, default=300,
                        help="timed lag samples per mode (default 300)")
    parser.add_argument("--lag-warmup", type=int, default=20,
                        help="untimed lag samples first (default 20)")
    parser.add_argument("--write-rate", type=float, default=20.0,
                        help="creates per second in the lag test (default 20)")
    parser.add_argument("--poll-interval", type=float, default=0.0005,
                        help="seconds between position polls (default 0.0005)")
    parser.add_argument("--lag-modes", default=",".join(LAG_MODES),
                        help=f"comma-separated: {', '.join(LAG_MODES)} (default all)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated: {', '.join(PARTS)} (default all)")
    parser.add_argument("--no-rebuild-breakdown", dest="rebuild_breakdown",
                        action="store_false",
                        help="do not also rebuild each projection alone (saves time)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    _bounded(parser, "incidents", args.incidents, 1, 2_000_000)
    _bounded(parser, "batch", args.batch, 1, 10_000)
    _bounded(parser, "requests", args.requests, 1, 1_000_000)
    _bounded(parser, "warmup", args.warmup, 0, 1_000_000)
    _bounded(parser, "concurrency", args.concurrency, 1, 256)
    _bounded(parser, "lag_samples", args.lag_samples, 1, 100_000)
    _bounded(parser, "lag_warmup", args.lag_warmup, 1, 10_000)
    _bounded(parser, "write_rate", args.write_rate, 0.1, 1000)
    _bounded(parser, "poll_interval", args.poll_interval, 0, 1)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    args.lag_modes = [m.strip() for m in args.lag_modes.split(",") if m.strip()]
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")
    if set(args.lag_modes) - set(LAG_MODES):
        parser.error(f"--lag-modes takes {', '.join(LAG_MODES)}")
    return args


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def _failure(error: BaseException) -> str:
    """The error and where it was raised (the innermost frame of the project's code)."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if str(PROJECT_ROOT) in f.filename and ".venv" not in f.filename]
    where = ""
    if ours:
        frame = ours[-1]
        where = f" at {Path(frame.filename).relative_to(PROJECT_ROOT)}:{frame.lineno} " \
                f"({frame.name})"
    print(f"  {type(error).__name__}: {error}{where}", file=sys.stderr, flush=True)
    return f"{type(error).__name__}: {error}{where}"


def _require_loopback(url: str) -> None:
    host = unquote(urlsplit(url).hostname or "")
    if host not in LOOPBACK_HOSTS and not host.startswith("/"):
        raise SystemExit(f"read_side: PostgreSQL must be on the loopback, not {host!r}")


def main(argv: Sequence[str] | None = None) -> None:
    args = command_line(argv, serve, parse_args)
    if args is None:
        return
    started = time.perf_counter()
    fingerprint_before = source_fingerprint()
    load_before = _load_average()
    if os.environ.get("TEST_DATABASE_URL"):
        _require_loopback(os.environ["TEST_DATABASE_URL"])
    print(f"{machine()}, {args.incidents:,} incidents, parts {', '.join(args.parts)}",
          file=sys.stderr, flush=True)
    reads: list[ReadResult] = []
    notes: list[str] = []
    lags: list[LagResult] = []
    rebuilt: RebuildResult | None = None
    failures: list[str] = []
    from infra.bootstrap import bootstrap
    from infra.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-read-side-") as tmp, \
            postgres_database() as url:
        workdir = Path(tmp)
        pg = postgres_info(url)
        services = bootstrap(load_settings({"DATABASE_URL": url, "API_TOKENS": API_TOKENS}))
        try:
            loaded = load_incidents(services, args.incidents, args.batch, args.seed)
        finally:
            services.close()
        if "reads" in args.parts:
            reads, notes = bench_reads(url, workdir, loaded, args)
        if "rebuild" in args.parts:  # before the lag test adds its incidents
            try:
                rebuilt = bench_rebuild(url, args.rebuild_breakdown)
            except Exception as error:  # reported; the other parts still run
                failures.append(f"3. rebuild FAILED: {_failure(error)}")
        if "lag" in args.parts:
            for mode in args.lag_modes:
                try:
                    lags.append(bench_lag(LAG_MODES[mode], url, workdir, args))
                except Exception as error:
                    failures.append(f"2. lag, {LAG_MODES[mode]}, FAILED: {_failure(error)}")
    elapsed = time.perf_counter() - started

    print()
    fingerprint_after = source_fingerprint()
    load_after = _load_average()
    print(f"read side: {machine()}; postgres {pg}")
    print(f"load average (1 min) at start {load_before}, at end {load_after}: other "
          f"processes share these CPUs; each read case is paired with its own bare run")
    print(f"application sources: {fingerprint_before}"
          + ("" if fingerprint_after == fingerprint_before else
             f"; CHANGED during the run, now {fingerprint_after}"))
    print(f"store: {loaded.incidents:,} incidents ({loaded.deleted:,} deleted, "
          f"{len(loaded.public_ids):,} public and undeleted), {loaded.events:,} events, "
          f"written in {loaded.seconds:.1f} s ({loaded.events / loaded.seconds:,.0f} events/s,"
          f" commands.save() of {args.batch} incidents a transaction)")
    print(f"read tables: projector.catch_up() applied {loaded.catch_up_applied:,} events "
          f"(4 projections) in {loaded.catch_up_seconds:.1f} s "
          f"({loaded.catch_up_applied / max(loaded.catch_up_seconds, 1e-9):,.0f} "
          f"applications/s, {loaded.events / max(loaded.catch_up_seconds, 1e-9):,.0f} "
          f"store events/s)")
    if reads:
        server = ("product-status serve --no-projectors" if args.app_server == "cli" else
                  "bench uvicorn process (no access log), projectors not running")
        print()
        print(f"1. reads on PostgreSQL: concurrency {args.concurrency}, {args.requests} "
              f"requests per case (+{args.warmup} warm-up); API: {server}; read tables "
              f"static; list = {LIST_PATH}")
        print_reads(reads, notes)
    if lags:
        print()
        print(f"2. lag from commit to read tables: {args.lag_samples} samples (+"
              f"{args.lag_warmup} warm-up) per mode at {args.write_rate:g} creates/s, "
              f"polling every {args.poll_interval * 1000:g} ms")
        print_lags(lags, args)
    if rebuilt is not None:
        print()
        print(f"3. rebuild rate over {rebuilt.store_events:,} events (in process, "
              f"infra.rebuild.rebuild, batch {RAW_BATCH})")
        print_rebuild(rebuilt)
    for failure in failures:
        print()
        print(failure)
    print()
    print(f"total run time {elapsed:.0f} s")


if __name__ == "__main__":
    main()
