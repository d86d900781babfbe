"""Every error answer is application/problem+json (RFC 9457); domain and command errors
are mapped to HTTP here and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import SERVER_OWNED
from commands.application import (
    Contended,
    IdempotencyKeyReused,
    IncidentNotFound,
    VersionMismatch,
)
from commands.exactly_once import StoreUnavailable
from domain.errors import IncidentRuleError, WindowRefused
from infra.database import CONNECTION_ERRORS
from infra.integrations.admin import (
    IntegrationNotFound,
    InvalidIntegration,
    NoSecret,
    ReplayRefused,
)

log = logging.getLogger("product_status.api")

PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raised by routes and dependencies to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def incident_not_found(incident_id: str) -> Problem:
    """The one answer for an incident the caller may not see: an unknown one, and one
    hidden from the caller (private, deleted, not yet declared at `as_of`), are alike,
    so that a 404 tells nothing about what exists."""
    return Problem(404, str(IncidentNotFound(incident_id)))


def problem_schema() -> dict[str, Any]:
    """The JSON schema of a problem document, for the API description."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "description": "the invalid fields (422)", "items": {
                "type": "object", "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
            "current_version": {"type": "integer",
                                "description": "the incident's version (412)"},
        },
    }


def problem_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    listed = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        field = ".".join(loc) or "body"
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            name = loc[-1] if loc else field
            if name in SERVER_OWNED:
                message = f"'{name}' is set by the server and cannot be sent"
            elif name == "status":
                message = "status changes only through status updates (POST .../updates)"
            else:
                message = f"unknown field '{name}'"
        listed.append({"field": field, "message": message})
    return listed


# Routes whose contract calls every body they cannot take malformed, JSON or not (422).
_NOT_JSON_IS_UNPROCESSABLE = frozenset({"/api/v1/integrations/alertmanager"})


async def _validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        status = 422 if request.url.path in _NOT_JSON_IS_UNPROCESSABLE else 400
        return problem_response(status, "the request body is not valid JSON")
    return problem_response(
        422, "the request has invalid fields", errors=_field_errors(errors)
    )


async def _problem(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Problem)
    return problem_response(error.status, error.detail, error.headers, **error.extra)


async def _http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return problem_response(error.status_code, str(error.detail), dict(error.headers or {}))


async def _not_found(_: Request, error: Exception) -> JSONResponse:
    return problem_response(404, str(error))


async def _rule(_: Request, error: Exception) -> JSONResponse:
    return problem_response(409, str(error))


async def _window(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, WindowRefused)
    return problem_response(422, str(error),
                            errors=[{"field": error.field, "message": str(error)}])


async def _mismatch(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, VersionMismatch)
    return problem_response(
        412, str(error), {"ETag": f'"{error.current}"'}, current_version=error.current
    )


async def _key_reused(_: Request, error: Exception) -> JSONResponse:
    return problem_response(422, str(error))


async def _contended(_: Request, error: Exception) -> JSONResponse:
    return problem_response(409, str(error), {"Retry-After": "1"})


async def _store_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.warning("command not confirmed: %s", error.__cause__ or error)
    return problem_response(503, str(error), {"Retry-After": "1"})


async def _database_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", error)
    return problem_response(
        503, "the database could not be reached; retry shortly", {"Retry-After": "1"}
    )
async def _invalid_integration(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidIntegration)
    return problem_response(422, "the integration's settings are not valid",
                            errors=[{"field": f, "message": m} for f, m in error.errors])


async def _replay_refused(_: Request, error: Exception) -> JSONResponse:
    return problem_response(422, str(error), errors=[{"field": "after", "message": str(error)}])


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=error)
    return problem_response(500, "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(IncidentNotFound, _not_found)
    app.add_exception_handler(IncidentRuleError, _rule)
    app.add_exception_handler(WindowRefused, _window)
    app.add_exception_handler(VersionMismatch, _mismatch)
    app.add_exception_handler(IdempotencyKeyReused, _key_reused)
    app.add_exception_handler(Contended, _contended)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    for connection_error in CONNECTION_ERRORS:
        app.add_exception_handler(connection_error, _database_unavailable)
    app.add_exception_handler(IntegrationNotFound, _not_found)
    app.add_exception_handler(InvalidIntegration, _invalid_integration)
    app.add_exception_handler(ReplayRefused, _replay_refused)
    app.add_exception_handler(NoSecret, _rule)
    app.add_exception_handler(Exception, _unexpected)
