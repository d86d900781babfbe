"""API_TOKENS: the configured tokens, their names (the actors of their commands) and roles."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from commands.cloudevents import SYSTEM_ACTOR

Role = Literal["reader", "writer", "admin"]
ROLES: tuple[Role, ...] = ("reader", "writer", "admin")
# A token's name: what the audit log records as the actor of its commands.
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_token_name(name: str) -> None:
    """Raises ValueError unless `name` may name a token."""
    if not TOKEN_NAME.match(name):
        raise ValueError(f"a token name is 1-64 letters, digits, '.', '_' or '-' "
                         f"(starting with a letter or digit), got {name!r}")
    if name == SYSTEM_ACTOR:  # the actor of the service's own commands
        raise ValueError(f"the name {SYSTEM_ACTOR!r} is reserved for the service's own actions")


@dataclass(frozen=True)
class ConfiguredToken:
    """A token from API_TOKENS: its name (the actor of its commands), role and secret."""

    name: str
    role: Role
    secret: str = field(repr=False)


def parse_api_tokens(text: str) -> tuple[ConfiguredToken, ...]:
    """`role:token` (named after the role) or `name:role:token` entries, comma-separated."""
    found: list[ConfiguredToken] = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        parts = entry.split(":", 2)
        if len(parts) == 3 and parts[1] in ROLES:
            name, role, secret = parts
        elif len(parts) >= 2 and parts[0] in ROLES:
            name, role, secret = parts[0], parts[0], entry.partition(":")[2]
        else:
            shown = entry.split(":")[0]
            raise ValueError(f"expected role:token or name:role:token entries separated by "
                             f"commas with roles {', '.join(ROLES)}; an entry starting "
                             f"{shown!r} is neither")
        if not secret.strip():
            raise ValueError(f"the token named {name!r} is empty")
        check_token_name(name)
        if any(t.name == name for t in found):
            raise ValueError(f"two tokens are named {name!r}; name them name:role:token")
        if any(t.secret == secret for t in found):
            raise ValueError(f"the token named {name!r} is the same secret as another")
        found.append(ConfiguredToken(name, role, secret))  # type: ignore[arg-type]
    return tuple(found)
