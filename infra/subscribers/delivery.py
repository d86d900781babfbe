"""Subscribers' mail: one follower of the event store (its own position and lease, like
an integration's) that fans each public change out to the confirmed subscribers it
concerns, one mail each, as the email integration writes it without internal content.
A public change is one after which the public sees the incident (public, not deleted):
an event that makes an incident private or deletes it sends no mail, as the mail would
be made of what the event wrote, which the public never saw.

Every accepted mail leaves a receipt (subscriber, event), recorded as the integrations
record their attempts (at least every RECORD_EVERY seconds, and always before a failure
is raised), so a batch tried again skips whoever has it already: each subscriber gets
each change once, in store order, whatever the mail server does. Only a crash of the
process itself can send the last half second's mail again (same Message-ID). A failure stops the
batch; the follower tries it again after a back-off. The follower runs in a thread of its
own: commands and the integrations' followers never wait for it.

Addresses never reach a log line: failures are logged by subscriber id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from infra.event_log import StoredCloudEvent
from infra.follower import Delivering, Unavailable
from infra.integrations import messages
from infra.integrations.config import Filters
from infra.integrations.delivery import RECORD_EVERY
from infra.integrations.kinds import DeliveryContext
from infra.integrations.messages import Message
from infra.integrations.occurrences import IncidentStates, Occurrence, visible_document
from infra.integrations.senders import HoldsSender, MailSender, Sender
from infra.mail_settings import smtp_server
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


class SubscriberDelivery(HoldsSender, Delivering):
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

    def deliver(self, events: Sequence[StoredCloudEvent]) -> None:
        assert self.sender is not None, "open() first"
        # Events before this batch are done (the follower saved its position past them).
        self.store.forget_receipts(events[0].position)
        for stored in events:
            occurrence = self.states.occurrence(stored)  # every event: the fold goes on
            # Public after the event, or no mail (not even of a withdrawal).
            if visible_document(PUBLIC, occurrence) is None:
                continue
            # Read again for each event: whoever unsubscribed or was erased meanwhile
            # gets no more mail. (Whoever confirms meanwhile is owed none of this batch:
            # the events were read before, and confirming takes the store's head then.)
            subscribers = self.store.confirmed()
            if not subscribers:
                continue
            affected = set(occurrence.after.affected_services)
            if occurrence.before is not None:
                affected |= set(occurrence.before.affected_services)
            concerned = [s for s in subscribers if (s.confirmed_position or 0) < stored.position
                         and s.takes(sorted(affected))]
            if concerned:
                self._fan_out(occurrence, concerned)

    def _fan_out(self, occurrence: Occurrence, concerned: list[Subscriber]) -> None:
        """Sends the event's mail to whoever of `concerned` has no receipt for it yet.
        Receipts are recorded as the integrations record attempts: at least every
        RECORD_EVERY seconds, at the end, and before a failure is raised."""
        assert self.sender is not None
        done = self.store.receipted(occurrence.event_id)
        accepted: list[str] = []
        recorded = time.monotonic()
        try:
            for subscriber in concerned:
                if subscriber.id in done:
                    continue
                attempt = self.sender.send(mail_for(occurrence, subscriber, self.context), 1)
                if not attempt.delivered:
                    # The error names no recipient: SMTP codes and connection errors only.
                    log.warning("subscriber %s: mail not accepted (%s)", subscriber.id,
                                attempt.status_code or "no answer")
                    raise SubscriberMailFailed(
                        f"mail to subscriber {subscriber.id} not accepted")
                accepted.append(subscriber.id)
                if time.monotonic() - recorded > RECORD_EVERY:
                    self.store.receipts(accepted, occurrence.event_id, occurrence.position)
                    accepted, recorded = [], time.monotonic()
        finally:
            if accepted:
                self.store.receipts(accepted, occurrence.event_id, occurrence.position)
