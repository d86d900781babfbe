"""Server-sent events of the stored CloudEvents: one stream's reading of the store, its
frames and the response that writes them."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.stream_slots import StreamSlot
from domain.visibility import AUDITABLE, Audience, event_for
from infra.bootstrap import Services
from infra.event_log import EventLog
from infra.store_watch import StoreWatch

log = logging.getLogger("product_status.stream")


KEEP_ALIVE = b": keep-alive\n\n"


@dataclass(frozen=True)
class StreamConfig:
    """How live streams behave; `app.state.event_stream` overrides the defaults."""

    heartbeat: float = 15.0  # seconds of silence before a keep-alive comment
    retry_ms: int = 3000  # the reconnection delay suggested to EventSource clients
    queue_size: int = 64  # events read from the store that wait for the client's socket
    batch_size: int = 100  # events read from the store per call
    stall_timeout: float = 10.0  # a client that takes nothing for this long is dropped
    end_grace: float = 2.0  # time given to the last write of a stream that ends
    lag_warning: float = 5.0  # warn when the read tables lag this long behind the store


def stream_config(state: State) -> StreamConfig:
    found = getattr(state, "event_stream", None)
    return found if isinstance(found, StreamConfig) else StreamConfig()


def sse_frame(position: int, document: bytes) -> bytes:
    """One SSE event; a document is one line, but a line break would end `data:`."""
    lines = document.splitlines() or [b""]
    return b"id: %d\n%s\n" % (position, b"".join(b"data: " + line + b"\n" for line in lines))


@dataclass(frozen=True)
class _Batch:
    frames: list[bytes]
    last: int  # the position read up to, sent or not
    full: bool  # more events may follow at once


class StreamFeed:
    """Reads the store for one stream, in short worker-thread calls."""

    def __init__(self, services: Services, watch: StoreWatch, *, audience: Audience,
                 config: StreamConfig) -> None:
        self.log: EventLog = services.event_log
        self.services = services
        self.watch = watch
        self.audience = audience
        self.config = config

    async def next_batch(self, after: int, generation: int) -> _Batch | None:
        """The events after `after` that this stream may send, as of at least the watch's
        `generation` (read once for every stream that asks the same); None if the watch
        closed while waiting for the read tables."""
        key = (self.audience, after, self.config.batch_size, generation)
        return await self.watch.shared(key, lambda: self._read(after))

    async def _read(self, after: int) -> _Batch | None:
        limit = self.config.batch_size
        events = await anyio.to_thread.run_sync(self.log.read, after, limit)
        if not events:
            return _Batch([], after, False)
        last, full = events[-1].position, len(events) == limit
        if not AUDITABLE[self.audience]:  # the whole audit log, byte for byte
            return _Batch([sse_frame(e.position, e.document) for e in events], last, full)
        head = await anyio.to_thread.run_sync(self.log.last_position)
        visible = await self._visible({e.subject for e in events}, head)
        if visible is None:
            return None
        frames = []
        for event in events:
            document = (event_for(self.audience, event.document)
                        if event.subject in visible else None)
            if document is not None:
                frames.append(sse_frame(event.position, document))
        return _Batch(frames, last, full)

    async def _visible(self, incident_ids: set[str], head: int) -> set[str] | None:
        """The incidents among these whose events this stream may send, as of at least
        `head`, the store's head after the events were read: waits (asynchronously) until
        the read tables reached it."""
        pause, waited, warned = 0.005, 0.0, False
        queries = self.services.queries
        conditions = AUDITABLE[self.audience]
        while not self.watch.closed:
            visible = await anyio.to_thread.run_sync(
                partial(queries.visible_ids, incident_ids, conditions, as_of=head))
            if visible is not None:
                return visible
            if waited > self.config.lag_warning and not warned:
                log.warning("live stream waits for the read tables to catch up with the "
                            "event store (are the projectors running?)")
                warned = True
            await self.watch.progress(pause)  # this process's read models, or a pause
            waited += pause
            pause = min(pause * 2, 0.25)
        return None


class _Stalled(Exception):
    """The client took nothing for `stall_timeout` seconds."""


class EventStream(Response):
    """A `text/event-stream` response that follows the store until the client goes away,
    stops reading, or the server shuts down.

    A reader task moves events from the store into a bounded queue; the writer moves them
    to the client, or a keep-alive comment when the queue stays empty. The queue holds
    at most `queue_size` events: when the client stops taking them, the reader waits for
    room and the writer for the socket, and after `stall_timeout` of that the stream is
    dropped, so nothing is buffered for a client that does not read.
    """

    media_type = "text/event-stream"

    def __init__(self, feed: StreamFeed, start: int, slot: StreamSlot) -> None:
        self.feed = feed
        self.start = start
        self.slot = slot
        weakref.finalize(self, slot.release)  # should the response never be sent
        self.config = feed.config
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            self.slot.release()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": self.raw_headers})
        frames_in, frames_out = anyio.create_memory_object_stream[bytes](
            self.config.queue_size)
        ending: list[str] = []

        async with anyio.create_task_group() as group:

            def end(reason: str) -> None:
                if not ending:
                    ending.append(reason)
                group.cancel_scope.cancel()

            async def until(reason: str | None, work: Callable[[], Awaitable[None]]) -> None:
                try:
                    await work()
                except _Stalled:
                    end("stalled")
                else:
                    if reason is not None:
                        end(reason)

            group.start_soon(until, "disconnected", lambda: _disconnected(receive))
            # The writer ends the stream once it sent everything the reader gave it.
            group.start_soon(until, "ended", lambda: self._write(frames_out, send))
            group.start_soon(until, None, lambda: self._read(frames_in))

        reason = ending[0] if ending else "ended"
        if reason == "disconnected":
            return
        if reason == "stalled":
            log.info("dropped a live stream client that stopped reading: %s",
                     _client(scope))
        with anyio.move_on_after(self.config.end_grace) as last_write:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if last_write.cancelled_caught:
            # The client still reads nothing; the server closes the connection.
            log.info("live stream of %s ended without its last chunk", _client(scope))

    async def _read(self, frames: MemoryObjectSendStream[bytes]) -> None:
        """Follows the store from `start`; closing `frames` lets the writer finish."""
        feed, config = self.feed, self.config
        position = self.start
        with frames, feed.watch.subscribe() as wake:
            while not feed.watch.closed:
                wake.clear()
                generation = feed.watch.generation
                try:
                    batch = await feed.next_batch(position, generation)
                except Exception:
                    log.exception("live stream cannot read the event store; ending it")
                    return
                if batch is None:
                    return
                for frame in batch.frames:
                    try:
                        with anyio.fail_after(config.stall_timeout):
                            await frames.send(frame)
                    except TimeoutError:
                        raise _Stalled from None
                    except anyio.BrokenResourceError:  # the writer has ended
                        return
                position = batch.last
                if not batch.full:
                    await wake.wait(timeout=5.0)

    async def _write(self, frames: MemoryObjectReceiveStream[bytes], send: Send) -> None:
        with frames:
            await self._send(send, b"retry: %d\n\n" % self.config.retry_ms)
            while await self._write_next(frames, send):
                pass

    async def _write_next(self, frames: MemoryObjectReceiveStream[bytes], send: Send) -> bool:
        """Sends what the reader gave (as much as is ready, in one chunk), or a keep-alive
        after `heartbeat` seconds without any; False once the reader has finished."""
        chunk = KEEP_ALIVE
        with anyio.move_on_after(self.config.heartbeat):
            try:
                chunk = await frames.receive()
            except anyio.EndOfStream:
                return False
        parts, size, more = [chunk], len(chunk), True
        while size < 256 * 1024:
            try:
                part = frames.receive_nowait()
            except anyio.WouldBlock:
                break
            except anyio.EndOfStream:
                more = False
                break
            parts.append(part)
            size += len(part)
        await self._send(send, b"".join(parts))
        return more

    async def _send(self, send: Send, body: bytes) -> None:
        try:
            with anyio.fail_after(self.config.stall_timeout):
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except TimeoutError:
            raise _Stalled from None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown client"
