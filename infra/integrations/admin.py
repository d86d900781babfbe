"""What operators do with integrations (the API's routes are a thin layer over this):
add, change, pause and resume, remove, rotate a webhook's secret, replay from a
position, send a test, and read how delivery stands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from commands.cloudevents import rfc3339
from infra.integrations.config import (
    KIND_FIELDS,
    PAGERDUTY_URL,
    REQUIRED_FIELDS,
    Integration,
    Kind,
    from_settings,
    new_integration_id,
    new_secret,
)
from infra.integrations.destinations import DestinationRefused
from infra.integrations.kinds import DeliveryContext, sender_for, test_messages
from infra.integrations.store import Attempt

_DESTINATION_FIELDS = ("url", "to", "routing_key")


class InvalidIntegration(Exception):
    """Settings that cannot make an integration; `errors` names each field."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = errors


class IntegrationNotFound(Exception):
    def __init__(self, integration_id: str) -> None:
        super().__init__(f"no integration with id {integration_id!r}")


class NoSecret(Exception):
    """Only webhooks sign what they send."""


class ReplayRefused(Exception):
    """A replay from a position the store has not reached."""


def _moment(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


class IntegrationAdmin:
    def __init__(self, context: DeliveryContext,
                 changed: Callable[[], None] = lambda: None) -> None:
        """`changed` is called after every change (to wake this process's deliverers;
        those of other processes notice the new revision by themselves)."""
        self.context = context
        self.store = context.store
        self.changed = changed

    def _check(self, kind: Kind, given: dict[str, Any], merged: Integration) -> None:
        errors: list[tuple[str, str]] = []
        for name in _DESTINATION_FIELDS:
            if given.get(name) is not None and name not in KIND_FIELDS[kind]:
                errors.append((name, f"not a setting of a {kind} integration"))
        for name in REQUIRED_FIELDS[kind]:
            if not getattr(merged, name):
                errors.append((name, f"required for a {kind} integration"))
        url = given.get("url")
        if url is not None and name_ok(errors, "url"):
            try:
                self.context.policy.check_url(url)
            except DestinationRefused as refused:
                errors.append(("url", str(refused)))
        if errors:
            raise InvalidIntegration(errors)

    def create(self, values: dict[str, Any]) -> Integration:
        """Adds an integration; a webhook gets a new signing secret."""
        kind: Kind = values["kind"]
        now = datetime.now(UTC)
        settings = {k: v for k, v in values.items() if k not in ("kind", "name", "enabled")}
        if kind == "pagerduty" and settings.get("url") is None:
            settings["url"] = PAGERDUTY_URL
        integration = from_settings(
            new_integration_id(), kind, values.get("name") or kind,
            values.get("enabled", True), {}, created_at=now, updated_at=now,
            secret=new_secret() if kind == "webhook" else None,
        ).with_settings({k: v for k, v in settings.items() if v is not None})
        self._check(kind, values, integration)
        self.store.add(integration)
        self.changed()
        return integration

    def get(self, integration_id: str) -> Integration:
        found = self.store.get(integration_id)
        if found is None:
            raise IntegrationNotFound(integration_id)
        return found

    def describe(self, integration: Integration) -> dict[str, Any]:
        """The integration as the API shows it, with how its delivery stands."""
        shown = integration.public_view()
        shown["created_at"] = rfc3339(integration.created_at)
        shown["updated_at"] = rfc3339(integration.updated_at)
        position = self.store.position(integration.id)
        state = integration.state
        shown.update(
            position=position, lag=self.store.lag(integration, position),
            last_delivered_at=_moment(state.last_delivered_at),
            failing_since=_moment(state.failing_since),
            next_attempt_at=_moment(state.next_attempt_at),
            disabled_reason=state.disabled_reason,
        )
        return shown

    def all(self) -> list[Integration]:
        return self.store.all()

    def change(self, integration_id: str, values: dict[str, Any]) -> Integration:
        """Changes settings (only those given). `enabled: true` resumes delivery where
        it stopped, now, whatever back-off it was in."""
        integration = self.get(integration_id)
        kind = values.pop("kind", None)
        if kind is not None and kind != integration.kind:
            raise InvalidIntegration([("kind", "the kind of an integration cannot be "
                                               "changed; add another integration")])
        changed = integration.with_settings(
            {k: v for k, v in values.items() if k not in ("name", "enabled")})
        changed = replace(changed, name=values.get("name", integration.name),
                          enabled=values.get("enabled", integration.enabled),
                          updated_at=datetime.now(UTC))
        self._check(integration.kind, values, changed)
        resume = values.get("enabled") is True and (
            not integration.enabled or integration.state.failing_since is not None)
        saved = self.store.save(changed, resume=resume)
        self.changed()
        return saved

    def remove(self, integration_id: str) -> None:
        if not self.store.remove(integration_id):
            raise IntegrationNotFound(integration_id)
        self.changed()

    def rotate_secret(self, integration_id: str) -> Integration:
        integration = self.get(integration_id)
        if integration.kind != "webhook":
            raise NoSecret(f"a {integration.kind} integration has no signing secret")
        saved = self.store.save(replace(integration, secret=new_secret(),
                                        updated_at=datetime.now(UTC)))
        self.changed()
        return saved

    def replay(self, integration_id: str, after: int) -> int:
        """Delivers again everything matching after position `after`; returns the
        store's head."""
        self.get(integration_id)
        head = self.store.head()
        if after > head:
            raise ReplayRefused(f"after ({after}) is beyond the store's last position ({head})")
        if not self.store.replay(integration_id, after):
            raise IntegrationNotFound(integration_id)
        self.changed()
        return head

    def test(self, integration_id: str) -> Attempt:
        """Sends a test message now and records the attempt."""
        integration = self.get(integration_id)
        sender = sender_for(integration, self.context)
        try:
            attempt: Attempt | None = None
            for message in test_messages(integration, self.context):
                attempt = sender.send(message, 1)
                if not attempt.delivered:
                    break
        finally:
            sender.close()
        assert attempt is not None
        self.store.record(integration.id, [attempt])
        return attempt

    def deliveries(self, integration_id: str, before: int | None, limit: int
                   ) -> tuple[list[Attempt], int | None]:
        self.get(integration_id)
        return self.store.deliveries(integration_id, before, limit)


def name_ok(errors: list[tuple[str, str]], name: str) -> bool:
    return all(field != name for field, _ in errors)
