"""Each kind of integration in one place: how it is sent to, what it makes of an event,
and what its test message is."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_network

from eventsourcing.persistence import Mapper

from commands.cloudevents import SOURCE, rfc3339
from domain.values import Severity
from infra.event_log import EventLog, StoredCloudEvent
from infra.integrations import messages
from infra.integrations.config import PAGERDUTY_URL, Integration
from infra.integrations.destinations import NetworkPolicy
from infra.integrations.messages import TEST_TYPE, Message
from infra.integrations.occurrences import (
    IncidentStates,
    Occurrence,
    visible_document,
    withdrawn_from_public,
)
from infra.integrations.senders import HttpSender, MailSender, Sender
from infra.integrations.store import IntegrationStore
from infra.mail_settings import smtp_server
from infra.settings import Settings


@dataclass(frozen=True)
class DeliveryContext:
    """What every integration's delivery needs from this installation."""

    settings: Settings
    store: IntegrationStore
    event_log: EventLog
    mapper: Mapper[str]
    policy: NetworkPolicy

    @classmethod
    def build(cls, settings: Settings, store: IntegrationStore, event_log: EventLog,
              mapper: Mapper[str]) -> DeliveryContext:
        policy = NetworkPolicy(
            allow_private=settings.integrations_allow_private_networks,
            allowed=tuple(ip_network(n) for n in settings.integrations_allowed_networks))
        return cls(settings, store, event_log, mapper, policy)


def destination_url(integration: Integration) -> str | None:
    if integration.kind == "pagerduty":
        return integration.url or PAGERDUTY_URL
    return integration.url


def sender_for(integration: Integration, context: DeliveryContext) -> Sender:
    if integration.kind == "email":
        url = context.settings.smtp_url
        return MailSender(smtp_server(url) if url else None)
    url = destination_url(integration)
    assert url is not None, "webhook and slack integrations have a url"
    secret = integration.secret if integration.kind == "webhook" else None
    return HttpSender(url, context.policy, secret)


def message_for(integration: Integration, stored: StoredCloudEvent, states: IncidentStates,
                context: DeliveryContext) -> Message | None:
    """The message this integration gets for a stored event (None: nothing). The incident
    is folded only when the filters or the kind need it: a webhook that takes every event
    as stored sends the stored bytes as they are."""
    filters = integration.filters
    if not filters.takes_type(stored.type):
        return None
    if integration.kind == "webhook" and filters.include_internal \
            and not filters.services and filters.min_severity is Severity.MINOR:
        event_id: str = json.loads(stored.document)["id"]
        return Message(event_id, stored.position, stored.type, stored.document,
                       messages.CLOUDEVENTS_JSON)
    return compose(integration, states.occurrence(stored), context)


def compose(integration: Integration, occurrence: Occurrence, context: DeliveryContext
            ) -> Message | None:
    """The message this integration gets for the event; None: nothing (filtered out, or
    nothing this kind sends for it)."""
    document = visible_document(integration.filters, occurrence)
    if document is None:
        if integration.kind == "pagerduty" \
                and withdrawn_from_public(integration.filters, occurrence):
            assert integration.routing_key is not None
            return messages.pagerduty_withdrawal(occurrence, integration.routing_key)
        return None
    base_url = context.settings.base_url
    if integration.kind == "webhook":
        return messages.webhook(occurrence, document)
    if integration.kind == "slack":
        return messages.slack(occurrence, base_url)
    if integration.kind == "pagerduty":
        assert integration.routing_key is not None
        return messages.pagerduty(occurrence, integration.routing_key, base_url)
    return messages.email(occurrence, sender=context.settings.email_from, to=integration.to,
                          base_url=base_url,
                          include_internal=integration.filters.include_internal)


def test_messages(integration: Integration, context: DeliveryContext) -> list[Message]:
    """What "test" sends: a message of the destination's own kind that says it is a
    test (for PagerDuty, a trigger of an info alert resolved straight after)."""
    key = str(uuid.uuid4())
    text = f"Test message from Product Status: the integration {integration.name!r} works."
    if integration.kind == "webhook":
        document = {"specversion": "1.0", "id": key, "source": SOURCE, "type": TEST_TYPE,
                    "subject": integration.id, "time": rfc3339(datetime.now(UTC)),
                    "datacontenttype": "application/json",
                    "data": {"integration_id": integration.id, "message": text}}
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        return [Message(key, None, TEST_TYPE, body, messages.CLOUDEVENTS_JSON)]
    if integration.kind == "slack":
        body = json.dumps({"text": text}, ensure_ascii=False).encode()
        return [Message(key, None, TEST_TYPE, body)]
    if integration.kind == "pagerduty":
        assert integration.routing_key is not None
        dedup = f"product-status-test-{key}"
        trigger = {"routing_key": integration.routing_key, "event_action": "trigger",
                   "dedup_key": dedup, "payload": {
                       "summary": text, "severity": "info", "source": "product-status"}}
        resolve = {"routing_key": integration.routing_key, "event_action": "resolve",
                   "dedup_key": dedup}
        return [Message(key, None, TEST_TYPE, json.dumps(body).encode())
                for body in (trigger, resolve)]
    mail = messages.test_mail(context.settings.email_from, integration.to, key,
                              integration.name)
    return [Message(key, None, TEST_TYPE, mail=mail)]
