"""The dashboard's filter form, read into the incident list's own filter model
(api/filters.IncidentFilters), so the table and `GET /api/v1/incidents` accept the same
filters. The form encodes them as a browser's GET form does, and a wrong value is shown
above the table (the rest still applies) rather than answered 422:

- every field is sent, empty ones too: an empty field is no filter;
- services and regions are comma-separated in one text field;
- `datetime-local` times carry no offset: the form says they are UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from api.filters import DEFAULT_LIMIT, IncidentFilters
from domain.visibility import Audience
from projections.queries import BadCursor, IncidentQueries

_CHOICES = ("status", "severity", "incident_type")
_NAMES = ("service", "region")
_TEXTS = ("q", "limit", "cursor")
_MOMENTS = ("since", "until")
_OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}:?\d{2})$")


@dataclass(frozen=True)
class FormFilters:
    filters: IncidentFilters
    errors: tuple[str, ...] = ()


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def form_values(params: QueryParams) -> dict[str, Any]:
    """The form's fields as the model's: empty ones left out."""
    values: dict[str, Any] = {}
    for name in _CHOICES:
        values[name] = _unique(v for v in params.getlist(name) if v)
    for name in _NAMES:
        values[name] = _unique(part.strip() for value in params.getlist(name)
                               for part in value.split(",") if part.strip())
    for name in _TEXTS + _MOMENTS:
        text = (params.get(name) or "").strip()
        if text:
            values[name] = text
    for name in _MOMENTS:
        if name in values and not _OFFSET.search(values[name]):
            values[name] += "Z"
    return {name: value for name, value in values.items() if value != []}


def read_form(params: QueryParams) -> FormFilters:
    """The filters of the query string; each wrong value is left out and named."""
    values = form_values(params)
    errors: list[str] = []
    while True:
        try:
            return FormFilters(IncidentFilters.model_validate(values), tuple(errors))
        except ValidationError as invalid:
            dropped: set[tuple[str, int | None]] = set()
            for problem in invalid.errors():
                name, index = str(problem["loc"][0]), None
                if len(problem["loc"]) > 1 and isinstance(problem["loc"][1], int):
                    index = problem["loc"][1]
                shown = params.get(name) if name in _MOMENTS else problem["input"]
                message = problem["msg"].removeprefix("Value error, ")
                errors.append(f"{name} {shown!r}: {message}")
                dropped.add((name, index))
            # Items from the last one back (so indexes stay right), then whole fields.
            for name, index in sorted(dropped, key=lambda d: (d[1] is None, -(d[1] or 0))):
                if index is None:
                    values.pop(name, None)
                elif name in values:
                    del values[name][index]


async def form_filters(request: Request) -> FormFilters:
    return read_form(request.query_params)


def query_string(filters: IncidentFilters, cursor: str | None = None) -> str:
    """The dashboard's address for these filters (in the form's encoding), at `cursor`."""
    pairs: list[tuple[str, str]] = []
    for name in _CHOICES:
        pairs += [(name, v.value) for v in getattr(filters, name)]
    for name in _NAMES:
        pairs += [(name, v) for v in getattr(filters, name)]
    if filters.q:
        pairs.append(("q", filters.q))
    for name in _MOMENTS:
        if (moment := getattr(filters, name)) is not None:
            pairs.append((name, moment.strftime("%Y-%m-%dT%H:%M")))
    if filters.limit != DEFAULT_LIMIT:
        pairs.append(("limit", str(filters.limit)))
    if cursor:
        pairs.append(("cursor", cursor))
    return urlencode(pairs)


def incident_table(queries: IncidentQueries, form: FormFilters) -> dict[str, Any]:
    """The dashboard table's page of incidents (every one: reader tokens only), what was
    wrong with the filters, and the addresses of the first and the next page."""
    filters, errors, cursor = form.filters, list(form.errors), form.filters.cursor
    try:
        page = queries.list_incidents(filters.list_filters(), audience=Audience.READER,
                                      limit=filters.limit, cursor=cursor)
    except BadCursor:
        errors.append("the page link is not valid any more; showing the first page")
        page = queries.list_incidents(filters.list_filters(), audience=Audience.READER,
                                      limit=filters.limit)
    return {"page": page, "errors": errors,
            "first_page": query_string(filters) if cursor else None,
            "next_page": query_string(filters, page.next_cursor) if page.next_cursor else None}


DashboardFilters = Annotated[FormFilters, Depends(form_filters)]
