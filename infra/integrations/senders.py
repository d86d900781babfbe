"""Sending one message and telling what happened: an `Attempt`.

HTTP kinds POST with a client that connects only where the network policy allows and
follows no redirect; "delivered" is a 2xx within DELIVERY_TIMEOUT. Webhooks are signed
(Standard Webhooks) over the exact bytes sent, afresh on every attempt: a new timestamp,
the same id. Mail goes over SMTP (aiosmtplib); "delivered" is the server accepting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import ssl
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime

import aiosmtplib
from standardwebhooks.webhooks import Webhook

from infra.integrations.destinations import DestinationRefused, NetworkPolicy
from infra.integrations.http_post import CannotConnect, Poster
from infra.integrations.messages import Message
from infra.integrations.store import Attempt
from infra.mail_settings import SmtpServer

log = logging.getLogger("product_status.integrations")
DELIVERY_TIMEOUT = 10.0
USER_AGENT = "product-status-integrations/1"


class Sender(ABC):
    @abstractmethod
    def send(self, message: Message, attempt: int) -> Attempt: ...

    @abstractmethod
    def close(self) -> None:
        """Frees connections."""


class HoldsSender:
    """A delivery that holds a sender while it is active: closing it (or its follower
    stopping) frees the sender's connections."""

    sender: Sender | None = None

    def close(self) -> None:
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.close()

    def stopped(self) -> None:
        self.close()


def _attempt(message: Message, attempt: int, at: datetime, started: float, *,
             status: int | None = None, error: str | None = None) -> Attempt:
    delivered = error is None
    return Attempt(event_id=message.message_id, position=message.position, type=message.type,
                   attempt=attempt, at=at, outcome="delivered" if delivered else "failed",
                   status_code=status, error=error,
                   duration_ms=round((time.perf_counter() - started) * 1000, 3))


class HttpSender(Sender):
    """POSTs to one URL; with a secret, signs each request as Standard Webhooks says."""

    def __init__(self, url: str, policy: NetworkPolicy, secret: str | None = None,
                 timeout: float = DELIVERY_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.signer = Webhook(secret) if secret else None
        self.poster = Poster(url, policy, timeout)

    def headers(self, message: Message) -> dict[str, str]:
        headers = {"Content-Type": message.content_type, "User-Agent": USER_AGENT}
        if self.signer is not None:
            now = datetime.now(UTC)
            headers["webhook-id"] = message.message_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = self.signer.sign(
                message.message_id, now, message.body.decode())
        return headers

    def send(self, message: Message, attempt: int) -> Attempt:
        at, started = datetime.now(UTC), time.perf_counter()
        try:
            answer = self.poster.post(message.body, self.headers(message))
        except DestinationRefused as error:
            return _attempt(message, attempt, at, started, error=f"refused: {error}")
        except TimeoutError:
            return _attempt(message, attempt, at, started,
                            error=f"no answer within {self.timeout:g} s")
        except ssl.SSLError as error:
            return _attempt(message, attempt, at, started, error=f"TLS: {error}")
        except (OSError, http.client.HTTPException) as error:
            return _attempt(message, attempt, at, started, error=describe(error))
        status = answer.status
        if 200 <= status < 300:
            return _attempt(message, attempt, at, started, status=status)
        if 300 <= status < 400:
            return _attempt(message, attempt, at, started, status=status,
                            error=f"HTTP {status}: redirects are not followed")
        return _attempt(message, attempt, at, started, status=status, error=f"HTTP {status}")

    def close(self) -> None:
        self.poster.close()


def describe(error: BaseException) -> str:
    """An error as attempts list it: what went wrong, never a URL or a credential."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, CannotConnect):
        return f"cannot connect: {text}"
    return f"{type(error).__name__}: {text}"


class MailSender(Sender):
    """Sends mail through one SMTP server, keeping the connection between messages."""

    def __init__(self, server: SmtpServer | None, timeout: float = DELIVERY_TIMEOUT) -> None:
        self.server = server
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.smtp: aiosmtplib.SMTP | None = None

    async def _connected(self, server: SmtpServer) -> aiosmtplib.SMTP:
        if self.smtp is None or not self.smtp.is_connected:
            smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port,
                                   use_tls=server.use_tls, start_tls=server.start_tls,
                                   username=server.username, password=server.password,
                                   timeout=self.timeout)
            await smtp.connect()
            self.smtp = smtp
        return self.smtp

    async def _send(self, server: SmtpServer, message: Message) -> dict[str, str]:
        assert message.mail is not None
        smtp = await self._connected(server)
        refused, _ = await smtp.send_message(message.mail)
        return {address: response.message for address, response in refused.items()}

    def send(self, message: Message, attempt: int) -> Attempt:
        at, started = datetime.now(UTC), time.perf_counter()
        if self.server is None:
            return _attempt(message, attempt, at, started, error="SMTP_URL is not set")
        try:
            refused = self.loop.run_until_complete(
                asyncio.wait_for(self._send(self.server, message), self.timeout))
        except aiosmtplib.SMTPResponseException as error:
            self._drop()
            return _attempt(message, attempt, at, started, status=error.code,
                            error=f"SMTP {error.code}: {error.message}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            self._drop()
            return _attempt(message, attempt, at, started, error=describe(error))
        if refused:  # accepted for the others: delivered, and the refusals are logged
            log.warning("the mail server refused %d of the recipients", len(refused))
        return _attempt(message, attempt, at, started, status=250)

    def _drop(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()

    def close(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None and smtp.is_connected:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait_for(smtp.quit(), 2))
        self._drop()
        self.loop.close()
