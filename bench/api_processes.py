"""Reads through 1, 2 and 4 API processes (`serve --no-projectors --no-relay`) on one
PostgreSQL: requests/s and latency, and the ratio to one process.

    .venv/bin/python -m bench.api_processes [--incidents 2000] [--seconds 8]

The load comes from several client processes (threads in one would be bound by its
interpreter lock), spread round-robin over the API processes: anonymous reads of one
incident, and every fourth request a list page. Everything shares this machine's CPUs:
the figures say how far more API processes help here, not on separate machines.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.harness import Child, free_port

PROCESS_COUNTS = (1, 2, 4)
CLIENT_PROCESSES = 4
THREADS_PER_CLIENT = 8


def _client(urls: list[str], ids: list[str], seconds: float, seed: int,
            results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(n: int) -> None:
        nonlocal errors
        rng = random.Random(seed * 100 + n)
        mine: list[float] = []
        failed = 0
        with httpx.Client(base_url=urls[n % len(urls)], timeout=30) as client:
            count = 0
            while time.perf_counter() < stop_at:
                path = ("/api/v1/incidents?limit=20" if count % 4 == 3
                        else f"/api/v1/incidents/{rng.choice(ids)}")
                began = time.perf_counter()
                if client.get(path).status_code != 200:
                    failed += 1
                mine.append(time.perf_counter() - began)
                count += 1
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS_PER_CLIENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((latencies, errors))


def measure(urls: list[str], ids: list[str], seconds: float) -> tuple[float, float, float, int]:
    """Requests/s, p50 and p99 latency (ms), errors, over `seconds` of load."""
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    clients = [multiprocessing.Process(target=_client, args=(urls, ids, seconds, n, results))
               for n in range(CLIENT_PROCESSES)]
    for client in clients:
        client.start()
    latencies: list[float] = []
    errors = 0
    for _ in clients:
        found, failed = results.get()
        latencies += found
        errors += failed
    for client in clients:
        client.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / seconds, statistics.median(latencies) * 1000, p99, errors


def cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "product-status"), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    from infra.bootstrap import bootstrap
    from infra.settings import load_settings
    from tests.servers import create_database, drop_database, postgres_server

    with postgres_server() as server, tempfile.TemporaryDirectory() as tmp:
        url = create_database(server)
        try:
            env = {**os.environ, "DATABASE_URL": url, "HOST": "127.0.0.1",
                   "API_TOKENS": "writer:bench-writer"}
            services = bootstrap(load_settings({"DATABASE_URL": url}))
            from commands.application import NewIncident
            ids = [services.commands.create(NewIncident(title=f"bench {n}")).incident_id
                   for n in range(args.incidents)]
            services.close()
            subprocess.run(cli("projections", "rebuild"), env=env, check=True,
                           capture_output=True)
            print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
                  f"{args.incidents} incidents; {CLIENT_PROCESSES} client processes x "
                  f"{THREADS_PER_CLIENT} threads; {args.seconds:g} s per run")
            first = None
            for count in PROCESS_COUNTS:
                servers = []
                for n in range(count):
                    port = free_port()
                    servers.append(Child(f"api {n}", cli("serve", "--no-projectors",
                                                         "--no-relay"),
                                         Path(tmp) / f"api-{count}-{n}.log",
                                         env={**env, "PORT": str(port)}, port=port))
                for child in servers:
                    child.__enter__()
                try:
                    urls = [child.url for child in servers]
                    measure(urls, ids, 1.0)  # warm up
                    rate, p50, p99, errors = measure(urls, ids, args.seconds)
                finally:
                    for child in servers:
                        child.stop()
                first = first or rate
                print(f"{count} API process(es): {rate:7.0f} reads/s  x{rate / first:.2f}  "
                      f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  errors {errors}")
        finally:
            drop_database(url)


if __name__ == "__main__":
    main()
