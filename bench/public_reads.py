"""The public reads in a flood: each figure beside a bare endpoint in the same run.

A fresh PostgreSQL database (``TEST_DATABASE_URL`` or a throwaway cluster), dropped
afterwards; ``--incidents`` incidents (default 100,000) over ``--services`` services
(default 200) are written straight through the commands application in batches and the
read tables built with ``projector.catch_up()`` (as bench/read_side.py does). It is a past
history: all but the newest ``--ongoing`` (default 20) are resolved by its end. (Left as
bench/read_side.py leaves them, most stay active, and at 100,000 the status page's 90-day
bars list each of ~60,000 ongoing incidents on every day since it began: a 255 MB page.)
Then, each in a child process on a loopback port:

* **app**: the real API (``create_app``) with its projectors running;
* **bare**: a bare FastAPI app (same uvicorn setup) that, at start, fetches from the app
  the answers measured here and returns the same bytes from memory (``async`` routes,
  304 to their ETag; gzip-coded where the app codes them, as the clients accept gzip),
  plus a one-row ``SELECT * FROM incidents WHERE id = %s`` through a
  psycopg pool sized like the app's.

``--concurrency`` client threads with keep-alive connections call for ``--seconds`` a
case (each app case right after a bare run of its own, both servers up; its ratio is to
that run):

1. warm answers: ``/``, ``/api/v2/summary.json`` and ``/api/v1/services`` (when the app
   has them; else a note), the RSS feed, a badge -- beside the bare bytes;
2. 304s: the same with ``If-None-Match`` (the newest ETag the clients know, as a cache
   sends it: a per-minute answer changes when its minute turns) -- beside a bare 304;
3. the list, page 1 and page 50 (``limit=20``, by ``next_cursor``), anonymous (kept
   answers) and with a reader token (kept for token holders too, each request checked
   against the store's head: one query shared by the requests arriving together) --
   beside the bare one-row SELECT;
4. p50/p99 of ``/`` for ``--write-seconds`` while ``--write-rate`` (50) creates per
   second are sent through the API by ``--writers`` (5) clients, and how many landed;
5. ``/`` with ``serve --workers 4`` (4 API processes on one port, SO_REUSEPORT), beside
   ``serve --workers 1`` and ``2``, with how many cores the server and the clients kept
   busy: one process is bound to one core, and what more processes add is bounded by the
   cores the clients leave (on 2 cores, none to speak of).

The clients are `bench.harness.RawClient`s: keep-alive HTTP/1.1 that reads each answer's
bytes as sent, gzip-coded where the server codes them, and does not inflate them (a crowd
does that on its own machines; here it would measure the client: httpx inflating the 0.8 MB
status page of 200 services costs more CPU than the server spends sending it).

Targets (reported, never enforced): warm >= 90% of bare, 304s >= 95%, list >= 80% of
the bare SELECT, p99 of ``/`` under writes < 50 ms.

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.public_reads --incidents 100000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi import Request, Response  # the bare app's annotations, resolved at import

from bench.harness import (
    LOOPBACK,
    Child,
    RawClient,
    Result,
    command_line,
    cpu_seconds,
    free_port,
    keep_alive_client,
    machine,
    postgres_database,
    serve_arguments,
    serve_on_loopback,
)
from bench.read_side import (
    ANONYMOUS,
    API_TOKENS,
    READER,
    WRITER,
    Sample,
    Unit,
    bare_pool,
    drive,
    incident_row,
    load_incidents,
    percentile,
)

WARM_TARGET, NOT_MODIFIED_TARGET, LIST_TARGET, P99_TARGET_MS = 0.90, 0.95, 0.80, 50.0
LIST = "/api/v1/incidents?limit=20"
DEEP_PAGE = 50
# What the bare app keeps, by name: the app's path (optional ones only if the app has them).
ANSWERS = {"page": "/", "rss": "/api/v1/incidents/rss/feed", "badge": "/badge.svg",
           "summary.json": "/api/v2/summary.json", "services": "/api/v1/services"}
OPTIONAL = ("summary.json", "services")

# --------------------------------------------------------------------------------------
# Servers (child processes: ``python -m bench.public_reads _serve ...``)
# --------------------------------------------------------------------------------------


def _app_server(database_url: str, _: str) -> tuple[Any, Callable[[], None]]:
    from api.app import create_app
    from infra.bootstrap import bootstrap
    from infra.settings import load_settings

    settings = load_settings({"DATABASE_URL": database_url, "API_TOKENS": API_TOKENS,
                              "RATE_LIMIT_WRITES_PER_MINUTE": "1000000"})
    services = bootstrap(settings)
    services.start_projections()
    return create_app(services), services.close


def _bare_server(database_url: str, app_url: str) -> tuple[Any, Callable[[], None]]:
    from fastapi import FastAPI

    # The answers' bytes as sent (gzip-coded when the app codes them: the clients accept
    # gzip, as httpx does by default), their type, ETag and coding.
    kept: dict[str, tuple[bytes, str, str, dict[str, str]]] = {}
    for name, path in ANSWERS.items():
        with httpx.stream("GET", app_url + path, timeout=60) as got:
            body = b"".join(got.iter_raw())
        if got.status_code == 200 and "etag" in got.headers:  # a kept answer
            coding = ({"Content-Encoding": got.headers["content-encoding"]}
                      if "content-encoding" in got.headers else {})
            kept[name] = (body, got.headers["content-type"], got.headers["etag"], coding)
    pool = bare_pool(database_url)
    app = FastAPI(title="bare")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare/bytes/{name}")
    async def bare_bytes(name: str, request: Request) -> Response:
        body, media_type, etag, coding = kept[name]
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag, **coding})
        return Response(body, media_type=media_type, headers={"ETag": etag, **coding})

    @app.get("/bare/row/{incident_id}")
    def bare_row(incident_id: str) -> Any:
        return incident_row(pool, incident_id)

    return app, pool.close


def serve(argv: Sequence[str]) -> None:
    parser = serve_arguments("public_reads _serve")
    parser.add_argument("--app-url", default="")
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args(argv)
    build = _app_server if args.kind == "app" else _bare_server
    app, close = build(args.database_url, args.app_url)
    serve_on_loopback(app, args.port, close, reuse_port=args.reuse_port)


def server(kind: str, database_url: str, workdir: Path, *, port: int | None = None,
           app_url: str = "", reuse_port: bool = False, name: str | None = None) -> Child:
    port = port or free_port()
    argv = [sys.executable, "-m", "bench.public_reads", "_serve", "--kind", kind,
            "--database-url", database_url, "--port", str(port), "--app-url", app_url]
    if reuse_port:
        argv.append("--reuse-port")
    name = name or kind
    return Child(name, argv, workdir / f"{name}.log", port=port)


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def fetch(path: str | Callable[[random.Random], str], expect: int = 200) -> Unit:
    """One GET; its answer must be `expect` (counted as a 200 then)."""

    def unit(client: RawClient, rng: random.Random, errors: list[str]) -> list[Sample]:
        asked = path if isinstance(path, str) else path(rng)
        began = time.perf_counter()
        try:
            response = client.get(asked)
        except httpx.HTTPError as error:
            errors.append(f"{type(error).__name__}: {error}")
            return [(time.perf_counter() - began, 0)]
        latency = time.perf_counter() - began
        if response.status_code != expect:
            errors.append(f"{asked}: {response.status_code} {response.text[:200]}")
            return [(latency, response.status_code or 599)]
        return [(latency, 200)]

    return unit


def revalidate(path: str, etag: str, refreshed: Counter[str]) -> Unit:
    """One conditional GET with the newest ETag the clients know, as a browser's or CDN's
    cache sends: a 304, or (the answer changed: a write, or a per-minute answer's minute
    turned) a 200 whose ETag the clients send from then on, counted in `refreshed`."""
    known = [etag]

    def unit(client: RawClient, rng: random.Random, errors: list[str]) -> list[Sample]:
        began = time.perf_counter()
        try:
            response = client.get(path, headers={"If-None-Match": known[0]})
        except httpx.HTTPError as error:
            errors.append(f"{type(error).__name__}: {error}")
            return [(time.perf_counter() - began, 0)]
        latency = time.perf_counter() - began
        if response.status_code == 200 and "etag" in response.headers:
            known[0] = response.headers["etag"]
            refreshed[path] += 1
        elif response.status_code != 304:
            errors.append(f"{path}: {response.status_code} {response.text[:200]}")
            return [(latency, response.status_code or 599)]
        return [(latency, 200)]

    return unit


@dataclass
class Case:
    name: str
    unit: Unit
    headers: dict[str, str]
    bare_unit: Unit
    bare_headers: dict[str, str]
    target: float


@dataclass
class Measured:
    name: str
    app: Result
    bare: Result
    target: float


def run(name: str, child: Child, unit: Unit, headers: dict[str, str],
        args: argparse.Namespace, duration: float | None = None) -> Result:
    """As many of `unit` as `duration` (else `args.seconds`) seconds take, after
    `args.warmup`."""
    drive(child.url, unit, args.warmup, args.concurrency, headers, RawClient)
    cpu_before, client_before = cpu_seconds(child.pid), time.process_time()
    seconds, done, errors = drive(child.url, unit, sys.maxsize, args.concurrency, headers,
                                  RawClient, duration or args.seconds)
    cpu_after, client_cpu = cpu_seconds(child.pid), time.process_time() - client_before
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    latencies = [latency for samples in done for latency, _ in samples]
    statuses: Counter[int] = Counter(status for samples in done for _, status in samples)
    result = Result("postgres", name, len(latencies), seconds, latencies, statuses, cpu,
                    errors, client_cpu)
    print(f"  {name:28} {result.rate:8.1f} req/s", file=sys.stderr, flush=True)
    return result


def etag_of(url: str, path: str, headers: dict[str, str] | None = None) -> str:
    got = httpx.get(url + path, headers=headers, timeout=60)
    assert got.status_code == 200, (path, got.status_code, got.text[:200])
    return got.headers["etag"]


def deep_cursor_path(url: str, headers: dict[str, str], pages: int) -> str:
    """The list's URL of page `pages`, found by walking `next_cursor`."""
    path = LIST
    for _ in range(pages - 1):
        body = httpx.get(url + path, headers=headers, timeout=60).json()
        if not body.get("next_cursor"):
            break
        path = f"{LIST}&cursor={body['next_cursor']}"
    return path


def cases(app: Child, bare: Child, public_ids: Sequence[str], notes: list[str],
          refreshed: Counter[str]) -> list[Case]:
    paths = set(httpx.get(app.url + "/openapi.json", timeout=60).json()["paths"])
    found: list[Case] = []
    for name, path in ANSWERS.items():
        if name in OPTIONAL and path not in paths:
            notes.append(f"{path} is not served by this version: skipped")
            continue
        if "etag" not in httpx.get(app.url + path, timeout=60).headers:
            notes.append(f"{path} is not a kept answer (no ETag): skipped")
            continue
        bare_path = f"/bare/bytes/{name}"
        found.append(Case(f"warm {path}", fetch(path), ANONYMOUS, fetch(bare_path), ANONYMOUS,
                          WARM_TARGET))
        found.append(Case(f"304 {path}", revalidate(path, etag_of(app.url, path), refreshed),
                          ANONYMOUS, revalidate(bare_path, etag_of(bare.url, bare_path),
                                                refreshed), ANONYMOUS, NOT_MODIFIED_TARGET))
    rows = fetch(lambda rng: f"/bare/row/{rng.choice(public_ids)}")
    for who, headers in (("anonymous", ANONYMOUS), ("reader", READER)):
        deep = deep_cursor_path(app.url, headers, DEEP_PAGE)
        found.append(Case(f"list page 1 ({who})", fetch(LIST), headers, rows, ANONYMOUS,
                          LIST_TARGET))
        found.append(Case(f"list page {DEEP_PAGE} ({who})", fetch(deep), headers, rows,
                          ANONYMOUS, LIST_TARGET))
    return found


def bench_cases(app: Child, bare: Child, public_ids: Sequence[str],
                args: argparse.Namespace, notes: list[str]) -> list[Measured]:
    measured = []
    refreshed: Counter[str] = Counter()
    for case in cases(app, bare, public_ids, notes, refreshed):
        bare_result = run(f"bare for {case.name}", bare, case.bare_unit, case.bare_headers,
                          args)
        app_result = run(case.name, app, case.unit, case.headers, args)
        measured.append(Measured(case.name, app_result, bare_result, case.target))
    notes.extend(f"304 {path}: {count} answer(s) changed during the case (200 and a new "
                 "ETag: a minute turned)" for path, count in sorted(refreshed.items()))
    return measured


@dataclass
class UnderWrites:
    reads: Result
    writes: int
    write_errors: int
    rate: float


def bench_under_writes(app: Child, args: argparse.Namespace) -> UnderWrites:
    """`/` read by the clients while creates land at `--write-rate` per second, from
    `--writers` clients, each on its own schedule (an open loop: a slow answer does not
    lower the rate asked, as with the on-call engineers and alerting systems writing)."""
    stop = threading.Event()
    lock = threading.Lock()
    written: list[int] = [0, 0]  # done, failed

    def writer(number: int) -> None:
        interval = args.writers / args.write_rate
        with keep_alive_client(app.url, WRITER) as client:
            next_at = time.perf_counter() + interval * number / args.writers
            sent = 0
            while not stop.is_set():
                time.sleep(max(0.0, next_at - time.perf_counter()))
                sent += 1
                try:
                    answer = client.post("/api/v1/incidents", json={
                        "title": f"Flood {number}-{sent}", "severity": "high",
                        "affected_services": ["service-0"]})
                    failed = answer.status_code != 201
                except httpx.HTTPError:
                    failed = True
                with lock:
                    written[1 if failed else 0] += 1
                next_at += interval

    threads = [threading.Thread(target=writer, args=(n,), daemon=True)
               for n in range(args.writers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        reads = run("/ under writes", app, fetch("/"), ANONYMOUS, argparse.Namespace(
            **{**vars(args), "warmup": 10}), duration=args.write_seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    seconds = time.perf_counter() - began
    return UnderWrites(reads, written[0], written[1], written[0] / seconds)


@contextlib.contextmanager
def processes(url: str, workdir: Path, count: int) -> Iterator[Child]:
    """`product-status serve --workers count`: API processes on one port (SO_REUSEPORT)."""
    port = free_port()
    cli = str(Path(sys.executable).parent / "product-status")
    env = {**os.environ, "DATABASE_URL": url, "API_TOKENS": API_TOKENS, "HOST": LOOPBACK,
           "PORT": str(port), "RATE_LIMIT_WRITES_PER_MINUTE": "1000000"}
    with Child(f"serve-workers-{count}", [cli, "serve", "--workers", str(count)],
               workdir / f"serve-workers-{count}.log", env=env, port=port) as child:
        yield child


def print_figures(measured: Sequence[Measured], under: UnderWrites | None,
                  scaling: dict[int, Result], notes: Sequence[str]) -> None:
    header = (f"{'case':34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms/req':>10} "
              f"{'bare req/s':>10} {'bare cpu':>8} {'vs bare':>8} {'target':>7}")
    print(header)
    print("-" * len(header))
    for m in measured:
        cpu = (f"{m.app.server_cpu / m.app.requests * 1000:10.2f}"
               if m.app.server_cpu is not None else f"{'-':>10}")
        bare_cpu = (f"{m.bare.server_cpu / m.bare.requests * 1000:8.2f}"
                    if m.bare.server_cpu is not None else f"{'-':>8}")
        share = m.app.rate / m.bare.rate if m.bare.rate else 0.0
        verdict = "ok" if share >= m.target else "BELOW"
        print(f"{m.name[:34]:34} {m.app.rate:8.1f} {m.app.percentile(0.5):7.2f} "
              f"{m.app.percentile(0.99):7.2f} {cpu} {m.bare.rate:10.1f} {bare_cpu} {share:8.0%} "
              f"{m.target:6.0%} {verdict}")
        if m.app.failed or m.bare.failed:
            print(f"  errors: app {m.app.failed} {m.app.errors[:2]}, bare {m.bare.failed} "
                  f"{m.bare.errors[:2]}")
    if under is not None:
        p99 = percentile(under.reads.latencies, 0.99)
        print(f"\n/ while {under.rate:.1f} writes/s landed ({under.writes} creates, "
              f"{under.write_errors} failed): {under.reads.rate:.1f} req/s, p50 "
              f"{percentile(under.reads.latencies, 0.5):.2f} ms, p99 {p99:.2f} ms "
              f"(target < {P99_TARGET_MS:.0f} ms: {'ok' if p99 < P99_TARGET_MS else 'ABOVE'})")
    if scaling:
        base = scaling.get(1)
        for count, result in sorted(scaling.items()):
            ratio = f"{result.rate / base.rate:.2f}x of 1 process" if base else ""
            busy = (f", busy: the server {result.server_cpu / result.seconds:.2f} and the "
                    f"clients {(result.client_cpu or 0) / result.seconds:.2f} of "
                    f"{os.cpu_count()} cores" if result.server_cpu is not None else "")
            print(f"/ with {count} API process(es) on one port: {result.rate:.1f} req/s, "
                  f"p99 {result.percentile(0.99):.2f} ms {ratio}{busy}")
    for note in notes:
        print(f"note: {note}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.public_reads",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--ongoing", type=int, default=20,
                        help="the newest incidents that may still be active; the older "
                             "ones are resolved")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--seconds", type=float, default=5.0, help="per case")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--write-rate", type=float, default=50.0)
    parser.add_argument("--writers", type=int, default=5,
                        help="clients sharing the write rate (each writes at rate/writers, "
                             "whether or not its last write was answered)")
    parser.add_argument("--write-seconds", type=float, default=30.0,
                        help="how long / is read while the writes land")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--keep", action="store_true",
                        help="keep the seeded database (its URL is printed) for --database-url")
    parser.add_argument("--database-url", default="",
                        help="measure this database as it is, seeded by a run with --keep "
                             "(no seeding; --incidents and the like are not used)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def seeded(args: argparse.Namespace, names: Sequence[str],
           notes: list[str]) -> Iterator[tuple[str, list[str]]]:
    """A database of the history the arguments ask for, and its public incidents' ids: a
    fresh one, seeded and dropped at the end; or `--database-url`'s, as it is (seeded by
    an earlier run with `--keep`; the writes of the case under writes stay in it)."""
    from infra.bootstrap import bootstrap
    from infra.settings import load_settings

    if args.database_url:
        with psycopg.connect(args.database_url, autocommit=True) as connection:
            public_ids = [str(row[0]) for row in connection.execute(
                "SELECT id FROM incidents WHERE is_public AND NOT deleted")]
        notes.append(f"database {args.database_url} as it was: {len(public_ids):,} public "
                     "incidents")
        yield args.database_url, public_ids
        return
    with postgres_database(keep=args.keep) as url:
        services = bootstrap(load_settings({"DATABASE_URL": url, "API_TOKENS": API_TOKENS}))
        try:
            loaded = load_incidents(services, args.incidents, args.batch, args.seed, names,
                                    ongoing=args.ongoing)
        finally:
            services.close()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ANALYZE")
        notes.append(f"seeding: {loaded.events:,} events written in {loaded.seconds:.1f} s, "
                     f"read tables built (catch_up) in {loaded.catch_up_seconds:.1f} s")
        if args.keep:
            notes.append(f"kept the database: --database-url {url}")
        yield url, loaded.public_ids


def main(argv: Sequence[str] | None = None) -> None:
    args = command_line(argv, serve, parse_args)
    if args is None:
        return

    print(f"{machine()}, {args.incidents:,} incidents over {args.services} services "
          f"(the newest {args.ongoing} may be ongoing), {args.concurrency} clients, "
          f"{args.seconds:g} s a case", flush=True)
    names = tuple(f"service-{n}" for n in range(args.services))
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-public-reads-") as tmp, \
            seeded(args, names, notes) as (url, public_ids):
        workdir = Path(tmp)
        with server("app", url, workdir) as app, \
                server("bare", url, workdir, app_url=app.url) as bare:
            notes.append(f"start-up: app ready in {app.ready_seconds:.1f} s, bare (fetching "
                         f"the app's answers) in {bare.ready_seconds:.1f} s")
            measured = bench_cases(app, bare, public_ids, args, notes)
            under = bench_under_writes(app, args)
        scaling: dict[int, Result] = {}
        for count in sorted({1, 2, args.processes}):
            with processes(url, workdir, count) as many:
                notes.append(f"start-up: serve --workers {count} ready in "
                             f"{many.ready_seconds:.1f} s")
                scaling[count] = run(f"/ with {count} process(es)", many, fetch("/"),
                                     ANONYMOUS, args)
    print()
    print_figures(measured, under, scaling, notes)


if __name__ == "__main__":
    main()
