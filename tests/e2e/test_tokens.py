"""Named tokens: from API_TOKENS, and made, listed and revoked with `product-status tokens`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from infra.database import SQLiteDatabase
from infra.settings import SettingsError, load_settings
from infra.tokens import Authenticator, Principal, TokenError, TokenStore
from tests.clock import Clock
from tests.processes import ServeProcess, run_cli


def test_api_tokens_entries_are_named_after_the_role_or_named() -> None:
    settings = load_settings({"API_TOKENS": "writer:w1, ci:writer:c:i, reader:r:x"})
    assert [(t.name, t.role, t.secret) for t in settings.api_tokens] == [
        ("writer", "writer", "w1"), ("ci", "writer", "c:i"), ("reader", "reader", "r:x")]
    assert "w1" not in repr(settings)


@pytest.mark.parametrize("value", [
    "root:x", "ci:root:x", "writer:", "ci:writer:", "writer:a,writer:b", "a:reader:x,a:writer:y",
    "bad name:writer:x", "system:admin:x", "reader:same,writer:same",
])
def test_bad_api_tokens_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="API_TOKENS"):
        load_settings({"API_TOKENS": value})


def test_serve_refuses_bad_api_tokens(sqlite_url: str) -> None:
    result = run_cli("serve", env={"DATABASE_URL": sqlite_url, "API_TOKENS": "ci:boss:x"})
    assert result.returncode == 2
    assert "API_TOKENS" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_named_token_of_api_tokens_acts_with_its_role(tmp_path: Path, sqlite_url: str) -> None:
    env = {"DATABASE_URL": sqlite_url, "API_TOKENS": "ci:writer:ci-secret,audit:reader:aud"}
    server = ServeProcess(env, tmp_path / "serve.log")
    try:
        body = {"title": "named"}
        ok = httpx.post(f"{server.url}/api/v1/incidents", json=body,
                        headers={"Authorization": "Bearer ci-secret"})
        assert ok.status_code == 201
        refused = httpx.post(f"{server.url}/api/v1/incidents", json=body,
                             headers={"Authorization": "Bearer aud"})
        assert refused.status_code == 403
    finally:
        server.stop()


def _write(url: str, token: str) -> int:
    return httpx.post(f"{url}/api/v1/incidents", json={"title": "by a made token"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def test_a_made_token_works_everywhere_until_revoked_within_5_s(
    tmp_path: Path, database_url: str,
) -> None:
    env = {"DATABASE_URL": database_url, "API_TOKENS": "admin:root-secret"}
    made = run_cli("tokens", "create", "deploy-bot", "--role", "writer", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) >= 32
    assert "shown only this once" in made.stderr
    first = ServeProcess(env, tmp_path / "first.log", "--no-relay")
    second = ServeProcess(env, tmp_path / "second.log", "--no-relay", "--no-projectors")
    try:
        assert _write(first.url, token) == 201
        assert _write(second.url, token) == 201
        listed = run_cli("tokens", "list", "--json", env=env)
        assert listed.returncode == 0
        assert token not in listed.stdout
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        mine = [r for r in rows if r["name"] == "deploy-bot"]
        assert mine == [{"name": "deploy-bot", "role": "writer", "source": "table",
                         "created": mine[0]["created"], "expires": None, "revoked": None}]
        assert any(r["name"] == "admin" and r["source"] == "API_TOKENS" for r in rows)
        assert token not in run_cli("tokens", "list", env=env).stdout

        revoked = run_cli("tokens", "revoke", "deploy-bot", env=env)
        assert revoked.returncode == 0, revoked.stderr
        revoked_at = time.monotonic()
        refused_after: dict[str, float] = {}
        while len(refused_after) < 2 and time.monotonic() - revoked_at < 10:
            for server in (first, second):
                if server.url not in refused_after:
                    answer = httpx.get(f"{server.url}/api/v1/events",
                                       headers={"Authorization": f"Bearer {token}"})
                    if answer.status_code == 401:
                        refused_after[server.url] = time.monotonic() - revoked_at
            time.sleep(0.05)
        # The contract's bound: refused by every process within 5 s of the revocation.
        assert sorted(refused_after) == sorted([first.url, second.url])
        assert max(refused_after.values()) < 5
        assert _write(first.url, token) == 401
        assert _write(second.url, token) == 401
        after = [json.loads(x) for x in
                 run_cli("tokens", "list", "--json", env=env).stdout.splitlines()]
        assert [r["revoked"] is not None for r in after if r["name"] == "deploy-bot"] == [True]
    finally:
        first.stop()
        second.stop()


def test_tokens_commands_refuse_what_they_cannot_do(sqlite_url: str) -> None:
    env = {"DATABASE_URL": sqlite_url, "API_TOKENS": "ops:admin:x"}
    assert run_cli("tokens", "create", "ci", "--role", "writer", env=env).returncode == 0
    twice = run_cli("tokens", "create", "ci", "--role", "reader", env=env)
    assert twice.returncode == 1
    assert "revoke it first" in twice.stderr
    clash = run_cli("tokens", "create", "ops", "--role", "reader", env=env)
    assert clash.returncode == 1
    assert "API_TOKENS" in clash.stderr
    for args in (["--role", "boss"], ["--role", "writer", "--expires", "0"],
                 ["--role", "writer", "--expires", "soon"]):
        bad = run_cli("tokens", "create", "other", *args, env=env)
        assert bad.returncode == 2, args
        assert "Traceback" not in bad.stderr
    for name in ("system", "has space"):
        named = run_cli("tokens", "create", name, "--role", "reader", env=env)
        assert named.returncode == 1
        assert "Traceback" not in named.stderr
    assert run_cli("tokens", "revoke", "nobody", env=env).returncode == 1
    assert "API_TOKENS" in run_cli("tokens", "revoke", "ops", env=env).stderr
    assert run_cli("tokens", "revoke", "ci", env=env).returncode == 0
    again = run_cli("tokens", "create", "ci", "--role", "reader", env=env)
    assert again.returncode == 0  # a revoked name may be given to a new token


def test_a_token_expires_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "tokens.db")
    clock = Clock(datetime(2030, 1, 1, tzinfo=UTC))
    store = TokenStore(database, clock)
    store.create_table()
    stored, token = store.create("nightly", "reader", expires_days=2)
    assert stored.expires_at == clock.now + timedelta(days=2)
    authenticator = Authenticator((), store, cache_seconds=60)
    assert authenticator.authenticate(token) == Principal("nightly", "reader")
    clock.now += timedelta(days=2) - timedelta(seconds=1)
    assert authenticator.authenticate(token) == Principal("nightly", "reader")
    clock.now += timedelta(seconds=1)
    assert authenticator.authenticate(token) is None  # expiry needs no cache refresh
    assert authenticator.authenticate("pst_" + "x" * 43) is None
    with database.transaction() as cursor:
        rows = cursor.execute("SELECT * FROM api_tokens").fetchall()
    assert token not in repr(rows)
    with pytest.raises(TokenError, match="role"):
        store.create("x", "boss")
    database.close()
