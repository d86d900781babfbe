"""Mail settings: SMTP_URL parsed into where mail goes, and mail addresses as the service
accepts them (EMAIL_FROM, integrations' recipients)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

# A mail address as integrations accept it: local@domain, no spaces or controls.
_MAILBOX = re.compile(r"^[^@\s<>()\[\],;:\"\\]{1,64}@[A-Za-z0-9.-]{1,253}$")


def is_mail_address(text: str) -> bool:
    return _MAILBOX.match(text) is not None and ".." not in text


@dataclass(frozen=True)
class SmtpServer:
    """Where mail goes, from SMTP_URL: smtp://[user:password@]host[:port][?starttls=true],
    or smtps:// for TLS from the first byte."""

    host: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None = None


def smtp_server(url: str) -> SmtpServer:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must be an smtp:// or smtps:// URL")
    if not parts.hostname:
        raise ValueError("must name a host, e.g. smtp://mail.example.com:587?starttls=true")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    query = parse_qs(parts.query)
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}; only starttls is known")
    flag = (query.get("starttls") or ["false"])[-1].lower()
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("starttls must be true or false")
    start_tls = flag in ("true", "1", "yes")
    use_tls = parts.scheme == "smtps"
    if use_tls and start_tls:
        raise ValueError("smtps:// is TLS already; starttls=true is for smtp://")
    return SmtpServer(
        host=parts.hostname, port=port or (465 if use_tls else 587 if start_tls else 25),
        use_tls=use_tls, start_tls=start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def check_from_address(value: str) -> None:
    """Raises ValueError unless `value` may be EMAIL_FROM (`Name <address>` or an
    address, on one line)."""
    _, address = parseaddr(value)
    if not _MAILBOX.match(address) or any(c in value for c in "\r\n"):
        raise ValueError("must be a mail address, e.g. Status <status@example.com>")
