"""compose.yaml runs the topology tests/fleet.py proves on one machine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.fleet import API_ARGS, WORKER_COMMANDS

COMPOSE = Path(__file__).parents[2] / "compose.yaml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_compose_runs_the_fleet() -> None:
    services = _services()
    commands = sorted(" ".join(s["command"]) for s in services.values()
                      if "build" in s)
    expected = [" ".join(("serve", *API_ARGS))] * 2
    for command in WORKER_COMMANDS:
        expected += [command] * 2
    assert commands == sorted(expected)
    nats = [s for s in services.values() if s.get("image", "").startswith("nats:")]
    assert len(nats) == 3
    assert all("--routes" in s["command"] and "-js" in s["command"] for s in nats)
    for service in services.values():
        if "build" in service:
            env = service["environment"]
            assert env["CLOUDEVENT_STREAM_REPLICAS"] == "3"
            assert len(env["CLOUDEVENT_BROKER_URL"].split(",")) == 3


def test_images_are_pinned_and_every_service_is_health_checked() -> None:
    for name, service in _services().items():
        image = service.get("image")
        if image is not None:
            assert re.fullmatch(r"[a-z0-9./-]+:\d+\.\d+(\.\d+)?(-[a-z0-9]+)?", image), name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
