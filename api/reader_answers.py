"""Answers for token holders, kept and shared as the crowd's are (api/answer_cache.py), and
still read afresh in every way a reader can tell.

Any token sees the same (`domain.visibility`: two audiences), so a reader's answer is kept
in the app's `PublicAnswers` too, under its own key (`(key, Audience.READER)`: never an
anonymous caller's), at the read models' position it was read at, and while what the clock
judges in it holds (a reader's list shows which responses are late: `Answer.holds_until`).
It serves a valid token holder whose read target it covers: the position the caller names,
or else the store's head (every process's writes: api/consistency.py, one query shared by
the requests arriving together, api/store_head.py), and this process's last write. It is
sent as before, `Cache-Control: private, no-store` and `Vary: Authorization, ...`: a memo
of the server, never a shared cache's.

`ServeReaders` answers a token's GET of a URL a reader was answered before without routing
it (no parameters parsed): with the token known valid from memory (anything else, an
invalid token among them, goes to the route, which refuses it as ever), no position named,
and the kept answer covering the store's head, it sends what the route would.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.answer_cache import (
    CACHE_ENTRIES,
    PRIVATE,
    VARY_TOKEN,
    Answer,
    PublicAnswers,
    RawHeaders,
    Rendered,
    answer_for,
    public_answers,
)
from api.auth import remembered_caller
from api.consistency import POSITION_COOKIE
from api.store_head import SharedHead, shared_head
from domain.visibility import Audience
from infra.consistency import ReadBarrier


@dataclass
class _Url:
    """A URL a reader was answered: the key of its answer, its route (for the metrics),
    and the head last sent for it (with the answer it was made for)."""

    key: Hashable
    route: object
    head: tuple[Answer, RawHeaders] | None = None

    def raw_headers(self, answer: Answer) -> RawHeaders:
        if self.head is not None and self.head[0] is answer:
            return self.head[1]
        raw = reader_response(answer).raw_headers
        self.head = (answer, raw)
        return raw


class ReaderAnswers:
    """The answers of one app's token reads (see the module's description)."""

    def __init__(self, public: PublicAnswers, head: SharedHead, barrier: ReadBarrier) -> None:
        self.public = public
        self.head = head
        self.barrier = barrier
        self.urls: OrderedDict[tuple[str, bytes], _Url] = OrderedDict()
        self.served = 0  # answers `ServeReaders` sent, for whom it concerns

    async def answer(self, request: Request, key: Hashable,
                     render: Callable[[], Rendered]) -> Response:
        """The reader's answer of `key` (routed: the token checked and the read target set
        by the route's dependencies), kept, or read when it does not cover the target."""
        kept_key = (key, Audience.READER)
        answer = await self.public.get(request, kept_key,
                                       self.public.rendering(render, coded=False))
        assert answer is not None
        scope = request.scope
        url = (scope["path"], scope.get("query_string", b""))
        known = self.urls.get(url)
        if known is None or known.key != kept_key:
            self.urls[url] = _Url(kept_key, scope.get("route"))
        self.urls.move_to_end(url)
        while len(self.urls) > CACHE_ENTRIES:
            self.urls.popitem(last=False)
        return reader_response(answer)

    async def serve(self, scope: Scope, send: Send) -> bool:
        """Answers a token's GET from a kept answer, as its route would; False (nothing
        sent) when the route must answer."""
        url = self.urls.get((scope["path"], scope.get("query_string", b"")))
        if url is None or not _only_a_token(scope):
            return False
        answer = self.public.answers.get(url.key)
        if answer is None or not self.public.holds(answer):
            return False
        if remembered_caller(Request(scope)) is None:
            return False
        try:
            head = await self.head.read()
        except Exception:  # the route asks again, and answers as it answers a failure
            return False
        if answer.position < max(head, self.barrier.last_written, self.barrier.position):
            return False
        if url.route is not None:
            scope["route"] = url.route  # for the metrics' route label
        self.served += 1
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": url.raw_headers(answer)})
        await send({"type": "http.response.body", "body": answer.body})
        return True


def _only_a_token(scope: Scope) -> bool:
    """Whether a GET says nothing more than its URL and a token: no position to wait for
    (header, parameter or cookie), and no body."""
    if b"min_position" in scope.get("query_string", b""):
        return False
    token = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = True
        elif name in (b"min-position", b"content-length", b"transfer-encoding") or (
                name == b"cookie" and POSITION_COOKIE.encode() in value):
            return False
    return token


def reader_response(answer: Answer) -> Response:
    """What a reader is sent: the answer, never to be kept by anyone else."""
    return Response(answer.body, status_code=answer.status_code,
                    media_type=answer.media_type,
                    headers={**dict(answer.headers), "Cache-Control": PRIVATE,
                             "Vary": VARY_TOKEN})


def reader_answers(request: Request) -> ReaderAnswers:
    """The app's reader answers (made on first use, with its public answers)."""
    state = request.app.state
    found: ReaderAnswers | None = getattr(state, "reader_answers", None)
    if found is None:
        barrier: ReadBarrier = state.services.barrier
        found = state.reader_answers = ReaderAnswers(
            public_answers(request), shared_head(state, barrier.store_head), barrier)
    return found


async def kept_answer_for(request: Request, audience: Audience, key: Hashable,
                          render: Callable[[Audience], Rendered]) -> Response:
    """`answer_for`, but a reader's answer is kept and shared too (for a route whose
    answer to a reader says when it stops holding: `Rendered.holds_until`)."""
    if audience is Audience.PUBLIC:
        return await answer_for(request, audience, key, render)

    def rendered() -> Rendered:
        found = render(audience)
        if found.etag is None:
            return found
        return replace(found, headers=(*found.headers, ("ETag", found.etag)))

    return await reader_answers(request).answer(request, key, rendered)


class ServeReaders:
    """ASGI: answers a token's GET of a URL answered to a reader before from its kept
    answer, without routing it (`ReaderAnswers.serve`). Inside `Observed`, which still
    counts and logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            readers: ReaderAnswers | None = getattr(scope["app"].state, "reader_answers",
                                                    None)
            if readers is not None and await readers.serve(scope, send):
                return
        await self.app(scope, receive, send)
