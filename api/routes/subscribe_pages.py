"""The subscribers' pages: the status page's form posts here, and the links of the mail
land here. Plain HTML forms (no script): the confirmation link opens a page whose button
confirms (a link alone must not, since mail scanners open links), and the unsubscribe
page's button is the same RFC 8058 one-click POST a mail client sends."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.pages.templating import render
from api.rate_limits import SignUpLimited
from api.routes.subscribers import ACCEPTED, ONE_CLICK, Subscribers, one_click, sign_up
from api.subscriber_schemas import SubscribeBody, Token

router = APIRouter(include_in_schema=False)
MAX_FORM = 20_000


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    try:
        return parse_qs(body[:MAX_FORM].decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}


def _page(heading: str, message: str, *, status_code: int = 200, failed: bool = False,
          form: dict[str, Any] | None = None, **context: Any) -> HTMLResponse:
    context.setdefault("subscribe", False)
    return render("subscription.html", status_code=status_code, heading=heading,
                  message=message, failed=failed, form=form, **context)


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe_form(request: Request, _: SignUpLimited,
                         admin: Subscribers) -> HTMLResponse:
    fields = await _form(request)
    email = (fields.get("email") or [""])[0]
    chosen = fields.get("services", [])
    try:
        body = SubscribeBody(email=email, services=chosen)
    except ValidationError:
        return _page("Subscribe", "That does not look like an email address.",
                     status_code=422, failed=True, subscribe=True, email=email[:254],
                     error="Enter an email address such as name@example.com.",
                     services=chosen[:50], chosen=chosen[:50])
    await to_thread.run_sync(sign_up, admin, body.email, body.services)
    return _page("Check your inbox", ACCEPTED, status_code=202)


@router.get("/subscribe/confirm", response_class=HTMLResponse)
def confirm_page(token: Annotated[Token, Query()]) -> HTMLResponse:
    return _page("Confirm your subscription",
                 "Press the button to start receiving incident updates by email.",
                 form={"action": "/subscribe/confirm", "fields": {"token": token},
                       "button": "Confirm subscription", "danger": False})


@router.post("/subscribe/confirm", response_class=HTMLResponse)
async def confirm_form(request: Request, admin: Subscribers) -> HTMLResponse:
    token = ((await _form(request)).get("token") or [""])[0][:200]
    if not token or not await to_thread.run_sync(admin.confirm, token):
        return _page("Link not valid", "This confirmation link is unknown, used or expired "
                     "(links work for 7 days). Subscribe again to get a new one.",
                     status_code=400, failed=True)
    return _page("Subscribed", "You will receive an email for every public change of the "
                 "incidents you chose. Every message has a link to unsubscribe.")


@router.get("/subscribe/unsubscribe", response_class=HTMLResponse)
def unsubscribe_page(token: Annotated[Token, Query()]) -> HTMLResponse:
    key, value = ONE_CLICK.split("=")
    return _page("Unsubscribe", "Press the button to stop receiving incident updates.",
                 form={"action": f"/subscribe/unsubscribe?token={quote(token)}",
                       "fields": {key: value}, "button": "Unsubscribe", "danger": True})


@router.post("/subscribe/unsubscribe", response_class=HTMLResponse)
async def unsubscribe_one_click(request: Request, token: Annotated[Token, Query()],
                                admin: Subscribers) -> HTMLResponse:
    """RFC 8058: the form body `List-Unsubscribe=One-Click` unsubscribes at once."""
    if not one_click(await request.body()):
        return _page("Unsubscribe", f"An unsubscribe request posts {ONE_CLICK}.",
                     status_code=400, failed=True)
    if not await to_thread.run_sync(admin.unsubscribe, token):
        return _page("Link not valid", "This unsubscribe link is unknown or was used already.",
                     status_code=400, failed=True)
    return _page("Unsubscribed", "You will receive no more incident updates. Your address "
                 "has been removed.")
