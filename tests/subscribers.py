"""Confirmed subscribers, signed up through the subscribers' store, for the tests and the
benches that send them mail."""

from __future__ import annotations

from collections.abc import Iterable

from infra.bootstrap import Services


def confirm_subscribers(services: Services, addresses: Iterable[str]) -> None:
    """Signs `addresses` up to every service and confirms them, as their links would."""
    store = services.subscribers.store
    for address in addresses:
        confirmation = store.subscribe(address, [])
        assert confirmation is not None
        assert store.confirm(confirmation.token)


def confirmed_subscribers(services: Services, count: int, *, name: str,
                          domain: str) -> list[str]:
    """`count` subscribers to every service, confirmed; their addresses, `name` numbered
    from 0 at `domain` (reader0@example.net, reader1@example.net, ...)."""
    addresses = [f"{name}{n}@{domain}" for n in range(count)]
    confirm_subscribers(services, addresses)
    return addresses
