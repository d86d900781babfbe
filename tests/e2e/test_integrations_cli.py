"""Integration settings are checked at start-up, and `deliver` is a command of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.mail_settings import smtp_server
from infra.settings import SettingsError, load_settings

CLI = str(Path(sys.executable).parent / "product-status")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize(("name", "value"), [
    ("DELIVERY_RETRY_INITIAL_SECONDS", "0"), ("DELIVERY_RETRY_INITIAL_SECONDS", "soon"),
    ("DELIVERY_RETRY_INITIAL_SECONDS", "nan"), ("DELIVERY_RETRY_MAX_SECONDS", "-1"),
    ("DELIVERY_DISABLE_AFTER_HOURS", "0"), ("DELIVERY_DISABLE_AFTER_HOURS", "inf"),
    ("INTEGRATIONS_ALLOW_PRIVATE_NETWORKS", "sometimes"),
    ("INTEGRATIONS_ALLOWED_NETWORKS", "10.0.0.0/33"), ("SMTP_URL", "http://mail"),
    ("SMTP_URL", "smtp://"), ("SMTP_URL", "smtp://mail:0x19"),
    ("SMTP_URL", "smtp://mail?starttls=maybe"), ("SMTP_URL", "smtps://mail?starttls=true"),
    ("EMAIL_FROM", "not an address"), ("EMAIL_FROM", "a@b.example\r\nBcc: x@y.example"),
])
def test_a_bad_integration_setting_stops_start_up_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_the_retry_maximum_may_not_be_below_the_first_wait() -> None:
    with pytest.raises(SettingsError, match="DELIVERY_RETRY_MAX_SECONDS"):
        load_settings({"DELIVERY_RETRY_INITIAL_SECONDS": "10", "DELIVERY_RETRY_MAX_SECONDS": "5"})


def test_settings_take_decimals_and_smtp_urls() -> None:
    settings = load_settings({"DELIVERY_RETRY_INITIAL_SECONDS": "0.05",
                              "DELIVERY_RETRY_MAX_SECONDS": "0.5",
                              "DELIVERY_DISABLE_AFTER_HOURS": "0.01",
                              "SMTP_URL": "smtp://user:p%40ss@mail.example.com?starttls=true"})
    assert settings.delivery_retry_initial_seconds == 0.05
    assert settings.delivery_disable_after_hours == 0.01
    assert "p%40ss" not in repr(settings)
    server = smtp_server(settings.smtp_url or "")
    assert (server.host, server.port, server.start_tls, server.use_tls) == (
        "mail.example.com", 587, True, False)
    assert (server.username, server.password) == ("user", "p@ss")
    assert smtp_server("smtps://mail.example.com").port == 465
    assert smtp_server("smtp://127.0.0.1:2525").port == 2525


def test_a_bad_setting_stops_deliver_too() -> None:
    result = run("deliver", env={"DELIVERY_RETRY_MAX_SECONDS": "never"})
    assert result.returncode == 2
    assert "DELIVERY_RETRY_MAX_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["deliver"], ["serve"]])
def test_help_names_delivery(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0
    assert "integration" in result.stdout


@pytest.mark.parametrize("flags", [[], ["--no-deliver"]])
def test_serve_delivers_unless_told_not_to(tmp_path: Path, flags: list[str]) -> None:
    import httpx

    from tests.receivers import HttpReceiver
    from tests.servers import free_port

    receiver = HttpReceiver().start()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
           "API_TOKENS": "admin:a,writer:w", "INTEGRATIONS_ALLOW_PRIVATE_NETWORKS": "true"}
    with (tmp_path / "serve.log").open("w") as out:
        server = subprocess.Popen([CLI, "serve", *flags], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        added = httpx.post(f"{base}/api/v1/integrations", headers={"Authorization": "Bearer a"},
                           json={"kind": "slack", "url": receiver.url})
        assert added.status_code == 201, added.text
        declared = httpx.post(f"{base}/api/v1/incidents", headers={"Authorization": "Bearer w"},
                              json={"title": "Delivered by serve?"})
        assert declared.status_code == 201
        if flags:
            time.sleep(3)
            assert receiver.delivered() == []
        else:
            [got] = receiver.wait_for(1, timeout=30)
            assert got.json()["text"].startswith("Delivered by serve?")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        receiver.stop()
