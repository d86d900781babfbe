"""The NATS relay's handler: publishes stored CloudEvents to JetStream, byte for byte, and
calls a batch done once JetStream acknowledged every message of it.

Each document goes to `<topic>.<short type>` in structured mode
(`Content-Type: application/cloudevents+json`) with `Nats-Msg-Id` = the CloudEvent id, so
a batch published again after a crash or a timeout is dropped by JetStream within the
stream's duplicate window.

nats-py is asynchronous: the connection lives on an event loop in a thread of its own
while this worker is active, and `deliver` (called by the follower's thread) waits for
the batch's acknowledgements there. A slow or absent NATS never blocks a command:
connecting and publishing have short timeouts, and failures raise BrokerUnavailable for
the follower to retry with back-off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from infra.event_log import StoredCloudEvent
from infra.follower import Delivering, Unavailable
from infra.relay_config import CONTENT_TYPE, RelayConfig, cloudevent_id, subject_for

log = logging.getLogger("product_status.relay")

T = TypeVar("T")


class BrokerUnavailable(Unavailable):
    """NATS could not be reached, or did not acknowledge in time (the cause is chained)."""


def _describe(error: BaseException) -> str:
    if isinstance(error, BrokerUnavailable):
        return str(error)
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class NatsPublisher(Delivering):
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.name = config.name
        self.batch_size = config.batch_size
        self._lock = threading.Lock()
        self.broker = "not connected"  # or `connected`, `unreachable` (see last_error)
        self.last_error: str | None = None
        self.last_publish_at: datetime | None = None
        self.published = 0  # messages acknowledged since this relay started
        self.duplicates = 0  # of those, repeats JetStream dropped by Nats-Msg-Id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._js: JetStreamContext | None = None
        self._closed: asyncio.Event | None = None  # set when the connection is lost

    # The follower's side.

    def open(self) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                            name=f"{self.name}-nats")
            self._thread.start()
        try:
            self._call(self._connect())
        except BrokerUnavailable as error:
            self._failed(error)
            raise
        with self._lock:
            was, self.broker, self.last_error = self.broker, "connected", None
        if was == "unreachable":
            log.info("%s: NATS at %s is back; catching up", self.name, self.config.broker_url)
        elif was == "not connected":
            log.info("%s: publishing to %s (stream %s)", self.name, self.config.broker_url,
                     self.config.stream)

    def deliver(self, events: Sequence[StoredCloudEvent]) -> None:
        try:
            # nats-py swallows a cancellation while its write buffer is full (a frozen
            # server): the batch's own deadline may never end it, so this one does.
            acks = self._call(self._publish(events),
                              within=self.config.publish_timeout * (2 + len(events) / 64))
        except BrokerUnavailable as error:
            self._failed(error)
            raise
        with self._lock:
            self.published += len(acks)
            self.duplicates += sum(1 for ack in acks if ack.duplicate)
            self.last_publish_at = datetime.now(UTC)

    def close(self) -> None:
        if self._loop is not None:
            self._call(self._disconnect())

    def stopped(self) -> None:
        """Ends the loop. It ran while the worker was active, also between connections:
        a connection nats-py gave up on midway is closed there when its peer closes it."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._cancel_others(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T], within: float | None = None) -> T:
        """Runs `coroutine` on the loop and waits for it, at most `within` seconds (then it
        is cancelled and BrokerUnavailable raised)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout=within)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BrokerUnavailable(f"no acknowledgement within {within:g} s") from None

    def _failed(self, error: BrokerUnavailable) -> None:
        text = _describe(error)
        with self._lock:
            was, self.broker, self.last_error = self.broker, "unreachable", text
        if was != "unreachable":
            log.warning("%s: NATS at %s unreachable (%s); commands go on being stored",
                        self.name, self.config.broker_url, text)
        else:
            log.debug("%s: NATS still unreachable (%s)", self.name, text)

    # On the loop.

    async def _connect(self) -> None:
        """A fresh connection with the stream in place. It does not reconnect by itself: a
        lost connection fails the batch at once, and the follower reconnects with back-off."""
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        async def on_error(error: Exception) -> None:
            log.debug("%s: NATS: %s", self.name, _describe(error))

        timeout = self.config.connect_timeout
        client = self._client = Nats()
        try:
            # max_reconnect_attempts=0 would mean "forever"; 1 means two quick tries.
            await asyncio.wait_for(
                client.connect(
                    self.config.broker_url.split(","),  # tried in random order
                    name=f"product-status {self.name}",
                    connect_timeout=timeout,  # type: ignore[arg-type]  # seconds, any
                    allow_reconnect=False,
                    max_reconnect_attempts=1, reconnect_time_wait=0,
                    ping_interval=10, max_outstanding_pings=2,
                    error_cb=on_error, disconnected_cb=on_closed, closed_cb=on_closed,
                ),
                timeout=2 * timeout + 1,
            )
            self._closed = closed
            self._js = client.jetstream(
                timeout=self.config.publish_timeout,
                publish_async_max_pending=self.config.concurrency)
            await self._ensure_stream(self._js)
        except Exception as error:
            await self._disconnect()
            raise BrokerUnavailable(_describe(error)) from error

    async def _disconnect(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=2)
            # What nats-py leaves open when a connection attempt fails midway, or when a
            # frozen server never takes the last bytes: drop the socket. Also when the
            # transport is already closing: a close() still waiting to flush its buffer
            # to a frozen server would keep the socket open past the loop's end. (Aborting
            # a transport that is closed does nothing.)
            writer = getattr(getattr(client, "_transport", None), "_io_writer", None)
            if writer is not None:
                writer.transport.abort()

    async def _cancel_others(self) -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Creates the stream, or brings its subjects and duplicate window to ours
        (keeping whatever else an operator configured)."""
        name, subject = self.config.stream, f"{self.config.topic}.>"
        window = float(self.config.duplicate_window)
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(StreamConfig(
                name=name, subjects=[subject], duplicate_window=window,
                storage=StorageType.FILE, num_replicas=self.config.replicas,
                description="Incident CloudEvents, published by product-status",
            ))
            log.info("%s: created stream %s (%s, duplicate window %g s)",
                     self.name, name, subject, window)
            return
        config = info.config
        # Ours replaces any narrower subject of the topic (a stream refuses overlaps).
        subjects = [s for s in config.subjects or [] if not s.startswith(f"{self.config.topic}.")]
        subjects.append(subject)
        replicas = self.config.replicas
        if (subjects == config.subjects and abs((config.duplicate_window or 0) - window) < 1e-3
                and (config.num_replicas or 1) == replicas):
            return
        await js.update_stream(config.evolve(subjects=subjects, duplicate_window=window,
                                             num_replicas=replicas))
        log.info("%s: updated stream %s (subjects %s, duplicate window %g s)",
                 self.name, name, ", ".join(subjects), window)

    async def _publish(self, events: Sequence[StoredCloudEvent]) -> list[PubAck]:
        """Publishes in store order with at most `concurrency` messages unacknowledged;
        returns once JetStream acknowledged every one. A timeout leaves it unknown whether
        a message was stored: the follower publishes the batch again, same ids."""
        js, closed = self._js, self._closed
        if js is None or closed is None or closed.is_set():
            raise BrokerUnavailable("connection lost")
        topic, timeout = self.config.topic, self.config.publish_timeout
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            # One deadline, pushed back as acknowledgements free room for more messages
            # (a timeout per message would cost a task per message).
            async with asyncio.timeout(timeout) as deadline:
                for number, event in enumerate(events):
                    futures.append(await js.publish_async(
                        subject_for(topic, event.type), event.document,
                        headers={Header.MSG_ID.value: cloudevent_id(event.document),
                                 "Content-Type": CONTENT_TYPE},
                    ))
                    if number % 64 == 0:
                        deadline.reschedule(loop.time() + timeout)
                deadline.reschedule(loop.time() + timeout)
                # Exceptions as results: a gather that fails or is cancelled with no one
                # awaiting it would be logged as "exception never retrieved".
                acks = asyncio.gather(*futures, return_exceptions=True)
                lost = asyncio.ensure_future(closed.wait())
                waiters: set[asyncio.Future[Any]] = {acks, lost}
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lost.cancel()
                if not acks.done():
                    raise ConnectionError("connection lost")
                results: list[PubAck] = []
                for result in acks.result():
                    if isinstance(result, BaseException):
                        raise result
                    results.append(result)
                return results
        except Exception as error:
            for future in futures:  # settle every one, so none is left unretrieved
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
            text = (f"no acknowledgement within {timeout:g} s" if isinstance(error, TimeoutError)
                    else _describe(error))
            raise BrokerUnavailable(text) from error
