"""Confirmed subscribers in bulk, signed up through the subscribers' store, for the tests
and the benches that send them mail."""

from __future__ import annotations

from infra.bootstrap import Services


def confirmed_subscribers(services: Services, count: int, *, name: str,
                          domain: str) -> list[str]:
    """`count` subscribers to every service, confirmed; their addresses, `name` numbered
    from 0 at `domain` (reader0@example.net, reader1@example.net, ...)."""
    store = services.subscribers.store
    addresses = [f"{name}{n}@{domain}" for n in range(count)]
    for address in addresses:
        confirmation = store.subscribe(address, [])
        assert confirmation is not None
        assert store.confirm(confirmation.token)
    return addresses
