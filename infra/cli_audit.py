"""`product-status audit verify`: checks the hash chain kept beside the stored events."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from infra.audit_chain import Head
from infra.settings import Settings

_HEAD = re.compile(r"^(\d{1,18}):([0-9a-f]{64})$")


def _head(text: str) -> Head:
    found = _HEAD.match(text.strip().lower())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"expected POSITION:SHA256 as GET /api/v1/audit/head answers it, got {text!r}")
    return Head(int(found.group(1)), found.group(2))


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from infra.audit_chain import verify
    from infra.bootstrap import bootstrap

    services = bootstrap(settings)
    try:
        verdict = verify(services.event_log, args.head)
    finally:
        services.close()
    finding = verdict.finding
    if args.json:
        print(json.dumps({
            "ok": finding is None, "checked": verdict.checked,
            "head": {"position": verdict.head.position, "sha256": verdict.head.sha256},
            "finding": None if finding is None else {"kind": finding.kind,
                                                     "position": finding.position}}))
    elif finding is None:
        print(f"ok: {verdict.checked} events chained; head position {verdict.head.position} "
              f"sha256 {verdict.head.sha256}")
    else:
        print(f"product-status audit verify: {finding.describe()} ({verdict.checked} events "
              "before it are intact)", file=sys.stderr)
    return 0 if finding is None else 1


def add_parser(commands: Any) -> None:
    """Adds `audit verify` to the top-level subparsers."""
    audit = commands.add_parser("audit", help="check the event store's hash chain")
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check every stored event against the hash chain",
        description="Walk the stored events and the hash chain beside them in store order. "
        "Exits 0 when they agree; otherwise 1, naming the first position whose event was "
        "altered, removed or inserted.")
    verify.add_argument("--head", type=_head, metavar="POSITION:SHA256",
                        help="a head recorded earlier (GET /api/v1/audit/head): the chain must "
                        "still have it, so a rewritten chain is found too")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(run=_verify)
