"""Every answer an operation can give, documented in /openapi.json for every route of the
app (also those added later): derived from what the route depends on.

- every operation: 400 (a NUL in the query string, a bad `Min-Position`), 413 (a body over
  the limit, refused before any route runs) and 503 (the database away, or the read tables
  behind a `Min-Position`), with Retry-After;
- a caller identified by a token (`api.auth.identify`): 401 for a bad token, and 429 with
  Retry-After (failed authentications, a token's writes; subscriber sign-ups);
- a required role: 401 without a token, 403 when the token's role is below it;
- path parameters: 404; any parameter or a body: 422 (the fields named); If-Match: 412 with
  the current ETag; a write (any method but GET, HEAD, OPTIONS): 409.

Every error is an `application/problem+json` document, the `Problem` schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.auth import REQUIRED_ROLE, identify
from api.deps import expected_version
from api.problems import PROBLEM, problem_schema
from api.rate_limits import take_sign_up

_REF = {"$ref": "#/components/schemas/Problem"}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer"}}}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {PROBLEM: {"schema": _REF}}}
    if headers:
        answer["headers"] = headers
    return answer


_ANSWERS: dict[int, dict[str, Any]] = {
    400: _problem("Bad request: the body is not JSON, a header or the query string is "
                  "malformed"),
    401: _problem("No valid bearer token", {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    403: _problem("The token's role is not enough"),
    404: _problem("Nothing of that id, or nothing the caller may see"),
    409: _problem("Refused by the current state (a rule of the incident's lifecycle, or a "
                  "concurrent command: retry after Retry-After)", _RETRY_AFTER),
    412: _problem("If-Match names another version", {
        "ETag": {"description": "the current version", "schema": {"type": "string"}}}),
    413: _problem("The request body is over the limit"),
    422: _problem("Invalid fields, each named in `errors`"),
    429: _problem("Too many requests: a limit was reached; wait Retry-After seconds",
                 _RETRY_AFTER),
    503: _problem("The database is unavailable, or the read tables have not caught up yet; "
                  "retry after Retry-After", _RETRY_AFTER),
}


def _calls(dependant: Any) -> list[Any]:
    """What the route depends on, directly or through other dependencies."""
    found = []
    for dependency in dependant.dependencies:
        found.append(dependency.call)
        found += _calls(dependency)
    return found


def _statuses(route: APIRoute) -> set[int]:
    dependant = route.dependant
    calls = _calls(dependant)
    statuses = {400, 413, 503}
    if identify in calls or take_sign_up in calls:
        statuses |= {401, 429}
    roles = [REQUIRED_ROLE[call] for call in calls if call in REQUIRED_ROLE]
    if roles:
        statuses.add(401)
        if any(role != "reader" for role in roles):
            statuses.add(403)
    if _params(dependant, "path_params"):
        statuses.add(404)
    if any(_params(dependant, kind) for kind in (
            "path_params", "query_params", "header_params", "cookie_params", "body_params")):
        statuses.add(422)
    if expected_version in calls:
        statuses.add(412)
    if (route.methods or set()) - _SAFE_METHODS:
        statuses.add(409)
    return statuses


def _params(dependant: Any, kind: str) -> list[Any]:
    """The route's parameters of one kind, its dependencies' included."""
    found = list(getattr(dependant, kind))
    for dependency in dependant.dependencies:
        found += _params(dependency, kind)
    return found


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """The operations, also those of included routers (FastAPI includes a router as one
    route that resolves its routes when asked)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def document_answers(app: FastAPI) -> None:
    """Adds each route's possible error answers to its documented ones (those it documents
    itself win), and the Problem schema to the description's components. Call it once the
    routers are included."""
    for route in _api_routes(app.routes):
        if route.include_in_schema:
            for status in sorted(_statuses(route)):
                own = route.responses.get(status)
                # The route's own words win; the problem document is what it answers.
                route.responses[status] = _ANSWERS[status] if own is None else {
                    **_ANSWERS[status], **own, "content": _ANSWERS[status]["content"]}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()  # kept by the app as its openapi_schema
            spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = \
                problem_schema()
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
