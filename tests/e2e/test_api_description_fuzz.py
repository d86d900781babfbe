"""Schema-driven fuzzing of the live API (schemathesis): for every documented operation,
requests generated from /openapi.json, sent with an admin token to a real server on
loopback, must get no server error and an answer the description documents (status code,
content type and body schema)."""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TOKENS, LiveServer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))  # per operation and mode: a few
# minutes on two loaded cores (set FUZZ_EXAMPLES to search longer)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
# A live stream never ends by itself: its answers are checked in tests/e2e/test_stream.py.
ENDLESS = {("GET", "/api/v1/events/stream")}
# schemathesis's own strategies draw from the `random` module, which hypothesis reports now
# and then as a deprecation; it says nothing about this service.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")


def test_generated_requests_get_documented_answers(live_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results  # a valid description
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    fuzzed = [op for op in operations if (op.method.upper(), op.path) not in ENDLESS]
    assert len(fuzzed) >= 20, [op.label for op in operations]

    unbreakable: list[str] = []
    calls = {mode: 0 for mode in GenerationMode}
    # Valid requests, and requests that break the description (each must be refused 4xx).
    for operation, mode in itertools.product(fuzzed, GenerationMode):
        if mode is GenerationMode.NEGATIVE and not _takes_input(operation):
            continue  # nothing to break
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(base_url=live_server.url, headers=ADMIN, checks=CHECKS,
                                   timeout=30)
            if case.method == "GET":  # and what an anonymous reader gets (public models)
                case.call_and_validate(base_url=live_server.url, checks=CHECKS, timeout=30)

        try:
            check()
        except Unsatisfiable:
            # A negative request needs a constraint to break: a free-form string has none.
            assert mode is GenerationMode.NEGATIVE, operation.label
            unbreakable.append(operation.label)
        calls[mode] += 1
    print(f"\n{len(fuzzed)} operations fuzzed with up to {EXAMPLES} valid requests each, "
          f"{calls[GenerationMode.NEGATIVE] - len(unbreakable)} with up to {EXAMPLES} invalid "
          f"ones too (none can be made for {', '.join(unbreakable)})")


def _takes_input(operation: Any) -> bool:
    return any(len(group) for group in (operation.path_parameters, operation.query,
                                        operation.headers, operation.body))
