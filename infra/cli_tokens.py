"""`product-status tokens create|list|revoke`: named tokens kept as digests."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from infra.settings import Settings
from infra.token_settings import ROLES


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= value <= 36_500:
        raise argparse.ArgumentTypeError(f"must be 1-36500 days, got {value}")
    return value


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from infra.bootstrap import bootstrap
    from infra.tokens import TokenError

    services = bootstrap(settings)
    try:
        stored, token = services.authenticator.store.create(
            args.name, args.role, args.expires, reserved=[t.name for t in settings.api_tokens])
    except TokenError as error:
        print(f"product-status tokens create: {error}", file=sys.stderr)
        return 1
    finally:
        services.close()
    expiry = f", expires {_when(stored.expires_at)}" if stored.expires_at else ""
    print(f"token {stored.name!r} ({stored.role}{expiry}); it is shown only this once:",
          file=sys.stderr)
    print(token)
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from infra.bootstrap import bootstrap

    services = bootstrap(settings)
    try:
        stored = services.authenticator.store.list()
    finally:
        services.close()
    rows: list[dict[str, Any]] = [
        {"name": t.name, "role": t.role, "source": "API_TOKENS", "created": None,
         "expires": None, "revoked": None} for t in settings.api_tokens]
    rows += [{"name": t.name, "role": t.role, "source": "table", "created": _when(t.created_at),
              "expires": _when(t.expires_at), "revoked": _when(t.revoked_at)} for t in stored]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    columns = ("name", "role", "source", "created", "expires", "revoked")
    table = [columns, *[tuple(str(row[c] or "-") for c in columns) for row in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
              .rstrip())
    return 0


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    from infra.bootstrap import bootstrap

    if any(t.name == args.name for t in settings.api_tokens):
        print(f"product-status tokens revoke: {args.name!r} comes from API_TOKENS; remove it "
              "there and restart", file=sys.stderr)
        return 1
    services = bootstrap(settings)
    try:
        revoked = services.authenticator.store.revoke(args.name)
    finally:
        services.close()
    if not revoked:
        print(f"product-status tokens revoke: no live token named {args.name!r}",
              file=sys.stderr)
        return 1
    print(f"revoked {args.name!r}; every process refuses it within 5 s", file=sys.stderr)
    return 0


def add_parser(commands: Any) -> None:
    """Adds `tokens` and its actions to the top-level subparsers."""
    tokens = commands.add_parser(
        "tokens", help="manage named bearer tokens",
        description="Named bearer tokens kept in the database as SHA-256 digests. The name is "
        "what the audit log records as the actor of the token's commands.")
    actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="make a token and print it (once)",
        description="Make a token, print it once on stdout, and store only its digest.")
    create.add_argument("name", help="1-64 letters, digits, '.', '_' or '-'")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--expires", type=_days, metavar="DAYS",
                        help="refused after this many days (default: never)")
    create.set_defaults(run=_create)
    listing = actions.add_parser(
        "list", help="list tokens (never the tokens themselves)",
        description="Names, roles, creation, expiry and revocation of every token.")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(run=_list)
    revoke = actions.add_parser(
        "revoke", help="revoke a token by name",
        description="Revoke the live token of that name: every process refuses it within 5 s.")
    revoke.add_argument("name")
    revoke.set_defaults(run=_revoke)
