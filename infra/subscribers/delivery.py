"""Subscribers' mail: one follower of the event store (its own position and lease, like
an integration's) that fans each public change out to the confirmed subscribers it
concerns, one mail each, as the email integration writes it without internal content.

Every accepted mail leaves a receipt (subscriber, event) before the next is sent, so a
batch tried again (the mail server went away, the process restarted) skips whoever has
it already: each subscriber gets each change once, in store order. A failure stops the
batch; the follower tries it again after a back-off. The follower runs in a thread of its
own: commands and the integrations' followers never wait for it.

Addresses never reach a log line: failures are logged by subscriber id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from infra.event_log import StoredCloudEvent
from infra.follower import Delivering, Unavailable
from infra.integrations import messages
from infra.integrations.config import Filters
from infra.integrations.kinds import DeliveryContext
from infra.integrations.messages import Message
from infra.integrations.occurrences import IncidentStates, Occurrence, visible_document
from infra.integrations.senders import MailSender, Sender
from infra.settings import smtp_server
from infra.subscribers.store import FOLLOWER, Subscriber, SubscriberStore, unsubscribe_token

log = logging.getLogger("product_status.subscribers")
PUBLIC = Filters()  # every event type, every service, nothing internal


class SubscriberMailFailed(Unavailable):
    """The mail server did not accept a subscriber's mail; the batch is tried again."""


def unsubscribe_link(base_url: str, subscriber: Subscriber) -> str:
    return f"{base_url}/subscribe/unsubscribe?token={unsubscribe_token(subscriber.mail_key)}"


def mail_for(occurrence: Occurrence, subscriber: Subscriber, context: DeliveryContext
             ) -> Message:
    settings = context.settings
    return messages.email(occurrence, sender=settings.email_from, to=(subscriber.email,),
                          base_url=settings.base_url, include_internal=False,
                          unsubscribe=unsubscribe_link(settings.base_url, subscriber))


class SubscriberDelivery(Delivering):
    name = FOLLOWER
    batch_size = 100

    def __init__(self, store: SubscriberStore, context: DeliveryContext) -> None:
        self.store = store
        self.context = context
        self.states = IncidentStates(context.event_log, context.mapper)
        self.sender: Sender | None = None

    def open(self) -> None:
        url = self.context.settings.smtp_url
        self.sender = MailSender(smtp_server(url) if url else None)

    def close(self) -> None:
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.close()

    def stopped(self) -> None:
        self.close()

    def deliver(self, events: Sequence[StoredCloudEvent]) -> None:
        assert self.sender is not None, "open() first"
        subscribers = self.store.confirmed()
        for stored in events:
            occurrence = self.states.occurrence(stored)  # every event: the fold goes on
            if not subscribers or visible_document(PUBLIC, occurrence) is None:
                continue
            affected = set(occurrence.after.affected_services)
            if occurrence.before is not None:
                affected |= set(occurrence.before.affected_services)
            concerned = [s for s in subscribers if (s.confirmed_position or 0) < stored.position
                         and s.takes(sorted(affected))]
            if concerned:
                self._fan_out(occurrence, concerned)

    def _fan_out(self, occurrence: Occurrence, concerned: list[Subscriber]) -> None:
        assert self.sender is not None
        done = self.store.receipted(occurrence.event_id)
        for subscriber in concerned:
            if subscriber.id in done:
                continue
            attempt = self.sender.send(mail_for(occurrence, subscriber, self.context), 1)
            if not attempt.delivered:
                # The error names no recipient: SMTP codes and connection errors only.
                log.warning("subscriber %s: mail not accepted (%s)", subscriber.id,
                            attempt.status_code or "no answer")
                raise SubscriberMailFailed(f"mail to subscriber {subscriber.id} not accepted")
            self.store.receipt(subscriber.id, occurrence.event_id, occurrence.position)
