"""The network policy on its own: which addresses are public, and how names are judged.
Names are resolved by a table given to the policy, so nothing is looked up."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from infra.integrations.destinations import DestinationRefused, NetworkPolicy, non_public_reason


@pytest.mark.parametrize("text", [
    "127.0.0.1", "127.255.255.254", "::1", "10.0.0.1", "172.31.255.255", "192.168.0.1",
    "169.254.169.254", "fe80::1", "fc00::1", "fd12:3456::1", "0.0.0.0", "::", "224.0.0.1",
    "ff02::1", "100.64.0.1", "198.18.0.1", "240.0.0.1", "255.255.255.255",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:a00:1::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, carrying 127.0.0.1
])
def test_non_public_addresses(text: str) -> None:
    assert non_public_reason(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                                  "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses(text: str) -> None:
    assert non_public_reason(ipaddress.ip_address(text)) is None


def resolving(table: dict[str, list[str]]) -> NetworkPolicy:
    def resolver(host: str, _: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"{host}: name not known")
        return table[host]

    return NetworkPolicy(resolver=resolver)


def test_a_name_is_refused_if_any_of_its_addresses_is_not_public() -> None:
    policy = resolving({"mixed.example": ["93.184.216.34", "10.1.2.3"],
                        "public.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    with pytest.raises(DestinationRefused, match="private"):
        policy.check_url("https://mixed.example/hook")
    policy.check_url("https://public.example/hook")
    assert policy.addresses("public.example", 443) == ["93.184.216.34", "2606:2800:220:1::1"]


def test_a_name_unknown_at_creation_is_checked_when_connecting() -> None:
    policy = resolving({})
    policy.check_url("https://not-yet.example/hook")  # let through ...
    with pytest.raises(OSError):
        policy.addresses("not-yet.example", 443)  # ... and never connected to


def test_allowed_networks_and_allowing_everything() -> None:
    allowed = NetworkPolicy(allowed=(ipaddress.ip_network("10.1.0.0/16"),))
    allowed.check_url("http://10.1.2.3/hook")
    with pytest.raises(DestinationRefused):
        allowed.check_url("http://10.2.0.1/hook")
    NetworkPolicy(allow_private=True).check_url("http://127.0.0.1/hook")
