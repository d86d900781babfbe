"""Integrations never reach non-public networks (INTEGRATIONS_ALLOW_PRIVATE_NETWORKS is
false here): refused at create and change with 422, and again on every connection.
Refusals of addresses off this machine are made before any connection is tried."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.bootstrap import bootstrap
from infra.settings import Settings
from tests.conftest import TOKENS, make_settings
from tests.receivers import ConnectionLog, HttpReceiver

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
BASE = "/api/v1/integrations"


@pytest.fixture
def settings(database_url: str) -> Settings:
    # 127.0.0.2 stands for an internal server the operator trusts: it lets a redirect
    # be answered from loopback while every other non-public address stays refused.
    return make_settings(database_url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="false",
                         INTEGRATIONS_ALLOWED_NETWORKS="127.0.0.2")


@pytest.fixture
def listener() -> Iterator[ConnectionLog]:
    log = ConnectionLog()
    yield log
    log.close()


def refused(http: httpx.Client, url: str, kind: str = "webhook") -> str:
    body: dict[str, Any] = {"kind": kind, "url": url}
    if kind == "pagerduty":
        body["routing_key"] = "R0UTINGKEY"
    response = http.post(BASE, json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == "url"
    assert http.get(BASE, headers=ADMIN).json()["items"] == []
    message: str = error["message"]
    return message


def test_loopback_ipv4_is_refused(http: httpx.Client, listener: ConnectionLog) -> None:
    assert "loopback" in refused(http, f"http://127.0.0.1:{listener.port}/hook")
    assert listener.connections == 0


def test_loopback_ipv6_is_refused(http: httpx.Client) -> None:
    assert "loopback" in refused(http, "http://[::1]:8080/hook")


def test_a_private_network_is_refused(http: httpx.Client) -> None:
    assert "private" in refused(http, "http://10.0.0.1/hook")


def test_the_cloud_metadata_address_is_refused(http: httpx.Client) -> None:
    assert "link-local" in refused(http, "http://169.254.169.254/latest/meta-data/")


def test_localhost_is_refused(http: httpx.Client, listener: ConnectionLog) -> None:
    assert "this machine" in refused(http, f"http://localhost:{listener.port}/hook")
    assert listener.connections == 0


def loopback_name() -> str:
    """A name of this machine that the system resolves to loopback (from /etc/hosts)."""
    names = [socket.gethostname()]
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#")[0].split()
        if fields and fields[0].startswith("127."):
            names += fields[1:]
    for name in names:
        if name.lower().startswith("localhost") or name.lower().endswith(".localhost"):
            continue
        try:
            found = {str(info[4][0]) for info in socket.getaddrinfo(name, 80)}
        except OSError:
            continue
        if found and all(address.startswith("127.") or address == "::1" for address in found):
            return name
    raise AssertionError("no name in /etc/hosts resolves to loopback")


def test_a_name_resolving_to_loopback_is_refused(http: httpx.Client,
                                                 listener: ConnectionLog) -> None:
    name = loopback_name()
    message = refused(http, f"http://{name}:{listener.port}/hook", kind="slack")
    assert "loopback" in message
    assert name in message
    assert listener.connections == 0


@pytest.mark.parametrize("host", [
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:10.0.0.1]", "[64:ff9b::a9fe:a9fe]",
    "[2002:7f00:1::]", "[fe80::1]", "[fc00::1]", "[::]", "0.0.0.0", "0", "2130706433",
    "0x7f.1", "127.1", "100.64.0.1", "192.168.1.1", "172.16.0.1", "224.0.0.1",
    "255.255.255.255", "198.18.0.1", "localhost.", "api.localhost",
])
def test_other_forms_of_non_public_addresses_are_refused(http: httpx.Client, host: str) -> None:
    refused(http, f"http://{host}/hook", kind="pagerduty")


def test_changing_the_url_is_checked_too(http: httpx.Client) -> None:
    receiver = HttpReceiver(host="127.0.0.2").start()
    try:
        created = http.post(BASE, json={"kind": "webhook", "url": receiver.url}, headers=ADMIN)
        assert created.status_code == 201, created.text  # a network the operator allowed
        path = f"{BASE}/{created.json()['id']}"
        response = http.patch(path, json={"url": "http://127.0.0.1:9/x"}, headers=ADMIN)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "url"
        assert http.get(path, headers=ADMIN).json()["url"] == receiver.url
    finally:
        receiver.stop()


def test_a_redirect_to_loopback_is_not_followed(http: httpx.Client,
                                                listener: ConnectionLog) -> None:
    receiver = HttpReceiver(host="127.0.0.2").start()
    receiver.mode = "redirect"
    receiver.redirect_to = f"http://127.0.0.1:{listener.port}/internal"
    try:
        created = http.post(BASE, json={"kind": "webhook", "url": receiver.url}, headers=ADMIN)
        assert created.status_code == 201, created.text
        attempt = http.post(f"{BASE}/{created.json()['id']}/test", headers=ADMIN).json()
    finally:
        receiver.stop()
    assert len(receiver.received) == 1  # the first hop was reached ...
    assert attempt["outcome"] == "failed"
    assert attempt["status_code"] == 307
    assert "redirect" in attempt["error"]
    assert listener.connections == 0  # ... and the redirect was not followed


def test_each_delivery_checks_the_destination_again(database_url: str, http: httpx.Client,
                                                    listener: ConnectionLog) -> None:
    # Added while private networks were allowed (another server on the same store) ...
    lenient = bootstrap(make_settings(database_url, INTEGRATIONS_ALLOW_PRIVATE_NETWORKS="true"))
    try:
        added = lenient.integrations.create(
            {"kind": "webhook", "url": f"http://127.0.0.1:{listener.port}/hook"})
    finally:
        lenient.close()
    # ... and sent by this one, which refuses them: nothing connects.
    attempt = http.post(f"{BASE}/{added.id}/test", headers=ADMIN).json()
    assert attempt["outcome"] == "failed"
    assert attempt["error"].startswith("refused: ")
    assert "loopback" in attempt["error"]
    assert listener.connections == 0
