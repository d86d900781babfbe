"""Server-rendered HTML: the public status page, one public page per incident, and the
operators' dashboard.

Public pages are rendered from the read tables with `internal=False`, so nothing internal
can reach them. The dashboard is a set of small shells (no incident data in them) plus HTML
fragments that need a reader token in the `Authorization` header: the browser keeps the token
in sessionStorage and `dashboard.js` fetches the fragments with it, posts the forms to the JSON
API, and refreshes from the event stream. No cookie carries authority, so there is nothing to
forge across sites (see docs/pages.md). Every value that came from a user is escaped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from api.auth import Reader
from api.consistency import Consistent
from api.deps import Queries, is_incident_id
from domain.values import ACTIVE_STATUSES, IncidentType, Severity, Status, UpdateType, may_move
from projections.queries import BadCursor, ListFilters, Page

router = APIRouter(include_in_schema=False)

_ACTIVE = tuple(s.value for s in Status if s in ACTIVE_STATUSES)
_CLOSED = (Status.RESOLVED.value, Status.POST_INCIDENT.value)
_MAJOR = (Severity.CRITICAL.value, Severity.HIGH.value)
RSS_FEED = "/api/v1/incidents/rss/feed"
ATOM_FEED = "/api/v1/incidents/atom/feed"
# No inline script or style anywhere: a title that slipped past escaping still could not run.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'")
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_LIMITS = (10, 20, 50, 100)


def e(value: object) -> str:
    """Escaped for HTML text and double-quoted attributes."""
    return escape(str(value), quote=True)


def _label(value: str) -> str:
    return value.replace("_", " ").capitalize()


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return e(iso)
    return f'<time datetime="{e(iso)}">{moment:%Y-%m-%d %H:%M} UTC</time>'


def _page(title: str, body: str, *, status_code: int = 200, head: str = "",
          script: str | None = None, nav: str = "") -> HTMLResponse:
    scripts = f'<script src="/static/{script}" defer></script>' if script else ""
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<link rel="stylesheet" href="/static/pages.css">
{head}{scripts}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="site"><div class="wrap">
<a class="brand" href="/">Product Status</a>
<nav aria-label="Site">{nav or _PUBLIC_NAV}</nav>
</div></header>
<main id="main" class="wrap" tabindex="-1">
{body}
</main>
<footer class="site"><div class="wrap">
<a href="{RSS_FEED}">RSS feed</a> · <a href="{ATOM_FEED}">Atom feed</a> ·
<a href="/dashboard">Dashboard</a>
</div></footer>
</body>
</html>"""
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


_PUBLIC_NAV = '<a href="/">Status</a> <a href="/dashboard">Dashboard</a>'
_FEED_LINKS = (
    f'<link rel="alternate" type="application/rss+xml" title="Incidents (RSS)" '
    f'href="{RSS_FEED}">\n'
    f'<link rel="alternate" type="application/atom+xml" title="Incidents (Atom)" '
    f'href="{ATOM_FEED}">\n'
)


def _badge(kind: str, value: str) -> str:
    return f'<span class="badge {kind}-{e(value)}">{e(_label(value))}</span>'


# The overall state, from the public summary: an active critical or high incident is a major
# outage; any other active incident (maintenance included) is a degradation.
def overall_state(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(css class, sentence) for the banner of the status page."""
    active_by_severity: Mapping[str, int] = summary["active_by_severity"]
    if any(active_by_severity.get(s, 0) for s in _MAJOR):
        return "major", "Major outage"
    if summary["active"]:
        return "degraded", "Some systems are degraded"
    return "operational", "All systems operational"


def service_state(state: str) -> tuple[str, str]:
    if state == "operational":
        return "operational", "Operational"
    if state in _MAJOR:
        return "major", "Major outage"
    return "degraded", "Degraded"


# ---------------------------------------------------------------------------------------
# Public pages


def _public_update(update: Mapping[str, Any]) -> str:
    message = update.get("public_message") or ""
    said = f"<p>{e(message)}</p>" if message.strip() else ""
    return (f'<li class="update"><div class="meta">{_badge("status", update["status"])} '
            f'{_when(update["created_at"])}</div>{said}</li>')


def _public_timeline(incident: Mapping[str, Any]) -> str:
    """Public updates newest first, then the declaration itself."""
    items = [_public_update(u) for u in reversed(incident.get("updates", []))]
    declared = incident.get("public_message") or ""
    items.append(
        f'<li class="update"><div class="meta"><strong>Declared</strong> '
        f'{_when(incident["start_time"])}</div>'
        + (f"<p>{e(declared)}</p>" if declared.strip() else "") + "</li>"
    )
    return f'<ol class="timeline">{"".join(items)}</ol>'


def _public_incident_card(incident: Mapping[str, Any], *, timeline: bool) -> str:
    services = ", ".join(incident["affected_services"])
    body = _public_timeline(incident) if timeline else (
        f"<p>{e(incident['public_message'])}</p>" if incident["public_message"] else "")
    affected = f'<p class="muted">Affected: {e(services)}</p>' if services else ""
    resolved = (f'<p class="muted">Resolved {_when(incident["resolved_at"])}</p>'
                if incident.get("resolved_at") else "")
    return (
        f'<article class="incident sev-{e(incident["severity"])}">'
        f'<h3><a href="/incidents/{e(incident["id"])}">{e(incident["title"])}</a></h3>'
        f'<div class="meta">{_badge("status", incident["status"])} '
        f'{_badge("severity", incident["severity"])} '
        f'<span class="nowrap">Since {_when(incident["start_time"])}</span></div>'
        f"{affected}{resolved}{body}</article>"
    )


@router.get("/", response_class=HTMLResponse)
def status_page(queries: Queries, _: Consistent) -> HTMLResponse:
    active = queries.list_incidents(ListFilters(status=_ACTIVE), internal=False, limit=50)
    closed = queries.list_incidents(ListFilters(status=_CLOSED), internal=False, limit=5)
    updates = queries.updates_of([i["id"] for i in active.items], internal=False)
    for incident in active.items:
        incident["updates"] = updates.get(incident["id"], [])
    body = _status_body(queries.summary(internal=False), active.items, closed.items)
    return _page("Product Status", body, head=_FEED_LINKS)


def _status_body(summary: Mapping[str, Any], active: Sequence[Mapping[str, Any]],
                 closed: Sequence[Mapping[str, Any]]) -> str:
    state, sentence = overall_state(summary)
    services = "".join(
        f'<li><span class="name">{e(s["name"])}</span>'
        f'<span class="state state-{service_state(s["state"])[0]}">'
        f"{service_state(s['state'])[1]}</span></li>"
        for s in summary["services"]
    ) or '<li class="muted">No services have reported incidents.</li>'
    active_html = "".join(_public_incident_card(i, timeline=True) for i in active) or (
        '<p class="muted">No incidents right now.</p>')
    closed_html = "".join(_public_incident_card(i, timeline=False) for i in closed) or (
        '<p class="muted">Nothing resolved recently.</p>')
    return f"""
<section class="banner banner-{state}" aria-labelledby="overall">
<h1 id="overall">{sentence}</h1>
<p>{summary["active"]} active incident{"" if summary["active"] == 1 else "s"}.
Subscribe: <a href="{RSS_FEED}">RSS</a> · <a href="{ATOM_FEED}">Atom</a></p>
</section>
<section aria-labelledby="services-heading">
<h2 id="services-heading">Services</h2>
<ul class="services">{services}</ul>
</section>
<section aria-labelledby="active-heading">
<h2 id="active-heading">Active incidents</h2>
{active_html}
</section>
<section aria-labelledby="resolved-heading">
<h2 id="resolved-heading">Recently resolved</h2>
{closed_html}
</section>"""


def _not_found_page(what: str, *, nav: str = "") -> HTMLResponse:
    body = (f'<h1>Not found</h1><p>{e(what)}</p>'
            '<p><a href="/">Back to the status page</a></p>')
    return _page("Not found - Product Status", body, status_code=404, nav=nav)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(incident_id: str, queries: Queries, _: Consistent) -> HTMLResponse:
    """One public incident; unknown, private and deleted incidents are all the same 404."""
    incident = (queries.get_incident(incident_id, internal=False)
                if is_incident_id(incident_id) else None)
    if incident is None:
        return _not_found_page("There is no public incident at this address.")
    feed = (f'<link rel="alternate" type="application/rss+xml" title="This incident (RSS)" '
            f'href="/api/v1/incidents/{e(incident["id"])}/rss">\n')
    return _page(f"{incident['title']} - Product Status", _public_incident_body(incident),
                 head=_FEED_LINKS + feed)


def _public_incident_body(incident: Mapping[str, Any]) -> str:
    services = ", ".join(incident["affected_services"]) or "none listed"
    regions = ", ".join(incident["affected_regions"]) or "none listed"
    return f"""
<p><a href="/">&larr; All systems</a></p>
<article class="incident-page sev-{e(incident["severity"])}">
<h1>{e(incident["title"])}</h1>
<div class="meta">{_badge("status", incident["status"])} {_badge("severity", incident["severity"])}
{e(_label(incident["incident_type"]))}</div>
<dl class="facts">
<dt>Started</dt><dd>{_when(incident["start_time"])}</dd>
<dt>Resolved</dt><dd>{_when(incident["resolved_at"]) or "not yet"}</dd>
<dt>Services</dt><dd>{e(services)}</dd>
<dt>Regions</dt><dd>{e(regions)}</dd>
</dl>
{f'<p class="description">{e(incident["description"])}</p>' if incident["description"] else ""}
<h2>Updates</h2>
{_public_timeline(incident)}
<p><a href="/api/v1/incidents/{e(incident["id"])}/rss">This incident's updates as RSS</a></p>
</article>"""


# ---------------------------------------------------------------------------------------
# Dashboard shells: no incident data, so they need no token; dashboard.js fills them.

_DASH_NAV = ('<a href="/dashboard">Incidents</a> '
             '<a href="/dashboard/new" data-role-min="writer" hidden>Declare</a> '
             '<a href="/">Public page</a> '
             '<button type="button" class="link" data-sign-out hidden>Sign out</button>')
_NOSCRIPT = "<noscript><p>The dashboard needs JavaScript.</p></noscript>"


def _shell(title: str, body: str, **data: str) -> HTMLResponse:
    attrs = " ".join(f'data-{e(k.replace("_", "-"))}="{e(v)}"' for k, v in data.items())
    return _page(f"{title} - Product Status dashboard",
                 f'<div id="dashboard" {attrs}>{_NOSCRIPT}{body}</div>',
                 script="dashboard.js", nav=_DASH_NAV)


@router.get("/dashboard/sign-in", response_class=HTMLResponse)
def sign_in_page() -> HTMLResponse:
    body = """
<h1>Sign in to the dashboard</h1>
<form id="sign-in" class="card narrow" novalidate>
<p>Paste an API token with the reader, writer or admin role. It is kept in this tab only
(session storage) and sent with each request.</p>
<div class="field"><label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="off" required
 aria-describedby="token-error">
<p class="error" id="token-error" data-error-for="token" role="alert"></p></div>
<button type="submit">Sign in</button>
</form>"""
    return _shell("Sign in", body, page="sign-in")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request) -> HTMLResponse:
    """The filter form is part of the shell (it echoes only the query string), so a live
    refresh of the cards and the table never wipes what someone is typing."""
    filters, limit, _, _ = read_filters(request.query_params)
    body = f"""
<h1>Incidents</h1>
<p class="live" data-live-status role="status" aria-live="polite">Connecting…</p>
<div data-fragment="/dashboard/fragments/cards" aria-busy="true">
<p class="muted">Loading…</p></div>
<p data-role-min="writer" hidden><a class="button" href="/dashboard/new">Declare an incident</a></p>
{_filter_form(filters, limit)}
<div data-fragment="/dashboard/fragments/overview" data-keep-query aria-busy="true"></div>"""
    return _shell("Incidents", body, page="overview")


@router.get("/dashboard/new", response_class=HTMLResponse)
def new_incident_page() -> HTMLResponse:
    body = f"""
<p><a href="/dashboard">&larr; Incidents</a></p>
<h1>Declare an incident</h1>
{_incident_form(None)}"""
    return _shell("Declare an incident", body, page="new")


@router.get("/dashboard/incidents/{incident_id}", response_class=HTMLResponse)
def dashboard_incident_page(incident_id: str) -> HTMLResponse:
    if not is_incident_id(incident_id):
        return _not_found_page("There is no incident at this address.", nav=_DASH_NAV)
    body = f"""
<p><a href="/dashboard">&larr; Incidents</a></p>
<p class="live" data-live-status role="status" aria-live="polite">Connecting…</p>
<div data-fragment="/dashboard/fragments/incidents/{e(incident_id)}" aria-busy="true">
<p class="muted">Loading…</p></div>
<div data-fragment="/dashboard/fragments/incidents/{e(incident_id)}/forms" data-static
 data-role-min="writer" hidden></div>"""
    return _shell("Incident", body, page="incident", incident=incident_id)


@router.get("/dashboard/session")
async def session(caller: Reader) -> JSONResponse:
    """Which role the bearer token has: the sign-in page checks a token with this."""
    return JSONResponse({"role": caller.role}, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------------------------
# Dashboard fragments: need a reader token; forms only for writers.


def _fragment(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers=_HEADERS)


def _moment(text: str, name: str, errors: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        errors.append(f"{name} must be a date and time, e.g. 2024-01-31T12:00")
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _names(values: Iterable[str]) -> tuple[str, ...]:
    """Repeated parameters and comma-separated text both name several services/regions."""
    return tuple(dict.fromkeys(
        part.strip() for value in values for part in value.split(",") if part.strip()))


def read_filters(params: Any) -> tuple[ListFilters, int, str | None, list[str]]:
    """The list filters of the dashboard's query string, with what was wrong in it."""
    errors: list[str] = []

    def choices(name: str, allowed: Iterable[str]) -> tuple[str, ...]:
        known = set(allowed)
        picked = [v for v in params.getlist(name) if v]
        for bad in [v for v in picked if v not in known]:
            errors.append(f"{name} {bad!r} is not one of {', '.join(sorted(known))}")
        return tuple(dict.fromkeys(v for v in picked if v in known))

    q = (params.get("q") or "").strip()[:200] or None
    filters = ListFilters(
        status=choices("status", (s.value for s in Status)),
        severity=choices("severity", (s.value for s in Severity)),
        incident_type=choices("incident_type", (t.value for t in IncidentType)),
        service=_names(params.getlist("service")),
        region=_names(params.getlist("region")),
        q=q,
        since=_moment(params.get("since") or "", "since", errors),
        until=_moment(params.get("until") or "", "until", errors),
    )
    try:
        limit = int(params.get("limit") or 20)
    except ValueError:
        limit = 20
    cursor = params.get("cursor") or None
    return filters, max(1, min(limit, 100)), cursor, errors


def _query(filters: ListFilters, limit: int, cursor: str | None = None) -> str:
    pairs: list[tuple[str, str]] = []
    for name in ("status", "severity", "incident_type", "service", "region"):
        pairs += [(name, v) for v in getattr(filters, name)]
    if filters.q:
        pairs.append(("q", filters.q))
    for name in ("since", "until"):
        moment: datetime | None = getattr(filters, name)
        if moment is not None:
            pairs.append((name, moment.strftime("%Y-%m-%dT%H:%M")))
    if limit != 20:
        pairs.append(("limit", str(limit)))
    if cursor:
        pairs.append(("cursor", cursor))
    return urlencode(pairs)


def _cards(summary: Mapping[str, Any]) -> str:
    by_status = summary["by_status"]
    main = [("Active", summary["active"], "active")] + [
        (_label(s), by_status[s], s) for s in ("investigating", "identified", "monitoring")
    ] + [("Resolved", summary["resolved"], "resolved")]
    cards = "".join(
        f'<li class="stat stat-{key}"><span class="num" data-card="{key}">{count}</span>'
        f'<span class="what">{e(name)}</span></li>' for name, count, key in main)
    severities = "".join(
        f'<li class="stat severity-{s.value}"><span class="num" data-card="severity-{s.value}">'
        f'{summary["by_severity"][s.value]}</span><span class="what">{_label(s.value)}'
        f' <small>({summary["active_by_severity"][s.value]} active)</small></span></li>'
        for s in Severity)
    return (f'<section aria-labelledby="cards-h"><h2 id="cards-h" class="sr-only">Summary</h2>'
            f'<ul class="cards">{cards}</ul>'
            f'<h3 class="cards-sub">By severity</h3><ul class="cards small">{severities}</ul>'
            "</section>")


def _checkboxes(name: str, legend: str, values: Iterable[str], picked: Sequence[str]) -> str:
    boxes = "".join(
        f'<label class="check"><input type="checkbox" name="{name}" value="{e(v)}"'
        f'{" checked" if v in picked else ""}> {e(_label(v))}</label>' for v in values)
    return f'<fieldset class="checks"><legend>{legend}</legend>{boxes}</fieldset>'


def _filter_form(filters: ListFilters, limit: int) -> str:
    def moment(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%dT%H:%M") if value else ""

    limits = "".join(f'<option value="{n}"{" selected" if n == limit else ""}>{n}</option>'
                     for n in sorted({*_LIMITS, limit}))
    return f"""
<form class="filters card" method="get" action="/dashboard" aria-label="Filter incidents">
{_checkboxes("status", "Status", (s.value for s in Status), filters.status)}
{_checkboxes("severity", "Severity", (s.value for s in Severity), filters.severity)}
{_checkboxes("incident_type", "Type", (t.value for t in IncidentType), filters.incident_type)}
<div class="grid">
<div class="field"><label for="f-q">Text in title or description</label>
<input id="f-q" name="q" type="search" maxlength="200" value="{e(filters.q or "")}"></div>
<div class="field"><label for="f-service">Services (comma-separated)</label>
<input id="f-service" name="service" value="{e(", ".join(filters.service))}"></div>
<div class="field"><label for="f-region">Regions (comma-separated)</label>
<input id="f-region" name="region" value="{e(", ".join(filters.region))}"></div>
<div class="field"><label for="f-since">Started from (UTC)</label>
<input id="f-since" name="since" type="datetime-local" value="{moment(filters.since)}"></div>
<div class="field"><label for="f-until">Started before (UTC)</label>
<input id="f-until" name="until" type="datetime-local" value="{moment(filters.until)}"></div>
<div class="field"><label for="f-limit">Per page</label>
<select id="f-limit" name="limit">{limits}</select></div>
</div>
<div class="actions"><button type="submit">Apply filters</button>
<a href="/dashboard">Clear</a></div>
</form>"""


def _row(incident: Mapping[str, Any]) -> str:
    visibility = "Public" if incident["is_public"] else "Private"
    return (
        f'<tr data-incident="{e(incident["id"])}">'
        f'<th scope="row"><a href="/dashboard/incidents/{e(incident["id"])}">'
        f'{e(incident["title"])}</a></th>'
        f'<td>{_badge("status", incident["status"])}</td>'
        f'<td>{_badge("severity", incident["severity"])}</td>'
        f'<td>{e(_label(incident["incident_type"]))}</td>'
        f'<td>{e(", ".join(incident["affected_services"]))}</td>'
        f'<td>{e(", ".join(incident["affected_regions"]))}</td>'
        f'<td>{_when(incident["start_time"])}</td>'
        f"<td>{visibility}</td></tr>"
    )


@router.get("/dashboard/fragments/cards", response_class=HTMLResponse)
def cards_fragment(_caller: Reader, queries: Queries, _: Consistent) -> HTMLResponse:
    return _fragment(_cards(queries.summary(internal=True)))


@router.get("/dashboard/fragments/overview", response_class=HTMLResponse)
def overview_fragment(
    request: Request, _caller: Reader, queries: Queries, _: Consistent
) -> HTMLResponse:
    """The incident table of the dashboard, for the filters of the query string."""
    filters, limit, cursor, errors = read_filters(request.query_params)
    try:
        page = queries.list_incidents(filters, internal=True, limit=limit, cursor=cursor)
    except BadCursor:
        errors.append("the page link is not valid any more; showing the first page")
        page = queries.list_incidents(filters, internal=True, limit=limit)
    return _fragment(_overview_html(filters, limit, cursor, page, errors))


def _overview_html(filters: ListFilters, limit: int, cursor: str | None, page: Page,
                   errors: Sequence[str]) -> str:
    problems = "".join(f"<li>{e(m)}</li>" for m in errors)
    warning = f'<ul class="errors" role="alert">{problems}</ul>' if errors else ""
    rows = "".join(_row(i) for i in page.items) or (
        '<tr><td colspan="8" class="muted">No incidents match.</td></tr>')
    pager = []
    if cursor:
        pager.append(f'<a href="/dashboard?{e(_query(filters, limit))}">First page</a>')
    if page.next_cursor:
        following = _query(filters, limit, page.next_cursor)
        pager.append(f'<a rel="next" href="/dashboard?{e(following)}">Next page</a>')
    total = page.total
    html = f"""{warning}
<section aria-labelledby="table-h">
<h2 id="table-h"><span data-total>{total}</span> incident{"" if total == 1 else "s"} match</h2>
<div class="table-wrap" role="region" aria-labelledby="table-h" tabindex="0">
<table class="incidents">
<thead><tr><th scope="col">Title</th><th scope="col">Status</th><th scope="col">Severity</th>
<th scope="col">Type</th><th scope="col">Services</th><th scope="col">Regions</th>
<th scope="col">Started</th><th scope="col">Visibility</th></tr></thead>
<tbody>{rows}</tbody>
</table></div>
<nav class="pager" aria-label="Pages">{" ".join(pager)}</nav>
</section>"""
    return html


def _internal_update(update: Mapping[str, Any]) -> str:
    parts = []
    if update.get("public_message"):
        parts.append(f'<p><span class="tag">Public</span> {e(update["public_message"])}</p>')
    if update.get("message"):
        parts.append(f'<p class="internal"><span class="tag">Internal</span> '
                     f'{e(update["message"])}</p>')
    author = f" · {e(update['author'])}" if update.get("author") else ""
    moved = (f'{_badge("status", update["previous_status"])} &rarr; '
             if update["previous_status"] != update["status"] else "")
    return (f'<li class="update"><div class="meta">{moved}{_badge("status", update["status"])} '
            f'{e(_label(update["update_type"]))} · {_when(update["created_at"])}{author}</div>'
            f'{"".join(parts)}</li>')


@router.get("/dashboard/fragments/incidents/{incident_id}", response_class=HTMLResponse)
def incident_fragment(
    incident_id: str, caller: Reader, queries: Queries, _: Consistent
) -> HTMLResponse:
    incident = (queries.get_incident(incident_id, internal=True)
                if is_incident_id(incident_id) else None)
    if incident is None:
        return HTMLResponse('<h1>Not found</h1><p>There is no incident with this id (or it '
                            'was deleted).</p>', status_code=404, headers=_HEADERS)
    return _fragment(_incident_view(incident))


def _incident_view(incident: Mapping[str, Any]) -> str:
    """The full incident, internal notes included (reader tokens only)."""
    updates = "".join(_internal_update(u) for u in reversed(incident["updates"]))
    notes = incident.get("internal_notes") or ""
    html = f"""
<article class="incident-page sev-{e(incident["severity"])}" data-version="{incident["version"]}">
<h1 data-title>{e(incident["title"])}</h1>
<div class="meta">{_badge("status", incident["status"])} {_badge("severity", incident["severity"])}
{e(_label(incident["incident_type"]))} · {"Public" if incident["is_public"] else "Private"}
{"" if incident["rss_enabled"] else " · not in feeds"} · version {incident["version"]}</div>
<dl class="facts">
<dt>Started</dt><dd>{_when(incident["start_time"])}</dd>
<dt>Resolved</dt><dd>{_when(incident["resolved_at"]) or "not yet"}</dd>
<dt>Services</dt><dd>{e(", ".join(incident["affected_services"]) or "none")}</dd>
<dt>Regions</dt><dd>{e(", ".join(incident["affected_regions"]) or "none")}</dd>
<dt>Public message</dt><dd>{e(incident["public_message"]) or "none"}</dd>
<dt>Internal notes</dt><dd class="internal">{e(notes) or "none"}</dd>
</dl>
{f'<p class="description">{e(incident["description"])}</p>' if incident["description"] else ""}
<h2>Timeline</h2>
<ol class="timeline">{updates or '<li class="muted">No updates yet.</li>'}</ol>
<p class="muted">Declared {_when(incident["created_at"])} · last changed
{_when(incident["updated_at"])}{" · " if incident["is_public"] else ""}
{f'<a href="/incidents/{e(incident["id"])}">public page</a>' if incident["is_public"] else ""}
</p>
</article>"""
    return html


def _field(name: str, label: str, control: str, hint: str = "") -> str:
    hint_html = f'<p class="hint" id="{name}-hint">{e(hint)}</p>' if hint else ""
    return (f'<div class="field"><label for="{name}">{e(label)}</label>{hint_html}{control}'
            f'<p class="error" id="{name}-error" data-error-for="{name.split("--")[0]}"></p>'
            "</div>")


def _select(name: str, values: Iterable[str], current: str, *, blank: str = "") -> str:
    options = f'<option value="">{e(blank)}</option>' if blank else ""
    options += "".join(f'<option value="{e(v)}"{" selected" if v == current else ""}>'
                       f"{e(_label(v))}</option>" for v in values)
    return f'<select id="{name}" name="{name.split("--")[0]}">{options}</select>'


def _incident_form(incident: Mapping[str, Any] | None) -> str:
    """Create (no incident) or change details (an incident's current values)."""
    def value(key: str, default: str = "") -> str:
        if incident is None:
            return default
        found = incident[key]
        return ", ".join(found) if isinstance(found, list) else str(found)

    def box(key: str, label: str) -> str:
        checked = " checked" if incident is None or incident[key] else ""
        return (f'<div class="field"><label class="check"><input type="checkbox" id="{key}--f"'
                f' name="{key}"{checked}> {label}</label>'
                f'<p class="error" data-error-for="{key}"></p></div>')

    status = "" if incident is not None else _field(
        "status--f", "Status", _select("status--f", _ACTIVE, "investigating"))
    fields = "".join([
        _field("title--f", "Title", f'<input id="title--f" name="title" required maxlength="200"'
               f' value="{e(value("title"))}">'),
        status,
        _field("severity--f", "Severity", _select("severity--f", (s.value for s in Severity),
                                                  value("severity", "medium"))),
        _field("incident_type--f", "Type", _select(
            "incident_type--f", (t.value for t in IncidentType), value("incident_type", "other"))),
        _field("affected_services--f", "Affected services", '<input id="affected_services--f" '
               f'name="affected_services" data-list value="{e(value("affected_services"))}">',
               "Comma-separated, e.g. api, database"),
        _field("affected_regions--f", "Affected regions", '<input id="affected_regions--f" '
               f'name="affected_regions" data-list value="{e(value("affected_regions"))}">',
               "Comma-separated"),
        _field("public_message--f", "Public message", '<textarea id="public_message--f" '
               f'name="public_message" rows="3">{e(value("public_message"))}</textarea>',
               "Shown on the status page and in feeds"),
        _field("description--f", "Description", '<textarea id="description--f" '
               f'name="description" rows="3">{e(value("description"))}</textarea>'),
        _field("internal_notes--f", "Internal notes", '<textarea id="internal_notes--f" '
               f'name="internal_notes" rows="3">{e(value("internal_notes"))}</textarea>',
               "Only for signed-in readers; never public"),
        box("is_public", "Public (shown on the status page)"),
        box("rss_enabled", "Listed in the RSS and Atom feeds"),
    ])
    if incident is None:
        attrs = 'data-method="POST" data-url="/api/v1/incidents" data-then="open"'
        submit = "Declare incident"
        heading = ""
    else:
        attrs = (f'data-method="PUT" data-url="/api/v1/incidents/{e(incident["id"])}" '
                 f'data-if-match="{incident["version"]}" data-changed-only data-then="reload"')
        submit = "Save details"
        heading = "<h2>Change details</h2>"
    return (f'<form class="card api-form" id="incident-form" {attrs} novalidate>{heading}'
            f'<p class="error form-error" data-error-for="" role="alert"></p>'
            f'{fields}<button type="submit">{submit}</button></form>')


def _update_form(incident: Mapping[str, Any]) -> str:
    current = incident["status"]
    allowed = [s.value for s in Status if s.value != current and may_move(Status(current), s)]
    fields = "".join([
        _field("status--u", "New status", _select("status--u", allowed, "",
                                                  blank=f"Keep {_label(current).lower()}")),
        _field("update_type--u", "Kind of update", _select(
            "update_type--u", (u.value for u in UpdateType), "status_update")),
        _field("public_message--u", "Public message", '<textarea id="public_message--u" '
               'name="public_message" rows="3"></textarea>', "Shown on the status page"),
        _field("message--u", "Internal message", '<textarea id="message--u" name="message" '
               'rows="3"></textarea>', "Only for signed-in readers"),
        _field("author--u", "Author",
               '<input id="author--u" name="author" maxlength="100" data-omit-empty>'),
    ])
    return (f'<form class="card api-form" id="update-form" data-method="POST" '
            f'data-url="/api/v1/incidents/{e(incident["id"])}/updates" data-then="reload" '
            f'novalidate><h2>Post an update</h2>'
            f'<p class="error form-error" data-error-for="" role="alert"></p>'
            f'{fields}<button type="submit">Post update</button></form>')


def _delete_form(incident: Mapping[str, Any]) -> str:
    return (f'<form class="card api-form danger" id="delete-form" data-method="DELETE" '
            f'data-url="/api/v1/incidents/{e(incident["id"])}" data-then="list" novalidate>'
            "<h2>Delete</h2>"
            '<p class="error form-error" data-error-for="" role="alert"></p>'
            '<div class="field"><label class="check"><input type="checkbox" id="confirm-delete" '
            'data-confirm required> Yes, delete this incident (it disappears everywhere)</label>'
            '<p class="error" data-error-for="confirm"></p></div>'
            '<button type="submit" class="danger">Delete incident</button></form>')


@router.get("/dashboard/fragments/incidents/{incident_id}/forms", response_class=HTMLResponse)
def incident_forms_fragment(
    incident_id: str, caller: Reader, queries: Queries, _: Consistent
) -> HTMLResponse:
    incident = (queries.get_incident(incident_id, internal=True)
                if is_incident_id(incident_id) else None)
    if incident is None or not caller.at_least("writer"):
        return _fragment("")
    closed = incident["status"] == Status.POST_INCIDENT.value
    update = ('<p class="muted">Post-incident review is final: no more updates.</p>'
              if closed else _update_form(incident))
    return _fragment(f'<div class="forms">{update}{_incident_form(incident)}'
                     f"{_delete_form(incident)}</div>")

