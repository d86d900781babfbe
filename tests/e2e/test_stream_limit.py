"""MAX_EVENT_STREAMS: the live event streams open at once in one server are bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from infra.settings import Settings
from tests.conftest import READER, LiveServer, make_settings

STREAM = "/api/v1/events/stream"
WAIT = 15.0


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, MAX_EVENT_STREAMS="5")


@contextmanager
def open_stream(server: LiveServer, **headers: str) -> Iterator[httpx.Response]:
    timeout = httpx.Timeout(10.0, read=5.0)
    with httpx.Client(base_url=server.url, timeout=timeout) as client, \
            client.stream("GET", STREAM, headers=headers) as response:
        if response.status_code == 200:
            # The stream is open once its first bytes (the retry hint) arrived; the
            # iterator is kept, as dropping it would close the connection.
            chunks = response.iter_raw()
            assert next(chunks).startswith(b"retry:")
        else:
            response.read()
        yield response


def test_streams_beyond_the_limit_get_503_until_one_closes(live_server: LiveServer) -> None:
    with ExitStack() as streams:
        first = ExitStack()
        opened = [first.enter_context(open_stream(live_server, **READER))]
        opened += [streams.enter_context(open_stream(live_server, **READER))
                   for _ in range(2)]
        opened += [streams.enter_context(open_stream(live_server)) for _ in range(2)]
        assert [s.status_code for s in opened] == [200] * 5

        with open_stream(live_server) as refused:
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) > 0
            assert refused.json()["status"] == 503
            assert "at most 5" in refused.json()["detail"]
        with httpx.Client(base_url=live_server.url) as other:  # the rest of the API answers
            assert other.get("/healthz").status_code == 200

        first.close()  # one stream ends: its place is free for a new one
        deadline = time.monotonic() + WAIT
        while True:
            attempt = streams.enter_context(open_stream(live_server))
            if attempt.status_code == 200:
                break
            assert time.monotonic() < deadline, "the closed stream's place was not freed"
            time.sleep(0.05)
        with open_stream(live_server, **READER) as over:
            assert over.status_code == 503
