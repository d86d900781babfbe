"""Answers for a crowd: every anonymous read (the status page, the JSON list, summary and
incident, the feeds, the badges) is served from an answer kept in memory per URL, read at
one position of the read model and shared by every request of the process.

* **Kept per position.** An answer records the position of the read models it was read at
  (the least of them). It serves while the read models are known to be there; once they
  moved on (this process's projectors say so at once; another process's are looked up,
  one query for all waiting requests, when the store's head, heard of through the
  process's wake-up source, is beyond them) it is read again, in a worker thread, one
  reading per answer at a time. A hit costs no I/O and no thread: it is answered on the
  event loop.
* **Stale while revalidating.** An anonymous reader who names no position never waits for
  a reading while an answer is kept: the kept one is sent while one reading of the newer
  runs in the background (the first such reader starts it). A reader who must see a later
  position (below) waits for that reading and takes its answer.
* **The same everywhere.** An answer is rendered only from the read tables (no clock, no
  request data but what its key holds), between two reads of the read models' positions
  that must agree, so that every process answers the same bytes at the same positions;
  its ETag is a hash of those bytes (feeds: of what they are made of), strong, and
  `If-None-Match` answers 304.
* **Read your writes.** A request that names a position (Min-Position, `min_position`,
  the `store_position` cookie a write sets; see api/consistency.py) is served only an
  answer read at that position or later, and at the read models' position as this
  process knows it.
* **For CDNs.** Public answers say `Cache-Control: public, max-age=5, s-maxage=5,
  stale-while-revalidate=30` (the feeds: their TTL) and `Vary: Cookie, Min-Position` (the
  writer's position), plus `Authorization` only where a token changes the answer (the JSON
  list, summary and incident, whose answers to a token are `private, no-store`).

Serving an anonymous route from it takes one line (the route is `async def`, takes
`request: Request` and `_: Consistent`, and renders with a plain function of the read
tables that returns `Rendered`)::

    return await public_answer(request, ("services", days), lambda: Rendered(body, JSON))

The key names everything the answer depends on (route and validated parameters).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote, urlencode

from anyio import to_thread
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.consistency import names_more, read_target
from domain.visibility import Audience
from infra.consistency import ReadBarrier
from infra.settings import Settings
from projections.base import micros, moment

# Changes whenever the documents' shape does, so that no cache keeps an older rendering.
FORMAT = "feeds-1"
# Last-Modified has whole seconds: it is only sent once the second of the newest change
# (and a margin for changes still on their way into the read tables) is over, so that a
# later change can never carry the same Last-Modified.
SETTLED_MICROS = 2_000_000
# At most this many bytes of answers per process; one answer at most an eighth of it (the
# status page of 200 services over 100,000 incidents: about 8 MB, and 0.8 MB coded).
CACHE_BYTES = 256 * 1024 * 1024
CACHE_ENTRIES = 8192
MAX_AGE = 5  # seconds a browser or CDN may keep a public answer
STALE_WHILE_REVALIDATE = 30
PUBLIC = (f"public, max-age={MAX_AGE}, s-maxage={MAX_AGE}, "
          f"stale-while-revalidate={STALE_WHILE_REVALIDATE}")
PRIVATE = "private, no-store"
# What a public answer varies by: the writer's position (read your writes) ...
VARY = "Cookie, Min-Position"
# ... and, where a token shows more, the token.
VARY_TOKEN = "Authorization, Cookie, Min-Position"  # noqa: S105 (header names)
# How often at most a process looks up the read models' positions while the store's head
# is beyond them (their projectors run elsewhere, or are still at work).
LOOK_INTERVAL = 0.005
_RETRIES = 3  # reads of an answer whose read models moved while it was read
_STRIPES = 64  # locks: one reading per answer at a time
# A kept answer is read again in the background no sooner than this many times its last
# reading's duration after that reading: while writes land without pause, a costly answer
# (the status page of many services) takes at most a quarter of a core to keep current,
# and the anonymous crowd is answered the kept one meanwhile.
PACE = 3.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """An answer as read at one position of the read model."""

    position: int
    etag: str
    newest: int | None  # the newest public change it depends on: its Last-Modified
    body: bytes
    media_type: str = ""
    status_code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    # The same answer gzip-coded (its own ETag, `Content-Encoding: gzip`), for clients
    # that accept it; `encoded`: this one is such a coding.
    coded: Answer | None = None
    encoded: bool = False
    # The last moment it holds, drawn as it is at the moment it was read (a reader's
    # list judges each incident's response: late once past due); None: for good.
    holds_until: datetime | None = None

    @property
    def size(self) -> int:
        return len(self.body) + (len(self.coded.body) if self.coded is not None else 0)

    def for_client(self, accept_encoding: str | None) -> Answer:
        """The coding of this answer a client sending `Accept-Encoding` gets."""
        if self.coded is not None and accepts_gzip(accept_encoding):
            return self.coded
        return self


# Bodies at least this long, of these types, are kept gzip-coded too: a status page of
# hundreds of services' day bars is megabytes of repetitive HTML (a tenth of it coded).
GZIP_MIN_BYTES = 1400
_COMPRESSIBLE = ("text/", "application/json", "application/problem+json", "image/svg+xml",
                 "application/feed+json", "application/rss+xml", "application/atom+xml")


def accepts_gzip(header: str | None) -> bool:
    """Whether an `Accept-Encoding` value accepts gzip (`gzip` or `*`, with q > 0)."""
    if not header:
        return False
    for part in header.split(","):
        name, _, parameters = part.partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0
    return False


def with_coding(answer: Answer) -> Answer:
    """`answer`, with its gzip coding when it is worth it (the same bytes in every process:
    no time stamp in the gzip header)."""
    if len(answer.body) < GZIP_MIN_BYTES or answer.status_code != 200 or not (
            answer.media_type.startswith(_COMPRESSIBLE)):
        return answer
    body = gzip.compress(answer.body, compresslevel=6, mtime=0)
    coded = replace(answer, body=body, etag=f'{answer.etag[:-1]}-gzip"', encoded=True,
                    headers=(*answer.headers, ("Content-Encoding", "gzip")))
    return replace(answer, coded=coded)


@dataclass(frozen=True)
class Rendered:
    """What a route renders from the read tables: its body, and its ETag when the route
    has one of its own (otherwise a hash of the body)."""

    body: bytes
    media_type: str
    status_code: int = 200
    etag: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    holds_until: datetime | None = None  # see Answer


@dataclass(frozen=True)
class Reading:
    """A feed just read: its answer but for the document, rendered only when needed (the
    same ETag means the same bytes: a feed whose rows did not move keeps its document)."""

    position: int
    etag: str
    newest: int | None
    render: Callable[[], bytes]


class Answers:
    """The latest answer of each key (a route and its parameters), least recently used
    out first, bounded by size."""

    def __init__(self, max_bytes: int = CACHE_BYTES, max_entries: int = CACHE_ENTRIES) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.entries: OrderedDict[Hashable, Answer] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, key: Hashable, position: int | None = None) -> Answer | None:
        """The answer kept for `key`, if read at `position` (any, if None)."""
        with self.lock:
            found = self.entries.get(key)
            if found is None or (position is not None and found.position != position):
                return None
            self.entries.move_to_end(key)
            return found

    def drop(self, key: Hashable) -> None:
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= old.size

    def put(self, key: Hashable, answer: Answer) -> None:
        if answer.size > self.max_bytes // 8:
            return
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= old.size
            self.entries[key] = answer
            self.size += answer.size
            while self.size > self.max_bytes or len(self.entries) > self.max_entries:
                _, dropped = self.entries.popitem(last=False)
                self.size -= dropped.size


def self_url(request: Request, settings: Settings,
             query: Sequence[tuple[str, str]] = ()) -> str:
    """The URL a resource read by this request names itself by: on PUBLIC_BASE_URL when
    that is set (else the request's scheme and host), its path as routed, and `query`
    (its validated parameters, in a stable order) in place of the query sent, so that
    nothing a request adds, nor how it spells what it asks, shows in it."""
    base = settings.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
    path = quote(request.scope["path"])
    return f"{base}{path}{'?' + urlencode(query) if query else ''}"


def etag_of(*parts: object) -> str:
    digest = hashlib.blake2b(repr((FORMAT, *parts)).encode("utf-8", "surrogatepass"),
                             digest_size=16).hexdigest()
    return f'"{digest}"'


def tags_of(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def not_modified(request: Request, etag: str, last_modified: int | None) -> bool:
    """True when the client's copy is current: If-None-Match (weak comparison, `*`
    matches) decides when sent; otherwise If-Modified-Since, against a settled
    Last-Modified only."""
    return client_current(request.headers.get("if-none-match"),
                          request.headers.get("if-modified-since"), etag, last_modified)


def client_current(if_none_match: str | None, if_modified_since: str | None, etag: str,
                   last_modified: int | None) -> bool:
    """`not_modified` of the two headers' values."""
    if if_none_match is not None:
        tags = tags_of(if_none_match)
        return "*" in tags or etag in tags
    if if_modified_since is None or last_modified is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False  # not an HTTP date: ignored, as RFC 9110 says
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return last_modified // 1_000_000 <= since.timestamp()


def settled(us: int | None) -> int | None:
    if us is None or micros(datetime.now(UTC)) - us < SETTLED_MICROS:
        return None
    return us


def body_etag(body: bytes) -> str:
    return f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


class PublicAnswers:
    """The answers of one app's anonymous reads (see the module's description)."""

    def __init__(self, barrier: ReadBarrier, head: Callable[[], int],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """`head`: the highest store position this process heard of (no I/O); `clock`:
        the composition root's, which says when an answer kept until a moment is over."""
        self.barrier = barrier
        self.head = head
        self.clock = clock
        self.answers = Answers()
        self.renders: Counter[Hashable] = Counter()  # readings per key, for whom it concerns
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._looked = 0.0
        self.revalidating: set[Hashable] = set()  # keys being read again in the background
        # When each key's last reading ended (monotonic) and how long it took.
        self._readings: dict[Hashable, tuple[float, float]] = {}
        # The raw URL of each anonymous read answered from a kept answer: what `ServeKept`
        # answers without routing while that answer holds.
        self.front: OrderedDict[FrontURL, _Front] = OrderedDict()

    def _behind(self) -> bool:
        """Whether the read models may have moved beyond what this process knows."""
        return (self.head() > self.barrier.position
                and time.monotonic() - self._looked >= LOOK_INTERVAL)

    async def get(self, request: Request, key: Hashable,
                  produce: Callable[[Answer | None], Answer | None]) -> Answer | None:
        """The answer for `key`: the one kept, while the read models are where it was read
        and the request needs no later one; else `produce(kept)` in a worker thread (None:
        there is none, and nothing is kept).

        An anonymous request that names no position takes the kept answer at once; when
        the read models moved (or may have) one reading starts in the background."""
        kept = self.answers.get(key)
        if kept is not None and not names_more(request.scope) and self.holds(kept):
            if self._behind() or kept.position < self.barrier.position:
                self.revalidate(key, produce)
            return kept
        if self._behind():
            self._looked = time.monotonic()  # one look for the requests arriving now
            await to_thread.run_sync(self.barrier.look)
        kept = self.answers.get(key)
        target = read_target(request)
        if kept is not None and kept.position >= max(target, self.barrier.position) and (
                self.holds(kept)):
            return kept
        return await to_thread.run_sync(self._refresh, target, key, produce)

    def paced(self, key: Hashable) -> bool:
        """Whether `key` was read too recently to be read again in the background yet
        (see PACE)."""
        last = self._readings.get(key)
        return last is not None and time.monotonic() < last[0] + PACE * last[1]

    def revalidate(self, key: Hashable,
                   produce: Callable[[Answer | None], Answer | None]) -> None:
        """Reads `key` again in a thread of its own, unless that is under way or paced
        (a later reader starts it)."""
        with self.answers.lock:
            if key in self.revalidating or self.paced(key):
                return
            self.revalidating.add(key)
        threading.Thread(target=self._revalidating, args=(key, produce), daemon=True,
                         name="answer-revalidation").start()

    def _revalidating(self, key: Hashable,
                      produce: Callable[[Answer | None], Answer | None]) -> None:
        try:
            if self.head() > self.barrier.position:
                self._looked = time.monotonic()
                self.barrier.look()
            self._refresh(0, key, produce)
        except Exception:  # the next reader tries again; the kept answer still serves
            log.exception("reading a public answer again failed")
        finally:
            with self.answers.lock:
                self.revalidating.discard(key)

    def _refresh(self, target: int, key: Hashable,
                 produce: Callable[[Answer | None], Answer | None]) -> Answer | None:
        """The answer of `key` read at `target` and the read models' known position at
        least: the kept one if it is, else read now (None: nothing, and nothing kept)."""
        with self._stripes[zlib.crc32(repr(key).encode()) % _STRIPES]:
            kept = self.answers.get(key)  # another request may just have read it
            if kept is not None and kept.position >= max(target, self.barrier.position) and (
                    self.holds(kept)):
                return kept
            began = time.monotonic()
            answer = produce(kept)
            ended = time.monotonic()
            self.renders[key] += 1
            with self.answers.lock:
                self._readings[key] = (ended, ended - began)
                while len(self._readings) > CACHE_ENTRIES:
                    del self._readings[next(iter(self._readings))]
            if answer is None:
                self.answers.drop(key)  # e.g. a feed whose incident is no longer public
            else:
                self.answers.put(key, answer)
            return answer

    def holds(self, answer: Answer) -> bool:
        """Whether `answer` still holds at this moment (see Answer.holds_until)."""
        return answer.holds_until is None or self.clock() <= answer.holds_until

    def rendering(self, render: Callable[[], Rendered], *, coded: bool = True
                  ) -> Callable[[Answer | None], Answer]:
        """`render` as a producer of answers: read between two reads of the read models'
        positions, again while they differ, and kept at the least of them (and gzip-coded
        too where worth it, when `coded`)."""

        def produce(_: Answer | None) -> Answer:
            at = self.barrier.read()
            for attempt in range(_RETRIES):
                rendered = render()
                after = self.barrier.read()
                if after == at:
                    break
                if attempt < _RETRIES - 1:
                    at = after
            # Read at `at` exactly, or (the read models kept moving) at `at` or later: kept
            # at `at`, the next request past it reads it again.
            etag = rendered.etag or body_etag(rendered.body)
            answer = Answer(self.barrier.least(at), etag, None, rendered.body,
                            rendered.media_type, rendered.status_code, rendered.headers,
                            holds_until=rendered.holds_until)
            return with_coding(answer) if coded else answer

        return produce

    async def serve(self, request: Request, key: Hashable, render: Callable[[], Rendered],
                    *, vary: str = VARY, until: datetime | None = None) -> Response:
        """The public answer of `key` (rendered by `render` when needed), or a 304.
        `until`: the last moment the URL's answer is `key`'s (answers kept per minute).

        When the URL's key changed (its minute turned) and the new one is not read yet, an
        anonymous reader who names no position is answered the URL's previous answer while
        the new one is read in the background, as after a write."""
        scope = request.scope
        if not names_more(scope) and self.answers.get(key) is None:
            front = self.front.get(front_url(scope))
            previous = (self.answers.get(front.key)
                        if front is not None and front.key != key else None)
            if previous is not None:
                self.revalidate(key, self.rendering(render))
                return respond(request, previous, cache_control=PUBLIC, vary=vary)
        answer = await self.get(request, key, self.rendering(render))
        assert answer is not None
        return self.respond(request, key, answer, cache_control=PUBLIC, vary=vary,
                            until=until)

    def respond(self, request: Request, key: Hashable, answer: Answer, *,
                cache_control: str, vary: str, until: datetime | None = None) -> Response:
        """`respond`, and remembers the request's URL (with its host: a feed without
        PUBLIC_BASE_URL names the host it was asked on) as one `ServeKept` may answer when
        nothing but the URL chose the answer (no token, no position named) until `until`
        (then the route chooses the key again)."""
        scope = request.scope
        if not names_more(scope):
            url = front_url(scope)
            with self.answers.lock:
                before = self.front.get(url)
                self.front[url] = _Front(key, cache_control, vary, scope.get("route"), until)
                self.front.move_to_end(url)
                while len(self.front) > CACHE_ENTRIES:
                    self.front.popitem(last=False)
            if before is not None and before.until is not None and before.key != key:
                self.answers.drop(before.key)  # a minute over: nobody is answered it again
        return respond(request, answer, cache_control=cache_control, vary=vary)

    def kept_for(self, scope: Scope) -> tuple[Answer, _Front] | None:
        """The answer `ServeKept` may send for this request, if any (no I/O): the kept one
        while it holds, or while it is being read again (otherwise the route starts that)."""
        if scope["method"] != "GET" or names_more(scope):
            return None
        front = self.front.get(front_url(scope))
        if front is None or (front.until is not None and self.clock() > front.until):
            return None
        answer = self.answers.get(front.key)
        if answer is None or not self.holds(answer):
            return None
        if front.key not in self.revalidating and not self.paced(front.key) and (
                self._behind() or answer.position < self.barrier.position):
            return None
        return answer, front


@dataclass
class _Front:
    key: Hashable
    cache_control: str
    vary: str
    route: object
    until: datetime | None = None  # the URL's key may change after (kept per minute)
    # The last answer sent for the URL, of each coding, with its head as sent (200 and
    # 304), while that head cannot change (no Last-Modified still to settle).
    heads: dict[bool, tuple[Answer, RawHeaders, RawHeaders]] = field(default_factory=dict)

    def heads_of(self, answer: Answer) -> tuple[RawHeaders, RawHeaders]:
        """The raw header lists `respond` sends for `answer`: a 200 and a 304."""
        kept = self.heads.get(answer.encoded)
        if kept is not None and kept[0] is answer:
            return kept[1], kept[2]
        full = Response(answer.body, status_code=answer.status_code,
                        media_type=answer.media_type, headers=self._headers(answer))
        empty = Response(status_code=304, headers=self._headers(answer))
        if answer.newest is None or settled(answer.newest) is not None:
            self.heads[answer.encoded] = (answer, full.raw_headers, empty.raw_headers)
        return full.raw_headers, empty.raw_headers

    def _headers(self, answer: Answer) -> dict[str, str]:
        return _sent_headers(answer, cache_control=self.cache_control, vary=self.vary)


RawHeaders = list[tuple[bytes, bytes]]
FrontURL = tuple[str, bytes, bytes | None]  # path, query, Host


def front_url(scope: Scope) -> FrontURL:
    """What `ServeKept` knows a request by: its path, query and `Host` header."""
    host = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
            break
    return scope["path"], scope.get("query_string", b""), host


class ServeKept:
    """ASGI: answers an anonymous GET of a URL answered before from its kept answer, while
    that answer holds, without routing it (the same answer, headers and 304 as the route,
    which is what a crowd asks for). Inside `Observed`, which still counts and logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        public: PublicAnswers | None = None
        if scope["type"] == "http":
            public = getattr(scope["app"].state, "public_answers", None)
        found = public.kept_for(scope) if public is not None else None
        if found is None:
            await self.app(scope, receive, send)
            return
        answer, front = found
        if front.route is not None:
            scope["route"] = front.route  # for the metrics' route label
        if answer.coded is not None:
            answer = answer.for_client(_header(scope, b"accept-encoding"))
        # What `respond` would send, from the head kept with the URL: a crowd's request
        # costs no header building.
        full, empty = front.heads_of(answer)
        if answer.status_code == 200 and _current(scope, answer):
            await send({"type": "http.response.start", "status": 304, "headers": empty})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": full})
        await send({"type": "http.response.body", "body": answer.body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            found: str = value.decode("latin-1")
            return found
    return None


def _current(scope: Scope, answer: Answer) -> bool:
    """`not_modified` for a request's raw headers."""
    if_none_match = if_modified_since = None
    for name, value in scope["headers"]:  # the first of each, as `Request.headers.get`
        if name == b"if-none-match" and if_none_match is None:
            if_none_match = value.decode("latin-1")
        elif name == b"if-modified-since" and if_modified_since is None:
            if_modified_since = value.decode("latin-1")
    if if_none_match is None and if_modified_since is None:
        return False
    return client_current(if_none_match, if_modified_since, answer.etag,
                          settled(answer.newest))


def _sent_headers(answer: Answer, *, cache_control: str, vary: str,
                  headers: Mapping[str, str] | None = None) -> dict[str, str]:
    if answer.coded is not None or answer.encoded:
        vary = f"{vary}, Accept-Encoding"
    sent = {**dict(answer.headers), "ETag": answer.etag, "Cache-Control": cache_control,
            "Vary": vary, **(headers or {})}
    last_modified = settled(answer.newest)
    if last_modified is not None:
        sent["Last-Modified"] = format_datetime(moment(last_modified), usegmt=True)
    return sent


def respond(request: Request, answer: Answer, *, cache_control: str, vary: str,
            headers: Mapping[str, str] | None = None) -> Response:
    """An answer kept, or 304 when it is a 200 and the client's copy is current
    (`If-None-Match`; without it `If-Modified-Since`, against a settled Last-Modified);
    gzip-coded for a client that accepts it, when kept so."""
    answer = answer.for_client(request.headers.get("accept-encoding"))
    sent = _sent_headers(answer, cache_control=cache_control, vary=vary, headers=headers)
    if answer.status_code == 200 and not_modified(request, answer.etag,
                                                  settled(answer.newest)):
        return Response(status_code=304, headers=sent)
    return Response(answer.body, status_code=answer.status_code,
                    media_type=answer.media_type, headers=sent)


def public_answers(request: Request) -> PublicAnswers:
    """The app's public answers (made on first use; they start the process's wake-up
    source, which tells of other processes' writes)."""
    state = request.app.state
    found: PublicAnswers | None = getattr(state, "public_answers", None)
    if found is None:
        services = state.services
        listener = services.followers.listener
        listener.start()
        found = state.public_answers = PublicAnswers(
            services.barrier, lambda: listener.head, services.clock)
    return found


async def public_answer(request: Request, key: Hashable, render: Callable[[], Rendered], *,
                        vary: str = VARY, until: datetime | None = None) -> Response:
    """Serves an anonymous read from the app's public answers: the one line a route needs.
    `until`: the key holds for the URL until then (a key naming the minute: its end)."""
    return await public_answers(request).serve(request, key, render, vary=vary, until=until)


async def answer_for(request: Request, audience: Audience, key: Hashable,
                     render: Callable[[Audience], Rendered], *,
                     until: datetime | None = None) -> Response:
    """A read whose answer depends on the caller's token: kept and shared for anonymous
    callers, read afresh (in a worker thread) and never stored by others for the rest
    (api/reader_answers.py keeps theirs too, where the route says how long it holds)."""
    if audience is Audience.PUBLIC:
        return await public_answer(request, key, lambda: render(audience), vary=VARY_TOKEN,
                                   until=until)
    rendered = await to_thread.run_sync(render, audience)
    headers = {**dict(rendered.headers), "Cache-Control": PRIVATE, "Vary": VARY_TOKEN}
    if rendered.etag is not None:
        headers["ETag"] = rendered.etag
    return Response(rendered.body, status_code=rendered.status_code,
                    media_type=rendered.media_type, headers=headers)


def minute_end(now: datetime) -> datetime:
    """The last instant of `now`'s minute: answers that count time up to now (the day bars,
    what is upcoming) are kept per minute and drawn as at its end, so that whatever began
    within the minute already shows and every process draws the same."""
    return now.replace(second=0, microsecond=0) + timedelta(seconds=59, microseconds=999_999)


def json_body(content: object) -> bytes:
    """JSON as the API's answers write it."""
    return bytes(JSONResponse(content).body)
