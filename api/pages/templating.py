"""The template environment (built on first use, templates loaded from the installed `api`
package, not the working directory), its filters, and the HTML responses with the pages'
security headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from api import markdown
from api.answer_cache import Rendered
from api.fragments import Fragments
from api.pages import views
from api.pages.reports import duration, form_date, ratio
from projections.service_queries import ServiceBar

RSS_FEED = "/api/v1/incidents/rss/feed"
ATOM_FEED = "/api/v1/incidents/atom/feed"
# No inline script or style anywhere: markup that slipped past escaping still could not run.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
# Every page's headers; the public pages are cached (api/answer_cache.py), the others not.
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
HTML = "text/html; charset=utf-8"


def label(value: str) -> str:
    """`post_incident` -> `Post incident`."""
    return value.replace("_", " ").capitalize()


def bdi(text: str) -> Markup:
    """User text, escaped and bidi-isolated: a right-to-left override in a name stops at its
    end instead of reversing the text that follows."""
    return Markup(f"<bdi>{escape(text)}</bdi>")  # noqa: S704 - escaped


def bdi_list(names: Iterable[str]) -> Markup:
    """`a, b`, each name isolated; empty for no names."""
    return Markup(", ").join(bdi(name) for name in names)


def markdown_html(text: str) -> Markup:
    """Markdown, rendered and sanitised (`api.markdown`): safe to insert as it is."""
    return Markup(markdown.render(text))  # noqa: S704 - sanitised by nh3


def utc_minute(iso: str) -> str | None:
    """An RFC 3339 time as `YYYY-MM-DD HH:MM` in UTC; None if it is not one."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None
    return f"{moment:%Y-%m-%d %H:%M}"


def form_moment(moment: datetime | None) -> str:
    """A time as a `datetime-local` input shows it (the dashboard's times are UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M") if moment else ""


def form_value(incident: Mapping[str, Any] | None, key: str, default: str = "") -> str:
    """A detail as the incident form shows it: lists comma-separated."""
    if incident is None:
        return default
    found = incident[key]
    return ", ".join(found) if isinstance(found, list) else str(found)


_FRAGMENTS: Fragments[Markup] = Fragments()


def day_cells(service: ServiceBar, number: int, tip_incidents: int) -> Markup:
    """The day bars of `service`, the `number`th on the status page, kept by its days' key."""

    def draw() -> Markup:
        return Markup(environment().get_template("day_cells.html").render(  # noqa: S704
            service=service, s=number, tip_incidents=tip_incidents))  # escaped by it

    if service.key is None:
        return draw()
    return _FRAGMENTS.get((service.key, number, tip_incidents), draw)


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("api", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(label=label, bdi=bdi, bdi_list=bdi_list, utc_minute=utc_minute,
                       markdown=markdown_html,
                       form_moment=form_moment, form_value=form_value,
                       next_statuses=views.next_statuses, day_words=views.day_words,
                       bar_state=views.bar_state, duration=duration, ratio=ratio,
                       form_date=form_date)
    env.globals.update(RSS_FEED=RSS_FEED, ATOM_FEED=ATOM_FEED, choices=views.CHOICES,
                       day_cells=day_cells)
    return env


def render(template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page or a dashboard fragment, with the pages' headers."""
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def public_page(template: str, *, status_code: int = 200, **context: Any) -> Rendered:
    """A public page, to be kept and shared (api/answer_cache.py)."""
    html = environment().get_template(template).render(**context)
    return Rendered(html.encode(), HTML, status_code=status_code,
                    headers=tuple(SECURITY_HEADERS.items()))


def not_found(what: str, *, dashboard: bool = False) -> HTMLResponse:
    return render("not_found.html", status_code=404, what=what, dashboard=dashboard)
