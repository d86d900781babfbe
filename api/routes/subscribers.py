"""Public subscribers: anyone signs up (double opt-in), confirms and unsubscribes with
the tokens mailed to them; admins list and erase. Subscribers are configuration, not
incident events: nothing here reaches the event store, the feeds, NATS or integrations."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from api.auth import Admin
from api.problems import Problem
from api.rate_limits import SignUpLimited
from api.subscriber_schemas import (
    Accepted,
    Done,
    SubscribeBody,
    SubscriberList,
    Token,
    TokenBody,
)
from infra.subscribers.admin import MailNotConfigured, SubscriberAdmin

router = APIRouter(prefix="/api/v1/subscribers", tags=["subscribers"])
ACCEPTED = ("If the address can receive mail, a message is on its way: open its link to "
            "confirm the subscription.")
ONE_CLICK = "List-Unsubscribe=One-Click"


async def _admin(request: Request) -> SubscriberAdmin:
    found: SubscriberAdmin = request.app.state.services.subscribers
    return found


Subscribers = Annotated[SubscriberAdmin, Depends(_admin)]


def sign_up(admin: SubscriberAdmin, email: str, services: list[str]) -> None:
    try:
        admin.subscribe(email, services)
    except MailNotConfigured as error:
        raise Problem(503, str(error)) from None


def one_click(body: bytes) -> bool:
    """Whether a form body is RFC 8058's one-click unsubscribe."""
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError:
        return False
    return fields.get("List-Unsubscribe") == ["One-Click"]


@router.post("", status_code=202, response_model=Accepted)
def subscribe(body: SubscribeBody, _: SignUpLimited, admin: Subscribers) -> dict[str, str]:
    """Sends a confirmation message (at most one per address an hour); only confirmed
    subscribers get mail. The answer is the same whether the address is known or not."""
    sign_up(admin, body.email, body.services)
    return {"detail": ACCEPTED}


@router.post("/confirm", response_model=Done)
def confirm(body: TokenBody, admin: Subscribers) -> dict[str, str]:
    """Confirms with the token of a confirmation message (valid for 7 days)."""
    if not admin.confirm(body.token):
        raise Problem(400, "this confirmation link is unknown, used or expired")
    return {"detail": "subscribed"}


@router.post("/unsubscribe", response_model=Done, openapi_extra={"requestBody": {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenBody"}},
                "application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "properties": {"List-Unsubscribe": {
                        "type": "string", "enum": ["One-Click"]}}}}}}})
async def unsubscribe(request: Request, admin: Subscribers,
                      token: Annotated[Token | None, Query()] = None) -> dict[str, str]:
    """`{"token"}` from a message's unsubscribe link, or RFC 8058 one-click: the form body
    `List-Unsubscribe=One-Click` with the token in the query."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        if not one_click(raw) or token is None:
            raise Problem(400, f"a one-click unsubscribe posts {ONE_CLICK} to its link")
        given = token
    else:
        try:
            given = TokenBody.model_validate_json(raw).token
        except ValueError:
            raise Problem(400, 'send {"token": "..."} from the unsubscribe link') from None
    if not await to_thread.run_sync(admin.unsubscribe, given):
        raise Problem(400, "this unsubscribe link is unknown or was used already")
    return {"detail": "unsubscribed"}


@router.get("", response_model=SubscriberList)
def list_subscribers(_: Admin, admin: Subscribers) -> JSONResponse:
    return JSONResponse({"items": [_out(s.describe()) for s in admin.all()]},
                        headers={"Cache-Control": "no-store"})


@router.delete("/{subscriber_id}", status_code=204)
def erase(subscriber_id: str, _: Admin, admin: Subscribers) -> Response:
    """Erases the subscriber: no table keeps the address afterwards."""
    if len(subscriber_id) > 100 or not admin.erase(subscriber_id):
        raise Problem(404, "no such subscriber")
    return Response(status_code=204)


def _out(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, **{k: None if item[k] is None else
                       item[k].isoformat().replace("+00:00", "Z")
                       for k in ("created_at", "confirmed_at")}}
