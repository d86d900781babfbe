"""`GET /api/v1/services`' body, drawn from kept days per service, is byte for byte the
JSON of the whole answer, whatever the names, ratios and keys."""

from __future__ import annotations

from api.answer_cache import json_body
from api.service_bars import services_body
from projections.service_queries import Day, Listed, ServiceBar


def bars(uptime: float) -> list[ServiceBar]:
    listed = [Listed(1, "incident-a", "Down \u202e\"quoted\" \u00e9", False)]
    return [
        ServiceBar("api \"v1\" \u00fcber", "major_outage", uptime,
                   [Day("2026-03-01", "high", 61, listed), Day("2026-03-02", None, 0)],
                   key=("q", "public", "api", 7, 20513, 2, 0)),
        ServiceBar("\u05e9\u05e8\u05ea \u2028 line", "operational", 1.0,
                   [Day("2026-03-02", None, 0)], key=None),
        ServiceBar("empty", "under_maintenance", 0.0, [], key=("q", "public", "empty", 1, 0, 0, 0)),
    ]


def test_the_body_is_the_whole_answers_json() -> None:
    for uptime in (0.999931, 1.0, 0.5, 1e-06):
        for _ in range(2):  # drawn, then kept
            found = bars(uptime)
            assert services_body(found) == json_body(
                {"items": [bar.answer() for bar in found]})
    assert services_body([]) == json_body({"items": []})
