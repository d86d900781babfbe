"""What the API does with subscribers: sign-ups (the confirmation is sent in the
background, so the answer takes as long whether the address is known or not),
confirmation, unsubscribing, the admin list and erasure."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from infra.integrations.messages import Message, confirmation_mail
from infra.integrations.senders import MailSender
from infra.mail_settings import smtp_server
from infra.settings import Settings
from infra.subscribers.store import Confirmation, Subscriber, SubscriberStore

log = logging.getLogger("product_status.subscribers")


class MailNotConfigured(Exception):
    """SMTP_URL is not set: there is no way to send a confirmation."""


class SubscriberAdmin:
    def __init__(self, settings: Settings, store: SubscriberStore) -> None:
        self.settings = settings
        self.store = store
        self._mailer = ThreadPoolExecutor(1, thread_name_prefix="confirmations")

    def subscribe(self, email: str, services: Sequence[str]) -> None:
        if not self.settings.smtp_url:
            raise MailNotConfigured("subscriptions need a mail server (SMTP_URL)")
        confirmation = self.store.subscribe(email, services)
        if confirmation is not None:
            self._mailer.submit(self._send, confirmation, tuple(sorted(set(services))))

    def confirm_link(self, token: str) -> str:
        return f"{self.settings.base_url}/subscribe/confirm?token={quote(token)}"

    def _send(self, confirmation: Confirmation, services: tuple[str, ...]) -> None:
        url = self.settings.smtp_url
        assert url is not None
        mail = confirmation_mail(self.settings.email_from, confirmation.email,
                                 self.confirm_link(confirmation.token), services,
                                 self.settings.base_url)
        sender = MailSender(smtp_server(url))
        try:
            attempt = sender.send(Message("confirmation", None, "confirmation", mail=mail), 1)
        finally:
            sender.close()
        if not attempt.delivered:
            log.warning("a confirmation message was not accepted (%s)",
                        attempt.status_code or "no answer")
            self.store.not_sent(confirmation)

    def confirm(self, token: str) -> bool:
        return self.store.confirm(token)

    def unsubscribe(self, token: str) -> bool:
        return self.store.unsubscribe(token)

    def all(self) -> list[Subscriber]:
        return self.store.all()

    def erase(self, subscriber_id: str) -> bool:
        return self.store.erase(subscriber_id)

    def close(self) -> None:
        self._mailer.shutdown(wait=True)
