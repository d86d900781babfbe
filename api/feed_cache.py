"""What the feeds keep and compare for caching: each URL's latest answer, read at one
position of the read model, and the conditional-request rules (ETag first, then a settled
Last-Modified)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from fastapi import Request

from infra.settings import Settings
from projections.base import micros

# Changes whenever the documents' shape does, so that no cache keeps an older rendering.
FORMAT = "feeds-1"
# Last-Modified has whole seconds: it is only sent once the second of the newest change
# (and a margin for changes still on their way into the read tables) is over, so that a
# later change can never carry the same Last-Modified.
SETTLED_MICROS = 2_000_000
CACHE_BYTES = 32 * 1024 * 1024
CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class Answer:
    """A feed as read at one position of the read model."""

    position: int
    etag: str
    newest: int | None  # the newest public change it depends on: its Last-Modified
    body: bytes


@dataclass(frozen=True)
class Reading:
    """A feed just read: its answer but for the document, rendered only when needed (the
    same ETag means the same bytes: a feed whose rows did not move keeps its document)."""

    position: int
    etag: str
    newest: int | None
    render: Callable[[], bytes]


class Answers:
    """The latest answer of each feed URL, least recently used out first, bounded by
    size. An answer serves only while the read model is at the position it was read at."""

    def __init__(self, max_bytes: int = CACHE_BYTES, max_entries: int = CACHE_ENTRIES) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.entries: OrderedDict[tuple[str, str], Answer] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str], position: int | None = None) -> Answer | None:
        """The answer kept for `key`, if read at `position` (any, if None)."""
        with self.lock:
            found = self.entries.get(key)
            if found is None or (position is not None and found.position != position):
                return None
            self.entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], answer: Answer) -> None:
        if len(answer.body) > self.max_bytes // 8:
            return
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= len(old.body)
            self.entries[key] = answer
            self.size += len(answer.body)
            while self.size > self.max_bytes or len(self.entries) > self.max_entries:
                _, dropped = self.entries.popitem(last=False)
                self.size -= len(dropped.body)


def self_url(request: Request, settings: Settings) -> str:
    """The URL of this request as sent (path and query still percent-encoded), on
    PUBLIC_BASE_URL when that is set."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    base = settings.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base}{path}{'?' + query if query else ''}"


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
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = tags_of(if_none_match)
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
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
