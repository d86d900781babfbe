"""Turns incidents and stored events into HTTP answers. What each caller may see is
decided by `domain.visibility`; the bodies are built by `projections.incident_view`."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse, Response

from projections.incident_view import Body


def incident_response(
    body: Body,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """One incident's answer, with its version as the ETag."""
    return JSONResponse(
        body,
        status_code=status_code,
        headers={"ETag": f'"{body["version"]}"', **(headers or {})},
    )


def event_list_response(documents: list[bytes], **fields: Any) -> Response:
    """A JSON object whose `items` are the stored documents, byte for byte."""
    parts = [b'{"items":[', b",".join(documents), b"]"]
    for name, value in fields.items():
        parts.append(b"," + json.dumps(name).encode() + b":" + json.dumps(value).encode())
    parts.append(b"}")
    return Response(b"".join(parts), media_type="application/json")
