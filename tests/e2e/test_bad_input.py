"""Bad input never answers 500.

Malformed JSON, wrong types, unknown enum values, oversized bodies, garbage ids, paths,
query parameters and headers are each answered with the 4xx we intend, as an
``application/problem+json`` document with a ``detail`` (and, for a validation error, an
``errors`` list naming the bad field), and they change nothing: the event store's last
position is the same before and after, and so is the incident the request aimed at.

Every test runs against a real uvicorn server, on SQLite and on PostgreSQL: one server
per store for the whole module, since no test here may change what another sees (each
asserts that it changed nothing). Requests
httpx will not send (a blank header value, a dot-segment path, a Content-Length without
its body) go out through `http.client` (`raw`).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from api.limits import MAX_BODY_BYTES
from infra.bootstrap import Services, bootstrap
from tests.conftest import READER, TOKENS, WRITER, LiveServer, make_settings
from tests.servers import create_database, drop_database

INCIDENTS = "/api/v1/incidents"
EVENTS = "/api/v1/events"
PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}

# A valid body of each write, to which a test adds (or in which it replaces) one field.
VALID: dict[str, dict[str, Any]] = {
    "create": {"title": "Checkout is down"},
    "change": {"title": "Checkout is slow"},
    "update": {"message": "Still looking"},
    "postmortem": {"body": "What happened", "published": False},
}
WRITES = list(VALID)


# --------------------------------------------------------------------------
# one server per store for the module
# --------------------------------------------------------------------------


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def services(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'store.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_server_url"))
    built = bootstrap(make_settings(url))
    built.start_projections()
    yield built
    built.close()
    if request.param == "postgres":
        drop_database(url)


@pytest.fixture(scope="module")
def live_server(services: Services) -> Iterator[LiveServer]:
    server = LiveServer(services)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def no_cookies(http: httpx.Client) -> None:
    """Each test starts as a fresh client (no read-your-writes cookie of another test)."""
    http.cookies.clear()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def create_incident(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"title": "Checkout is down", **fields}
    response = http.post(INCIDENTS, json=body, headers=WRITER)
    assert response.status_code == 201, response.text
    incident: dict[str, Any] = response.json()
    return incident


def add_update(http: httpx.Client, incident_id: str, **fields: Any) -> dict[str, Any]:
    response = http.post(f"{INCIDENTS}/{incident_id}/updates", json=fields, headers=WRITER)
    assert response.status_code == 201, response.text
    incident: dict[str, Any] = response.json()
    return incident


def incident_in(http: httpx.Client, state: str) -> str:
    """The id of a new incident brought into `state` (a status, or `deleted`)."""
    active = state in ("investigating", "identified", "monitoring")
    incident_id: str = create_incident(http, status=state if active else "monitoring")["id"]
    if state in ("resolved", "post_incident"):
        add_update(http, incident_id, status="resolved", message="fixed")
    if state == "post_incident":
        add_update(http, incident_id, status="post_incident", message="review")
    if state == "deleted":
        response = http.delete(f"{INCIDENTS}/{incident_id}", headers=WRITER)
        assert response.status_code == 204, response.text
    return incident_id


def target(kind: str, incident_id: str) -> tuple[str, str]:
    """Method and path of a write: `create`, `change` (PUT), `update` (a status update),
    `postmortem` or `delete`."""
    return {
        "create": ("POST", INCIDENTS),
        "change": ("PUT", f"{INCIDENTS}/{incident_id}"),
        "update": ("POST", f"{INCIDENTS}/{incident_id}/updates"),
        "postmortem": ("PUT", f"{INCIDENTS}/{incident_id}/postmortem"),
        "delete": ("DELETE", f"{INCIDENTS}/{incident_id}"),
    }[kind]


def write(
    http: httpx.Client,
    kind: str,
    incident_id: str,
    body: Any = None,
    *,
    content: bytes | Iterator[bytes] | None = None,
    headers: dict[str, Any] | None = None,
) -> httpx.Response:
    """Sends a write with the writer token (unless `headers` replace it): `body` as
    JSON, or `content` as it is."""
    method, path = target(kind, incident_id)
    sent = {**WRITER, **(headers or {})}
    sent = {name: value for name, value in sent.items() if value is not None}
    if content is not None:
        return http.request(method, path, content=content, headers=sent)
    return http.request(method, path, json=body, headers=sent)


def raw(
    http: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> httpx.Response:
    """A request exactly as given (no path normalisation, headers httpx would refuse,
    a declared Content-Length without its body), answered as an httpx.Response."""
    base = urlsplit(str(http.base_url))
    connection = HTTPConnection(base.hostname or "127.0.0.1", base.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        answer = connection.getresponse()
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            content=answer.read(),
            request=httpx.Request(method, f"{base.scheme}://{base.netloc}"),
        )
    finally:
        connection.close()


def as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def settle(response: httpx.Response) -> None:
    """After a 5xx answer the server is still logging the traceback: wait until it is
    done (a request on a new connection is only served then) so that pytest, formatting
    the failure, does not race it (traceback carets use `ast` in CPython 3.11, whose
    recursion-depth guard is shared between threads and ends in an INTERNALERROR)."""
    if response.status_code < 500:
        return
    url = response.request.url
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(f"{url.scheme}://{url.netloc.decode()}/healthz", timeout=10)


def assert_ok(response: httpx.Response) -> Any:
    settle(response)
    request = response.request
    assert response.status_code == 200, (
        f"{request.method} {request.url.raw_path[:120]!r}: expected 200, "
        f"got {response.status_code}: {response.text[:500]}"
    )
    return response.json()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is an RFC 9457 problem document with the given status and a detail."""
    settle(response)
    request = response.request
    assert response.status_code == status, (
        f"{request.method} {request.url.raw_path[:120]!r}: expected {status}, "
        f"got {response.status_code}: {response.text[:500]}"
    )
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    assert media_type == PROBLEM, response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status, problem
    assert isinstance(problem.get("detail"), str), problem
    assert problem["detail"].strip(), problem
    return problem


def assert_invalid(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 422 whose `errors` list names `field` (`title`, `affected_services.0`,
    `query.after`, or `body` for the body as a whole)."""
    problem = assert_problem(response, 422)
    errors = problem.get("errors")
    assert isinstance(errors, list), problem
    assert errors, problem
    for error in errors:
        assert isinstance(error.get("field"), str), error
        assert isinstance(error.get("message"), str), error
        assert error["message"].strip(), error
    named = [error["field"] for error in errors]
    assert field in named, f"expected an error naming {field!r}, got {errors}"
    return problem


def state_of(http: httpx.Client, services: Services, incident_id: str) -> dict[str, Any]:
    """Everything a bad request must leave alone: the store's last position, and the
    incident (with its ETag) and its timeline as a reader sees them."""
    one = http.get(f"{INCIDENTS}/{incident_id}", headers=READER)
    timeline = http.get(f"{INCIDENTS}/{incident_id}/timeline", headers=READER)
    return {
        "last_position": services.event_log.last_position(),
        "incident": (one.status_code, one.headers.get("etag"), one.json()),
        "timeline": (timeline.status_code, timeline.json()),
    }


@contextlib.contextmanager
def nothing_changes(http: httpx.Client, services: Services, incident_id: str) -> Iterator[None]:
    before = state_of(http, services, incident_id)
    yield
    after = state_of(http, services, incident_id)
    assert after == before


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with insignificant whitespace to exactly `size` bytes."""
    text = json.dumps(body).encode()
    return text[:-1] + b" " * (size - len(text)) + b"}"


def streamed(data: bytes, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """`data` as a generator, so httpx sends it chunked, without a Content-Length."""
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


@pytest.fixture
def incident(http: httpx.Client) -> dict[str, Any]:
    """An existing incident: the one every write aims at, and that must not change."""
    return create_incident(
        http,
        description="Payments fail at the last step",
        severity="high",
        incident_type="outage",
        affected_services=["checkout"],
        affected_regions=["eu-west"],
        internal_notes="suspect the database",
    )


# --------------------------------------------------------------------------
# bodies that are not JSON, or not a JSON object
# --------------------------------------------------------------------------

MALFORMED_JSON = [
    pytest.param(b"{", id="unterminated-object"),
    pytest.param(b'{"title": "x",}', id="trailing-comma"),
    pytest.param(b"{'title': 'x'}", id="single-quotes"),
    pytest.param(b'{"title": "x"} trailing', id="trailing-garbage"),
    pytest.param(b"not json at all", id="plain-text"),
    pytest.param(b'{"title": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b"[" * 50_000 + b"]" * 50_000, id="nested-50000-deep"),
]


@pytest.mark.parametrize("content", MALFORMED_JSON)
def test_malformed_json_is_400(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    content: bytes,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        for kind in WRITES:
            response = write(http, kind, incident["id"], content=content, headers=JSON)
            assert_problem(response, 400)


NOT_AN_OBJECT = [
    pytest.param(b"[]", id="empty-list"),
    pytest.param(b'[{"title": "x", "message": "x"}]', id="list-of-object"),
    pytest.param(b'"Checkout is down"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(b"true", id="boolean"),
    pytest.param(b"null", id="null"),
    pytest.param(b"", id="empty-body"),
]


@pytest.mark.parametrize("content", NOT_AN_OBJECT)
def test_json_that_is_not_an_object_is_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    content: bytes,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        for kind in WRITES:
            response = write(http, kind, incident["id"], content=content, headers=JSON)
            assert_invalid(response, "body")


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        pytest.param("text/plain", json.dumps, id="text-plain"),
        pytest.param("application/x-www-form-urlencoded", lambda body: "title=x", id="form"),
        pytest.param(None, json.dumps, id="no-content-type"),
    ],
)
def test_a_body_that_is_not_declared_json_is_refused(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    content_type: str | None,
    encode: Callable[[Any], str],
) -> None:
    """FastAPI answers a JSON body with another media type as a missing body (422)."""
    headers = {"Content-Type": content_type} if content_type else {}
    with nothing_changes(http, services, incident["id"]):
        for kind in WRITES:
            content = encode(VALID[kind]).encode()
            response = write(http, kind, incident["id"], content=content, headers=headers)
            assert_invalid(response, "body")


# --------------------------------------------------------------------------
# wrong types and values, field by field
# --------------------------------------------------------------------------

LONG_TEXT = "x" * 10_001

# (field, bad value, the field the error names): for every body that has the field.
DETAIL_ERRORS = [
    ("title", 42, "title"),
    ("title", ["Checkout"], "title"),
    ("title", {"text": "Checkout"}, "title"),
    ("title", "", "title"),
    ("title", "   \t ", "title"),
    ("title", "x" * 201, "title"),
    ("description", LONG_TEXT, "description"),
    ("description", 42, "description"),
    ("public_message", LONG_TEXT, "public_message"),
    ("internal_notes", LONG_TEXT, "internal_notes"),
    ("internal_notes", ["x"], "internal_notes"),
    ("affected_services", "checkout", "affected_services"),
    ("affected_services", {"name": "checkout"}, "affected_services"),
    ("affected_services", ["x" * 101], "affected_services.0"),
    ("affected_services", ["ok", ""], "affected_services.1"),
    ("affected_services", ["   "], "affected_services.0"),
    ("affected_services", [42], "affected_services.0"),
    ("affected_services", [f"service-{n}" for n in range(51)], "affected_services"),
    ("affected_regions", "eu-west", "affected_regions"),
    ("affected_regions", ["x" * 101], "affected_regions.0"),
    ("affected_regions", [f"region-{n}" for n in range(51)], "affected_regions"),
    ("is_public", "yes", "is_public"),
    ("is_public", "true", "is_public"),
    ("is_public", 1, "is_public"),
    ("is_public", [True], "is_public"),
    ("rss_enabled", "no", "rss_enabled"),
    ("rss_enabled", 0, "rss_enabled"),
    ("start_time", "not a date", "start_time"),
    ("start_time", "", "start_time"),
    ("start_time", "2024-05-01", "start_time"),
    ("start_time", "2024-05-01T10:00:00", "start_time"),
    ("start_time", "2024-02-30T10:00:00Z", "start_time"),
    ("start_time", "2024-05-01T10:00:00+25:00", "start_time"),
    ("start_time", 1_714_557_600, "start_time"),
    ("start_time", "1714557600", "start_time"),
    ("start_time", True, "start_time"),
    ("start_time", "0001-01-01T00:00:00+14:00", "start_time"),
    ("start_time", "9999-12-31T23:59:59-14:00", "start_time"),
    ("severity", "bogus", "severity"),
    ("severity", "HIGH", "severity"),
    ("severity", "", "severity"),
    ("severity", 1, "severity"),
    ("incident_type", "bogus", "incident_type"),
    ("incident_type", "Outage", "incident_type"),
    ("incident_type", "outage ", "incident_type"),
    ("incident_type", 3, "incident_type"),
]


def _id(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 30 else f"{text[:20]}...({len(text)}-chars)"


DETAIL_CASES = [
    pytest.param(field, value, named, id=f"{field}={_id(value)}")
    for field, value, named in DETAIL_ERRORS
]


@pytest.mark.parametrize(("field", "value", "named"), DETAIL_CASES)
def test_create_with_a_bad_field_is_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    field: str,
    value: Any,
    named: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        body = {**VALID["create"], field: value}
        assert_invalid(write(http, "create", incident["id"], body), named)


@pytest.mark.parametrize(("field", "value", "named"), DETAIL_CASES)
def test_change_with_a_bad_field_is_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    field: str,
    value: Any,
    named: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_invalid(write(http, "change", incident["id"], {field: value}), named)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        pytest.param({}, "title", id="no-title"),
        pytest.param({"title": None}, "title", id="title-null"),
        pytest.param({"title": "x", "is_public": None}, "is_public", id="is_public-null"),
        pytest.param({"title": "x", "severity": None}, "severity", id="severity-null"),
        pytest.param({"title": "x", "status": "bogus"}, "status", id="status-bogus"),
        pytest.param({"title": "x", "status": "Investigating"}, "status", id="status-case"),
        pytest.param({"title": "x", "status": ""}, "status", id="status-empty"),
        pytest.param({"title": "x", "status": None}, "status", id="status-null"),
        pytest.param({"title": "x", "status": 0}, "status", id="status-number"),
    ],
)
def test_create_specific_errors_are_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    body: dict[str, Any],
    named: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_invalid(write(http, "create", incident["id"], body), named)


UPDATE_ERRORS = [
    pytest.param({}, "body", id="empty"),
    pytest.param({"message": "   ", "public_message": "\n"}, "body", id="blank-messages"),
    pytest.param({"status": None}, "body", id="status-null-no-message"),
    pytest.param({"status": None, "message": ""}, "body", id="status-null-empty-message"),
    pytest.param({"status": "bogus"}, "status", id="status-bogus"),
    pytest.param({"status": "Resolved"}, "status", id="status-case"),
    pytest.param({"status": ""}, "status", id="status-empty"),
    pytest.param({"status": 3}, "status", id="status-number"),
    pytest.param({"message": "x", "update_type": "bogus"}, "update_type", id="update_type-bogus"),
    pytest.param({"message": "x", "update_type": "Resolution"}, "update_type", id="type-case"),
    pytest.param({"message": "x", "update_type": None}, "update_type", id="update_type-null"),
    pytest.param({"message": "x", "update_type": 1}, "update_type", id="update_type-number"),
    pytest.param({"message": LONG_TEXT}, "message", id="message-too-long"),
    pytest.param({"message": 42}, "message", id="message-number"),
    pytest.param({"public_message": LONG_TEXT}, "public_message", id="public-message-too-long"),
    pytest.param({"public_message": ["x"]}, "public_message", id="public-message-list"),
    pytest.param({"message": "x", "author": ""}, "author", id="author-empty"),
    pytest.param({"message": "x", "author": "   "}, "author", id="author-blank"),
    pytest.param({"message": "x", "author": "x" * 101}, "author", id="author-too-long"),
    pytest.param({"message": "x", "author": 7}, "author", id="author-number"),
]


@pytest.mark.parametrize(("body", "named"), UPDATE_ERRORS)
def test_update_with_a_bad_field_is_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    body: dict[str, Any],
    named: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_invalid(write(http, "update", incident["id"], body), named)


@pytest.mark.parametrize(
    "field",
    [
        "title",
        "description",
        "severity",
        "incident_type",
        "affected_services",
        "start_time",
        "internal_notes",
        "is_public",
        "rss_enabled",
    ],
)
def test_change_with_a_null_field_is_422_naming_it(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    field: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_invalid(write(http, "change", incident["id"], {field: None}), field)


@pytest.mark.parametrize("status", ["resolved", "investigating", "bogus", None])
def test_change_refuses_a_status_field(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    status: str | None,
) -> None:
    """Status changes only through status updates, even to the current status."""
    with nothing_changes(http, services, incident["id"]):
        body = {"title": "Checkout is slow", "status": status}
        problem = assert_invalid(write(http, "change", incident["id"], body), "status")
        assert "update" in json.dumps(problem["errors"])


SERVER_OWNED = {
    "id": "incident-mine",
    "version": 7,
    "created_at": "2024-05-01T10:00:00Z",
    "updated_at": "2024-05-01T10:00:00Z",
    "resolved_at": "2024-05-01T10:00:00Z",
    "updates": [],
    "deleted": True,
}
UNKNOWN = {"colour": "red", "Title": "Checkout", "title ": "x", "previous_status": "x"}


@pytest.mark.parametrize(
    ("field", "value"),
    [pytest.param(f, v, id=f"owned-{f}") for f, v in SERVER_OWNED.items()]
    + [pytest.param(f, v, id=f"unknown-{f!r}") for f, v in UNKNOWN.items()],
)
def test_server_owned_and_unknown_fields_are_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    field: str,
    value: Any,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        for kind in WRITES:
            body = {**VALID[kind], field: value}
            assert_invalid(write(http, kind, incident["id"], body), field)


def test_query_parameter_as_of_must_be_an_instant(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
) -> None:
    with nothing_changes(http, services, incident["id"]):
        for value in ("garbage", "2024-05-01T10:00:00", "1714557600x"):
            response = http.get(f"{INCIDENTS}/{incident['id']}", params={"as_of": value})
            assert_invalid(response, "query.as_of")


# --------------------------------------------------------------------------
# bodies over the limit
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", WRITES)
@pytest.mark.parametrize("size", [MAX_BODY_BYTES + 1, 4 * MAX_BODY_BYTES], ids=["1MiB+1", "4MiB"])
def test_a_streamed_body_over_1_mib_is_413(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    kind: str,
    size: int,
) -> None:
    """Chunked, without Content-Length: refused while it streams in. The body is a valid
    one, padded with whitespace: only its size is wrong."""
    body = padded(VALID[kind], size)
    with nothing_changes(http, services, incident["id"]):
        response = write(http, kind, incident["id"], content=streamed(body), headers=JSON)
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_problem(response, 413)


@pytest.mark.parametrize("kind", WRITES)
@pytest.mark.parametrize(
    "size", [MAX_BODY_BYTES + 1, 100 * MAX_BODY_BYTES], ids=["1MiB+1", "100MiB"]
)
def test_a_declared_content_length_over_1_mib_is_413_before_the_body(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    kind: str,
    size: int,
) -> None:
    """Refused on the header alone: the server answers without waiting for the body
    (none is sent here, so the answer cannot be lost to a connection reset)."""
    method, path = target(kind, incident["id"])
    headers = {**WRITER, **JSON, "Content-Length": str(size)}
    with nothing_changes(http, services, incident["id"]):
        assert_problem(raw(http, method, path, headers), 413)


@pytest.mark.parametrize("kind", WRITES)
def test_a_body_of_exactly_1_mib_is_read_and_validated(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    kind: str,
) -> None:
    """The limit is on bodies *over* 1 MiB: one of exactly 1 MiB gets to validation."""
    field = {"update": "message", "postmortem": "body"}.get(kind, "title")
    text = "x" * (MAX_BODY_BYTES - 64)
    body = padded({**VALID[kind], field: text}, MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    with nothing_changes(http, services, incident["id"]):
        response = write(http, kind, incident["id"], content=body, headers=JSON)
        assert_invalid(response, field)


# --------------------------------------------------------------------------
# garbage ids, unknown paths, wrong methods
# --------------------------------------------------------------------------

GARBAGE_IDS = [
    pytest.param("%00", id="nul"),
    pytest.param("incident-%00", id="embedded-nul"),
    pytest.param("a" * 1_000, id="1000-chars"),
    pytest.param("incident-" + "a" * 60_000, id="60000-chars"),
    pytest.param(quote("../", safe=""), id="dot-dot-slash"),
    pytest.param("%2E%2E", id="dot-dot"),
    pytest.param(quote("\u00e9\u2603\U0001f525", safe=""), id="unicode"),
    pytest.param("%ED%A0%80", id="utf8-surrogate"),
    pytest.param("%FF%FE", id="invalid-utf8"),
    pytest.param("%20", id="space"),
    pytest.param(quote("'; DROP TABLE stored_events; --", safe=""), id="sql"),
    pytest.param(quote("<script>alert(1)</script>", safe=""), id="html"),
    pytest.param("incident-doesnotexist", id="doesnotexist"),
    pytest.param("incident-" + "0" * 32, id="well-formed-unknown"),
]

# (method, path after the id, body, the callers that try it)
ID_OPERATIONS = [
    pytest.param("GET", "", None, [{}, READER], id="GET"),
    pytest.param("PUT", "", VALID["change"], [WRITER], id="PUT"),
    pytest.param("DELETE", "", None, [WRITER], id="DELETE"),
    pytest.param("POST", "/updates", VALID["update"], [WRITER], id="POST-updates"),
    pytest.param("PUT", "/postmortem", VALID["postmortem"], [WRITER], id="PUT-postmortem"),
    pytest.param("GET", "/timeline", None, [{}, READER], id="GET-timeline"),
]


@pytest.mark.parametrize(("method", "suffix", "body", "callers"), ID_OPERATIONS)
@pytest.mark.parametrize("garbage", GARBAGE_IDS)
def test_garbage_ids_are_404(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    garbage: str,
    method: str,
    suffix: str,
    body: dict[str, Any],
    callers: list[dict[str, str]],
) -> None:
    with nothing_changes(http, services, incident["id"]):
        for headers in callers:
            path = f"{INCIDENTS}/{garbage}{suffix}"
            response = http.request(method, path, json=body, headers=headers)
            assert_problem(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nope"),
        ("GET", "/api/v2/incidents"),
        ("POST", "/api/v1/nope"),
        ("GET", "/api/v1/incidents/{id}/nope"),
        ("POST", "/api/v1/incidents/{id}/updates/1"),
        ("DELETE", "/api/v1/incidents/{id}/updates/1"),
        ("GET", "/api/v1/events/1"),
    ],
)
def test_unknown_paths_are_404(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    method: str,
    path: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        body = VALID["update"] if method == "POST" else None
        response = http.request(
            method, path.format(id=incident["id"]), json=body, headers=WRITER
        )
        assert_problem(response, 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/incidents/../../etc/passwd",
        "/api/v1/incidents/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/incidents/..%2F..%2Fetc%2Fpasswd/timeline",
        "/api/v1/incidents//timeline",
    ],
)
def test_traversal_paths_are_404(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    path: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_problem(raw(http, "GET", path, READER), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/api/v1/incidents/{id}"),
        ("POST", "/api/v1/incidents/{id}"),
        ("OPTIONS", "/api/v1/incidents/{id}"),
        ("PUT", "/api/v1/incidents"),
        ("DELETE", "/api/v1/incidents"),
        ("PATCH", "/api/v1/incidents"),
        ("GET", "/api/v1/incidents/{id}/updates"),
        ("PUT", "/api/v1/incidents/{id}/updates"),
        ("DELETE", "/api/v1/incidents/{id}/updates"),
        ("POST", "/api/v1/incidents/{id}/timeline"),
        ("DELETE", "/api/v1/incidents/{id}/timeline"),
        ("POST", "/api/v1/events"),
        ("DELETE", "/api/v1/events"),
        ("POST", "/healthz"),
        ("DELETE", "/readyz"),
    ],
)
def test_wrong_methods_are_405(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    method: str,
    path: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        body = json.dumps(VALID["change"]).encode() if method != "GET" else None
        headers = {**WRITER, **JSON} if body else WRITER
        response = http.request(
            method, path.format(id=incident["id"]), content=body, headers=headers
        )
        assert_problem(response, 405)
        assert method not in response.headers["allow"], response.headers


# --------------------------------------------------------------------------
# query parameters of /api/v1/events
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("after=-1", "query.after"),
        ("after=abc", "query.after"),
        ("after=1.5", "query.after"),
        ("after=", "query.after"),
        (f"after={2**62 + 1}", "query.after"),
        ("after=99999999999999999999999999", "query.after"),
        ("limit=0", "query.limit"),
        ("limit=-5", "query.limit"),
        ("limit=1001", "query.limit"),
        ("limit=abc", "query.limit"),
        ("limit=", "query.limit"),
        ("type=bogus", "query.type"),
        ("type=com.example.incident.bogus", "query.type"),
        ("type=created&type=bogus", "query.type"),
        ("type=", "query.type"),
        ("subject=", "query.subject"),
        ("subject=" + "x" * 201, "query.subject"),
    ],
    ids=lambda value: value if len(value) <= 40 else f"{value[:20]}...",
)
def test_events_query_garbage_is_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    query: str,
    named: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_invalid(http.get(f"{EVENTS}?{query}", headers=READER), named)


@pytest.mark.parametrize(
    "subject",
    ["%ED%A0%80", "%FF", quote("\u2603", safe=""), "x" * 200],
    ids=["surrogate", "invalid-utf8", "unicode", "200-chars"],
)
def test_events_of_an_unknown_subject_are_an_empty_page(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    subject: str,
) -> None:
    """A subject that names no incident is a filter that matches nothing, not an error."""
    with nothing_changes(http, services, incident["id"]):
        page = assert_ok(http.get(f"{EVENTS}?subject={subject}", headers=READER))
        assert page["items"] == []


# --------------------------------------------------------------------------
# query parameters of the incident list, and the read-your-writes position
# --------------------------------------------------------------------------


def cursor_of(text: str) -> str:
    """A cursor in the list's own encoding (base64url of `v1:<position>`), forged."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("status=bogus", "query.status.0"),
        ("status=investigating&status=Resolved", "query.status.1"),
        ("severity=bogus", "query.severity.0"),
        ("incident_type=bogus", "query.incident_type.0"),
        ("limit=0", "query.limit"),
        ("limit=101", "query.limit"),
        ("limit=abc", "query.limit"),
        ("since=garbage", "query.since"),
        ("since=2024-05-01T10:00:00", "query.since"),
        ("until=2024-05-01", "query.until"),
        ("q=", "query.q"),
        ("q=" + "x" * 201, "query.q"),
        ("cursor=" + "a" * 201, "query.cursor"),
    ],
    ids=lambda value: value if len(value) <= 40 else f"{value[:20]}...",
)
def test_list_query_garbage_is_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    query: str,
    named: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_invalid(http.get(f"{INCIDENTS}?{query}", headers=READER), named)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("%00", id="nul"),  # a NUL anywhere in the query is a 400 too
        pytest.param(quote("\u2603", safe=""), id="unicode"),
        pytest.param(cursor_of("v2:10"), id="other-version"),
        pytest.param(cursor_of("v1:-1"), id="negative"),
        pytest.param(cursor_of("v1:abc"), id="not-a-number"),
        pytest.param(cursor_of("v1:" + "9" * 19), id="19-digits"),
        pytest.param(cursor_of("v1:" + "9" * 60), id="60-digits"),
    ],
)
def test_a_forged_cursor_is_400(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    cursor: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_problem(http.get(f"{INCIDENTS}?cursor={cursor}", headers=READER), 400)


@pytest.mark.parametrize(
    "url",
    [f"{EVENTS}?subject=%00", f"{EVENTS}?subject=incident-%00", f"{INCIDENTS}?q=%00",
     f"{INCIDENTS}?service=%00", f"{INCIDENTS}?region=%00", f"{INCIDENTS}?service=x%00y"],
    ids=["subject-nul", "subject-embedded-nul", "q-nul", "service-nul", "region-nul",
         "service-embedded-nul"],
)
def test_a_nul_character_in_the_query_is_400(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    url: str,
) -> None:
    """No stored text holds NUL (PostgreSQL text cannot), so no filter could match it."""
    with nothing_changes(http, services, incident["id"]):
        assert_problem(http.get(url, headers=READER), 400)


@pytest.mark.parametrize("query", ["q=%25_%5C"], ids=["q-like-wildcards"])
def test_list_filters_that_match_nothing_are_an_empty_page(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    query: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        page = assert_ok(http.get(f"{INCIDENTS}?{query}", headers=READER))
        assert page["items"] == []
        assert page["total"] == 0


POSITION_GARBAGE = ["abc", "-1", "1.5", "0x10", "9" * 19, "\u00b2"]


@pytest.mark.parametrize("where", ["parameter", "header", "cookie"])
@pytest.mark.parametrize("position", POSITION_GARBAGE, ids=lambda value: ascii(value))
def test_a_garbage_min_position_is_400(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    where: str,
    position: str,
) -> None:
    """The read-your-writes position, named by a parameter, a header or the cookie."""
    requests: dict[str, dict[str, Any]] = {
        "parameter": {"params": {"min_position": position}},
        "header": {"headers": {"Min-Position": position.encode("latin-1")}},
        "cookie": {"headers": {"Cookie": f"store_position={position}".encode("latin-1")}},
    }
    request = requests[where]
    with nothing_changes(http, services, incident["id"]):
        for path in (INCIDENTS, f"{INCIDENTS}/{incident['id']}", f"{INCIDENTS}/status/summary"):
            # A client of its own, so that no cookie of the shared one goes along.
            response = httpx.get(f"{http.base_url}{path}", timeout=30, **request)
            assert_problem(response, 400)


# --------------------------------------------------------------------------
# headers: Authorization, Idempotency-Key, If-Match
# --------------------------------------------------------------------------

BAD_AUTHORIZATION = [
    pytest.param(None, id="missing"),
    pytest.param("Basic d3JpdGVyOndyaXRlci10b2tlbg==", id="basic"),
    pytest.param("Bearer", id="bearer-without-token"),
    pytest.param("Bearer unknown-token", id="unknown-token"),
    pytest.param(f"Bearer {TOKENS['writer'].upper()}", id="wrong-case-token"),
    pytest.param(f"Bearer {TOKENS['writer']} extra", id="token-with-extra"),
    pytest.param(f"Bearer {TOKENS['writer']}x", id="token-with-suffix"),
    pytest.param(f"Token {TOKENS['writer']}", id="other-scheme"),
    pytest.param(TOKENS["writer"], id="no-scheme"),
    pytest.param("Bearer \u00e9t\u00e9".encode(), id="non-ascii-utf8"),
    pytest.param("Bearer \u00e9t\u00e9".encode("latin-1"), id="non-ascii-latin1"),
]


_addresses = itertools.count()


def _next_address() -> str:
    n = next(_addresses)
    return f"198.18.{n // 256 % 256}.{n % 256}"


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
def test_writes_without_a_valid_token_are_401(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    authorization: str | bytes | None,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        for kind in [*WRITES, "delete"]:
            # Each from an address of its own (relayed by a trusted proxy on loopback):
            # 20 failed authentications a minute from one address are answered 429.
            headers = {"Authorization": authorization, "X-Forwarded-For": _next_address()}
            response = write(http, kind, incident["id"], VALID.get(kind), headers=headers)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", [*WRITES, "delete"])
def test_writes_with_a_reader_token_are_403(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    kind: str,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        response = write(http, kind, incident["id"], VALID.get(kind), headers=READER)
        assert_problem(response, 403)


@pytest.mark.parametrize(
    "authorization", [p for p in BAD_AUTHORIZATION if p.id != "missing"]
)
def test_reads_with_a_garbage_token_are_401(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    authorization: str | bytes,
) -> None:
    """A token that is sent must be valid: it is not silently read as anonymous."""
    with nothing_changes(http, services, incident["id"]):
        for path in (f"{INCIDENTS}/{incident['id']}", f"{INCIDENTS}/{incident['id']}/timeline",
                     INCIDENTS, f"{INCIDENTS}/status/summary", EVENTS):
            response = http.get(path, headers=[(b"Authorization", as_bytes(authorization)),
                                               (b"X-Forwarded-For", _next_address().encode())])
            assert_problem(response, 401)


def test_the_event_log_needs_a_token(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
) -> None:
    with nothing_changes(http, services, incident["id"]):
        assert_problem(http.get(EVENTS), 401)


@pytest.mark.parametrize("kind", ["create", "update"])
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("two words", id="inner-space"),
        pytest.param("tab\there", id="inner-tab"),
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("\u043a\u043b\u044e\u0447".encode(), id="non-ascii-utf8"),
        pytest.param("cl\u00e9".encode("latin-1"), id="non-ascii-latin1"),
    ],
)
def test_an_invalid_idempotency_key_is_400(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    kind: str,
    key: str | bytes,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        response = write(
            http, kind, incident["id"], VALID[kind], headers={"Idempotency-Key": key}
        )
        assert_problem(response, 400)


@pytest.mark.parametrize("kind", ["create", "update"])
@pytest.mark.parametrize("key", ["   ", "\t"], ids=["spaces", "tab"])
def test_an_idempotency_key_blank_after_strip_is_400(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    kind: str,
    key: str,
) -> None:
    """Sent as is (httpx refuses such a header value), the server strips it to nothing."""
    method, path = target(kind, incident["id"])
    body = json.dumps(VALID[kind]).encode()
    headers = {
        **WRITER,
        **JSON,
        "Idempotency-Key": key,
        "Content-Length": str(len(body)),
    }
    with nothing_changes(http, services, incident["id"]):
        assert_problem(raw(http, method, path, headers, body), 400)


@pytest.mark.parametrize(
    "if_match",
    [
        pytest.param("garbage", id="word"),
        pytest.param('"abc"', id="quoted-word"),
        pytest.param('W/"abc"', id="weak-word"),
        pytest.param('"-1"', id="negative"),
        pytest.param('"1.0"', id="decimal"),
        pytest.param('""', id="empty-tag"),
        pytest.param("", id="empty-header"),
        pytest.param('"9999999999999999999999"', id="huge"),
        pytest.param('"0"', id="version-0"),
        pytest.param('"2"', id="future-version"),
        pytest.param("\u00fc".encode(), id="non-ascii"),
    ],
)
def test_if_match_garbage_is_412(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    if_match: str | bytes,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        for kind in ("change", "update", "postmortem", "delete"):
            headers = {"If-Match": if_match}
            response = write(http, kind, incident["id"], VALID.get(kind), headers=headers)
            assert_problem(response, 412)


def test_a_stale_if_match_is_412_with_the_current_etag(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
) -> None:
    current = add_update(http, incident["id"], message="found it", status="identified")
    with nothing_changes(http, services, incident["id"]):
        response = write(
            http, "change", incident["id"], VALID["change"], headers={"If-Match": '"1"'}
        )
        problem = assert_problem(response, 412)
        assert response.headers["etag"] == f'"{current["version"]}"'
        assert problem["current_version"] == current["version"]


@pytest.mark.parametrize("kind", ["create", "update"])
def test_an_idempotency_key_reused_for_another_request_is_422(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    kind: str,
) -> None:
    key = {"Idempotency-Key": f"key-{kind}"}
    first = write(http, kind, incident["id"], VALID[kind], headers=key)
    assert first.status_code == 201, first.text
    other = {"create": {"title": "Another"}, "update": {"message": "Another"}}[kind]
    with nothing_changes(http, services, incident["id"]):
        assert_problem(write(http, kind, incident["id"], other, headers=key), 422)


# --------------------------------------------------------------------------
# the lifecycle
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["resolved", "post_incident"])
def test_an_incident_cannot_start_inactive(
    http: httpx.Client,
    services: Services,
    incident: dict[str, Any],
    status: str | None,
) -> None:
    with nothing_changes(http, services, incident["id"]):
        body = {**VALID["create"], "status": status}
        assert_problem(write(http, "create", incident["id"], body), 409)


@pytest.mark.parametrize("active", ["investigating", "identified", "monitoring"])
def test_post_incident_is_refused_from_an_active_state(
    http: httpx.Client,
    services: Services,
    active: str,
) -> None:
    incident_id = incident_in(http, active)
    with nothing_changes(http, services, incident_id):
        body = {"status": "post_incident", "message": "review"}
        assert_problem(write(http, "update", incident_id, body), 409)


@pytest.mark.parametrize("status", ["investigating", "identified", "monitoring", "resolved"])
def test_post_incident_is_final(http: httpx.Client, services: Services, status: str | None) -> None:
    incident_id = incident_in(http, "post_incident")
    with nothing_changes(http, services, incident_id):
        body = {"status": status, "message": "reopen"}
        assert_problem(write(http, "update", incident_id, body), 409)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "resolved", "message": "fixed"}, id="resolve"),
        pytest.param({"status": "investigating"}, id="reopen"),
        pytest.param({"message": "more news"}, id="message-only"),
        pytest.param({"public_message": "more news"}, id="public-message-only"),
    ],
)
def test_a_deleted_incident_takes_no_status_update(
    http: httpx.Client,
    services: Services,
    body: dict[str, Any],
) -> None:
    incident_id = incident_in(http, "deleted")
    with nothing_changes(http, services, incident_id):
        assert_problem(write(http, "update", incident_id, body), 409)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"title": "Renamed"}, id="title"),
        pytest.param({"is_public": False}, id="is_public"),
        pytest.param({"severity": "critical", "description": "worse"}, id="two-fields"),
    ],
)
def test_a_deleted_incident_takes_no_change(
    http: httpx.Client,
    services: Services,
    body: dict[str, Any],
) -> None:
    incident_id = incident_in(http, "deleted")
    with nothing_changes(http, services, incident_id):
        assert_problem(write(http, "change", incident_id, body), 409)


def test_a_deleted_incident_is_gone_for_get_and_delete(
    http: httpx.Client,
    services: Services,
) -> None:
    incident_id = incident_in(http, "deleted")
    with nothing_changes(http, services, incident_id):
        assert_problem(http.get(f"{INCIDENTS}/{incident_id}"), 404)
        assert_problem(http.get(f"{INCIDENTS}/{incident_id}", headers=READER), 404)
        assert_problem(http.get(f"{INCIDENTS}/{incident_id}/timeline"), 404)
        assert_problem(http.delete(f"{INCIDENTS}/{incident_id}", headers=WRITER), 404)
        assert_problem(http.delete(f"{INCIDENTS}/{incident_id}", headers=ADMIN), 404)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "9" * 19, "\u00b2"],
                         ids=lambda value: ascii(value))
def test_a_garbage_last_event_id_is_400(
    http: httpx.Client, services: Services, incident: dict[str, Any], value: str
) -> None:
    with nothing_changes(http, services, incident["id"]):
        response = raw(http, "GET", f"{EVENTS}/stream",
                       {**READER, "Last-Event-ID": value})  # "²" goes out as byte 0xB2
        assert_problem(response, 400)
