"""Real receivers on loopback for integration tests: an HTTP server that verifies Standard
Webhooks signatures with the `standardwebhooks` library (and can be made to refuse
connections, answer 500, hang or redirect), and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None  # None: no secret to verify with
    answered: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed sender: expected
            super().handle_error(request, client_address)


class HttpReceiver:
    """An HTTP receiver on 127.0.0.1. `mode`: "ok" (204), "fail" (500), "hang" (answer
    nothing until released), "redirect" (307 to `redirect_to`). `stop()` closes the port
    (connections are refused) and `start()` opens the same port again."""

    def __init__(self, host: str = "127.0.0.1", secret: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.tls = tls
        self.secret = secret
        self.mode = "ok"
        self.redirect_to = ""
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None
        self.port = 0
        self.on_receive: Callable[[Received], None] | None = None
        self.delay = 0.0  # seconds to take before answering (a receiver that does work)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/hook"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender went away mid-request (was killed)
                    self.close_connection = True
                    return
                receiver.handle(self, body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = _Server((self.host, self.port), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.released.clear()
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        self.released.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        mode = self.mode
        if mode == "hang":
            self.released.wait(60)
            request.close_connection = True
            return
        if self.delay:
            time.sleep(self.delay)
        verified = None
        if self.secret is not None:
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        status = {"ok": 204, "fail": 500, "redirect": 307}[mode]
        item = Received(request.path, dict(request.headers.items()), body, verified, status,
                        time.monotonic())
        with self.lock:
            self.received.append(item)
        if self.on_receive is not None:
            self.on_receive(item)
        request.send_response(status)
        if mode == "redirect":
            request.send_header("Location", self.redirect_to)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def ids(self) -> list[str]:
        """The webhook-id of each message answered 2xx, in arrival order."""
        return [r.headers["webhook-id"] for r in self.delivered()]

    def delivered(self) -> list[Received]:
        """What was received and answered 2xx."""
        with self.lock:
            return [r for r in self.received if 200 <= r.answered < 300]

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.delivered()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.delivered())} of {count} within {timeout} s")


class ConnectionLog:
    """A listening socket that only records connection attempts (and answers nothing)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class _MailHandler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802
                          envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.receiver.lock:
            self.receiver.messages.append((list(envelope.rcpt_tos), message))
        if self.receiver.on_message is not None:  # before the sender hears 250
            self.receiver.on_message(list(envelope.rcpt_tos), message)
        return "250 OK"


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message; it can be
    stopped and started again on its port."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.on_message: Callable[[list[str], EmailMessage], None] | None = None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpReceiver:
        """Listens (again, after `stop()`: on the same port)."""
        self.controller = Controller(_MailHandler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        """Closes the port: connections are refused until `start()`."""
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[tuple[list[str], EmailMessage]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.messages)} of {count} mails in {timeout} s")
