"""Request and response bodies of the subscribers API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.integration_schemas import MailAddress, Names

Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscribeBody(_Body):
    email: MailAddress
    services: Names = Field(default_factory=list, description="empty: every service")


class TokenBody(_Body):
    token: Token


class Accepted(BaseModel):
    """The same answer whether the address was known or not."""

    detail: str


class Done(BaseModel):
    detail: str


class SubscriberOut(BaseModel):
    id: str
    email: str
    services: list[str]
    confirmed: bool
    created_at: datetime
    confirmed_at: datetime | None


class SubscriberList(BaseModel):
    items: list[SubscriberOut]
