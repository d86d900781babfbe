"""The store's head shared by token reads (api/store_head.py): a request only takes the
answer of a query that started after it arrived; requests arriving while one query runs
share the next one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from api.store_head import SharedHead

WAIT = 30.0


class Store:
    """A head that grows by one at each query; each query blocks until let go."""

    def __init__(self) -> None:
        self.head = 0
        self.started: list[int] = []  # the head each query read, as it started
        self.gates: list[threading.Event] = []
        self.lock = threading.Lock()

    def read(self) -> int:
        gate = threading.Event()
        with self.lock:
            self.head += 1
            self.started.append(self.head)
            self.gates.append(gate)
            head = self.head
        assert gate.wait(WAIT)
        return head

    async def queries_started(self, count: int) -> None:
        while len(self.started) < count:
            await asyncio.sleep(0.001)


def test_requests_share_only_queries_started_after_they_arrived() -> None:
    async def scenario() -> None:
        store = Store()
        shared = SharedHead(store.read)
        first = asyncio.create_task(shared.read())
        await store.queries_started(1)
        # Two requests arrive while the first query runs: they wait for the next one.
        second = [asyncio.create_task(shared.read()) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert len(store.started) == 1
        store.gates[0].set()
        assert await first == 1
        await store.queries_started(2)
        # One more arrives while the second query runs: it takes a third.
        third = asyncio.create_task(shared.read())
        await asyncio.sleep(0.01)
        assert not any(t.done() for t in second)
        store.gates[1].set()
        assert [await t for t in second] == [2, 2]
        await store.queries_started(3)
        store.gates[2].set()
        assert await third == 3
        assert shared.queries == 3
        # Nobody waiting: the next request starts a query of its own at once.
        fourth = asyncio.create_task(shared.read())
        await store.queries_started(4)
        store.gates[3].set()
        assert await fourth == 4

    asyncio.run(scenario())


def test_a_request_given_up_on_leaves_the_query_to_the_others() -> None:
    async def scenario() -> None:
        store = Store()
        shared = SharedHead(store.read)
        starting = asyncio.create_task(shared.read())
        await store.queries_started(1)
        leaving, staying = (asyncio.create_task(shared.read()) for _ in range(2))
        await asyncio.sleep(0.01)
        starting.cancel()  # (its client left: the query runs on for the others)
        leaving.cancel()
        store.gates[0].set()
        await store.queries_started(2)
        store.gates[1].set()
        assert await staying == 2
        assert starting.cancelled()
        assert leaving.cancelled()
        assert shared.queries == 2

    asyncio.run(scenario())


def test_a_failed_query_fails_its_requests_and_the_next_one_is_asked_again() -> None:
    calls: list[int] = []

    def read() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("the store is away")
        return 7

    async def scenario() -> None:
        shared = SharedHead(read)
        with pytest.raises(ConnectionError):
            await shared.read()
        assert await shared.read() == 7

    asyncio.run(scenario())
