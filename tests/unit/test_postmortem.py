"""Postmortems without I/O: the Markdown renders inert, the rule of when an incident takes
one, and who sees it (answers, the public form of its events)."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from eventsourcing.persistence import JSONTranscoder

from api import markdown, schemas
from commands.application import postmortem_of
from commands.cloudevents import CloudEventMapper
from domain.errors import IncidentDeleted, PostmortemTooEarly
from domain.fields import POSTMORTEM_FIELDS
from domain.incident import Incident
from domain.response import ResponsePolicy
from domain.values import Status
from domain.visibility import Audience, event_for
from projections.incident_history import fold
from projections.incident_view import incident_body

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_ENVELOPE = {"originator_id", "originator_version", "timestamp"}


class _Markup(HTMLParser):
    """Every element and attribute of a piece of HTML, as a browser's parser finds them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Markup()
    parser.feed(html)
    parser.close()
    return parser.elements


def assert_inert(html: str) -> None:
    """No element that runs or loads code, no event handler or style, and no URL but
    http(s), mailto or a relative one; every link says nofollow noopener."""
    for tag, attrs in elements(html):
        assert tag in markdown.TAGS, html
        assert not any(name.startswith("on") or name == "style" for name in attrs), html
        for name in ("href", "src"):
            url = (attrs.get(name) or "").strip().lower()
            scheme = url.split(":", 1)[0] if ":" in url.split("/", 1)[0] else ""
            assert scheme in ("", "http", "https", "mailto"), html
        if tag == "a":
            assert attrs.get("rel") == "nofollow noopener", html


HOSTILE = [
    "<script>alert(1)</script>",
    "before <script src=https://evil.example/x.js></script> after",
    "<img src=x onerror=alert(1)>",
    "![x](https://example.com/a.png\" onerror=\"alert(1))",
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![pixel](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "<iframe src=https://evil.example></iframe>",
    '<div style="position:fixed" onclick="alert(1)">raw block</div>',
    "<svg><animate onbegin=alert(1) attributeName=x /></svg>",
    "<style>body{display:none}</style>",
    '<form action="https://evil.example"><input name=t></form>',
    "[ref]\n\n[ref]: javascript:alert(1)",
    "<https://example.com/auto> and <javascript:alert(1)>",
    '<a href="https://ok.example" onmouseover="alert(1)">hover</a>',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_inert(text: str) -> None:
    html = markdown.render(text)
    assert_inert(html)
    assert "<script" not in html
    assert "<img src=\"x\"" not in html


def test_raw_html_shows_as_text_not_as_markup() -> None:
    html = markdown.render("<b>bold?</b> <script>alert(1)</script> <img src=x onerror=alert(1)>")
    assert [tag for tag, _ in elements(html)] == ["p"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_javascript_and_data_links_lose_their_target() -> None:
    for text in ("[a](javascript:alert(1))", "[a](data:text/html,<script>x</script>)",
                 "![a](data:image/png;base64,iVBORw0KGgo=)"):
        html = markdown.render(text)
        assert "javascript:" not in html.lower() or "href" not in html
        assert not any(attrs.get("href") or attrs.get("src") for _, attrs in elements(html))


def test_the_sanitiser_alone_removes_scripts_handlers_and_bad_urls() -> None:
    # The second layer, on HTML the parser would never make.
    html = markdown.sanitise(
        '<p onclick="x" style="color:red">p</p><script>alert(1)</script>'
        '<img src="x" onerror="alert(1)"><a href="javascript:alert(1)">j</a>'
        '<a href="data:text/html,x">d</a><iframe src="https://e.example"></iframe>'
        '<a href="https://ok.example" rel="opener" target="_blank">ok</a>')
    assert_inert(html)
    assert "alert" not in html
    assert elements(html) == [
        ("p", {}), ("img", {"src": "x"}), ("a", {"rel": "nofollow noopener"}),
        ("a", {"rel": "nofollow noopener"}),
        ("a", {"href": "https://ok.example", "rel": "nofollow noopener"})]


def test_markdown_renders_what_a_postmortem_needs() -> None:
    html = markdown.render(
        "# Summary\n\n**Impact**: _checkout_ down.\n\n1. one\n2. two\n\n"
        "| when | what |\n| --- | --- |\n| 12:00 | alert |\n\n`code` ~~no~~\n\n"
        "> quoted\n\n[runbook](https://example.com/runbook \"Runbook\")\n")
    assert [tag for tag, _ in elements(html)] == [
        "h1", "p", "strong", "em", "ol", "li", "li", "table", "thead", "tr", "th", "th",
        "tbody", "tr", "td", "td", "p", "code", "s", "blockquote", "p", "p", "a"]
    assert ('<a href="https://example.com/runbook" title="Runbook" '
            'rel="nofollow noopener">runbook</a>') in html
    assert markdown.render("same") == markdown.render("same")


def incident_in(status: Status) -> Incident:
    incident = Incident.declare(incident_id="incident-pm", at=T0, title="Checkout down")
    steps = {Status.INVESTIGATING: [], Status.MONITORING: [Status.MONITORING],
             Status.RESOLVED: [Status.RESOLVED],
             Status.POST_INCIDENT: [Status.RESOLVED, Status.POST_INCIDENT]}[status]
    for step in steps:
        incident.add_update(at=T0, max_updates=10, status=step)
    return incident


@pytest.mark.parametrize("status", [Status.INVESTIGATING, Status.MONITORING])
def test_an_active_incident_takes_no_postmortem(status: Status) -> None:
    incident = incident_in(status)
    with pytest.raises(PostmortemTooEarly):
        incident.write_postmortem(at=T0, body="too early", published=False)


@pytest.mark.parametrize("status", [Status.RESOLVED, Status.POST_INCIDENT])
def test_a_resolved_incident_takes_one_and_a_deleted_one_none(status: Status) -> None:
    incident = incident_in(status)
    incident.write_postmortem(at=T0, body="# What happened", published=True)
    events = list(incident.collect_events())
    assert isinstance(events[-1], Incident.PostmortemUpdated)
    assert postmortem_of(events) == ("# What happened", True)  # type: ignore[arg-type]
    assert incident.status is status  # a postmortem moves nothing
    incident.delete(at=T0)
    with pytest.raises(IncidentDeleted):
        incident.write_postmortem(at=T0, body="after", published=True)


def test_the_event_carries_the_declared_fields() -> None:
    hints = typing.get_type_hints(Incident.PostmortemUpdated)
    carried = {f.name for f in dataclasses.fields(Incident.PostmortemUpdated)} - _ENVELOPE
    given = [f for f in POSTMORTEM_FIELDS if f.given]
    assert carried == {f.name for f in given}
    for field in given:
        assert hints[field.name] == field.kind


def test_a_draft_is_for_readers_and_a_published_one_for_everyone() -> None:
    incident = incident_in(Status.RESOLVED)
    incident.write_postmortem(at=T0 + timedelta(minutes=1), body="SECRET draft",
                              published=False)
    incident.write_postmortem(at=T0 + timedelta(minutes=2), body="# Published",
                              published=True)
    incident.write_postmortem(at=T0 + timedelta(minutes=3), body="SECRET withdrawn",
                              published=False)
    events: list[Incident.Event] = list(incident.collect_events())  # type: ignore[arg-type]
    mapper = CloudEventMapper(JSONTranscoder())
    documents = [mapper.to_stored_event(e).state for e in events[-3:]]
    draft, published, withdrawn = (event_for(Audience.PUBLIC, d) for d in documents)
    assert draft is None
    assert withdrawn is None
    assert published is not None
    assert json.loads(published)["data"] == {"incident_id": "incident-pm",
                                             "body": "# Published", "published": True}
    assert [event_for(Audience.READER, d) for d in documents] == documents
    # Stored and read back, the event is the one recorded.
    assert mapper.to_domain_event(mapper.to_stored_event(events[-2])) == events[-2]

    for upto, shown in ((-2, None), (-1, "# Published"), (len(events), None)):
        record = fold(events[:upto])
        assert record is not None
        public = incident_body(record, Audience.PUBLIC, ResponsePolicy(), T0)
        reader = incident_body(record, Audience.READER, ResponsePolicy(), T0)
        assert schemas.PublicIncident.model_validate(public)
        assert schemas.Incident.model_validate(reader)
        assert (public["postmortem"] or {}).get("body") == shown
        assert reader["postmortem"]["body"] == record["postmortem"]["body"]
        assert "SECRET" not in json.dumps(public)
    last_published = fold(events[:-1])
    assert last_published is not None
    assert last_published["postmortem"] == {
        "body": "# Published", "published": True, "updated_at": T0 + timedelta(minutes=2)}
