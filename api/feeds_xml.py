"""RSS 2.0 and Atom 1.0 documents of incidents, built with ElementTree.

Text is plain text everywhere except the RSS item `description`, which RSS defines as
HTML: there it is HTML-escaped, so what a reader shows is the text as written and never
markup. A postmortem is the one exception: its Markdown is rendered and sanitised
(`api.markdown`) and sent as HTML, in the RSS `description` and an Atom `content`.
Characters XML 1.0 cannot carry are dropped; everything else is kept. A document
depends only on its inputs (no clock), so equal inputs give equal bytes and the ETag the
routes derive from those inputs is a strong one.
"""

from __future__ import annotations

import html
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from urllib.parse import quote

from api import markdown
from projections.base import moment
from projections.feed_queries import FeedEntry, FeedIncident

RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
ATOM_NS = "http://www.w3.org/2005/Atom"
# The namespace of the incident extension elements (status, severity, ...). A fixed URN,
# not one under PUBLIC_BASE_URL, so that it is the same for every deployment.
INCIDENT_NS = "urn:product-status:incident"
# ElementTree keeps prefixes process-wide: these two only name ours in what it writes.
ET.register_namespace("atom", ATOM_NS)
ET.register_namespace("incident", INCIDENT_NS)

PRODUCT = "Product Status"
GENERAL_TITLE = f"{PRODUCT} - Incident Updates"
GENERAL_DESCRIPTION = "Real-time updates on product outages and incidents"
LANGUAGE = "en-US"
STATUS_LABELS = {
    "scheduled": "Scheduled maintenance",
    "investigating": "Investigating",
    "identified": "Identified",
    "monitoring": "Monitoring",
    "resolved": "Resolved",
    "post_incident": "Post Incident",
}
# Atom ids are UUID URNs named in this namespace: they never change, whatever
# PUBLIC_BASE_URL is or becomes.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, INCIDENT_NS)

# XML 1.0 carries tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD and U+10000 and above: C0
# controls, lone surrogates and U+FFFE/U+FFFF cannot be in a document at all.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """The text without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("", text)


_EMBEDDINGS = "\u202a\u202b\u202d\u202e"  # LRE, RLE, LRO, RLO: each ended by a PDF
_ISOLATES = "\u2066\u2067\u2068"  # LRI, RLI, FSI: each ended by a PDI
_PDF, _PDI = "\u202c", "\u2069"


def closed(text: str) -> str:
    """The text, followed by the invisible marks that end each direction override,
    embedding and isolate it opens, so that it cannot turn around the text after it
    (the ' - Resolved' after a title). Unmatched closing marks are ignored by readers."""
    isolates = sum(text.count(c) for c in _ISOLATES)
    embeddings = sum(text.count(c) for c in _EMBEDDINGS)
    return text + _PDI * isolates + _PDF * embeddings


def titled(text: str, suffix: str) -> str:
    """`text - suffix`, with the text unable to reorder the suffix."""
    return f"{closed(clean(text))} - {suffix}"


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").title())


def incident_url(base_url: str, incident_id: str) -> str:
    return f"{base_url}/incidents/{quote(incident_id, safe='')}"


def atom_id(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, name)}"


def rfc822(us: int) -> str:
    return format_datetime(moment(us), usegmt=True)


def rfc3339(us: int) -> str:
    return moment(us).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Channel:
    """What a feed says about itself."""

    title: str
    description: str
    link: str  # the page the feed is about
    self_url: str  # where the feed itself is served
    atom_id: str
    updated: int  # microseconds since the epoch: lastBuildDate, Atom `updated`
    ttl_minutes: int


@dataclass(frozen=True)
class Item:
    """One RSS item or Atom entry."""

    title: str
    link: str
    guid: str
    guid_is_permalink: bool
    atom_id: str
    summary: str  # plain text
    published: int
    updated: int  # RSS pubDate, Atom `updated`
    incident_type: str
    status: str
    severity: str
    services: tuple[str, ...]
    html: str | None = None  # sanitised HTML (a postmortem), sent instead of the summary


POSTMORTEM = "Postmortem"


def postmortem_item(base_url: str, incident: FeedIncident) -> Item | None:
    """The incident's published postmortem as one item (None without one): its guid and
    id are its own, its `updated` moves as it is changed."""
    postmortem = incident.postmortem
    if postmortem is None:
        return None
    link = f"{incident_url(base_url, incident.id)}#postmortem"
    return Item(
        title=titled(incident.title, POSTMORTEM),
        link=link, guid=link, guid_is_permalink=False,
        atom_id=atom_id(f"incident/{incident.id}/postmortem"),
        summary=postmortem.body, html=markdown.render(clean(postmortem.body)),
        published=postmortem.published_at, updated=postmortem.updated_at,
        incident_type=incident.incident_type, status=incident.status,
        severity=incident.severity, services=incident.affected_services,
    )


def incident_items(base_url: str, incident: FeedIncident) -> list[Item]:
    """An incident in a general feed: its item, and its postmortem once published."""
    postmortem = postmortem_item(base_url, incident)
    item = incident_item(base_url, incident)
    return [item] if postmortem is None else [item, postmortem]


def with_window(summary: str, incident: FeedIncident) -> str:
    """The summary of a maintenance with a window says when it is."""
    if incident.scheduled_start is None or incident.scheduled_end is None:
        return summary
    return (f"{summary}\nMaintenance window: {rfc3339(incident.scheduled_start)} to "
            f"{rfc3339(incident.scheduled_end)}")


def incident_item(base_url: str, incident: FeedIncident) -> Item:
    """An incident as one item of a general feed: it changes as the incident does."""
    link = incident_url(base_url, incident.id)
    summary = (incident.public_message.strip() and incident.public_message) or \
        incident.description or status_label(incident.status)
    return Item(
        title=titled(incident.title, status_label(incident.status)),
        link=link, guid=link, guid_is_permalink=True,
        atom_id=atom_id(f"incident/{incident.id}"),
        summary=with_window(summary, incident), published=incident.created_at,
        updated=incident.last_public_change,
        incident_type=incident.incident_type, status=incident.status,
        severity=incident.severity, services=incident.affected_services,
    )


def entry_item(base_url: str, incident: FeedIncident, entry: FeedEntry) -> Item:
    """One public entry of an incident (its declaration, or a status update): its guid
    and id are its own and never change, so a reader shows each update as new."""
    label = status_label(entry.status)
    if entry.public_message.strip():
        summary = entry.public_message
    elif entry.number == 0:
        summary = incident.description or label
    else:
        summary = f"Status: {label}"
    if entry.number == 0:
        summary = with_window(summary, incident)
    link = f"{incident_url(base_url, incident.id)}#update-{entry.number}"
    return Item(
        title=titled(incident.title, label),
        link=link, guid=link, guid_is_permalink=False,
        atom_id=atom_id(f"incident/{incident.id}/update/{entry.number}"),
        summary=summary, published=entry.published_at, updated=entry.published_at,
        incident_type=incident.incident_type, status=entry.status,
        severity=incident.severity, services=incident.affected_services,
    )


def _text(parent: ET.Element, tag: str, text: str, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    element.text = clean(text)
    return element


def _extensions(parent: ET.Element, item: Item) -> None:
    _text(parent, f"{{{INCIDENT_NS}}}status", item.status)
    _text(parent, f"{{{INCIDENT_NS}}}severity", item.severity)
    for service in item.services:
        _text(parent, f"{{{INCIDENT_NS}}}service", service)


def _serialize(root: ET.Element) -> bytes:
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    # The same characters as ElementTree's named references, as the hexadecimal ones that
    # feed validators recommend for plain text (read alike by the most aggregators); and
    # CR as a reference, which a parser keeps (a raw CR is read as a line feed).
    return body.replace(b"&amp;", b"&#x26;").replace(b"&lt;", b"&#x3C;").replace(
        b"&gt;", b"&#x3E;").replace(b"\r", b"&#13;")


def rss(channel: Channel, items: Sequence[Item]) -> bytes:
    root = ET.Element("rss", {"version": "2.0"})
    head = ET.SubElement(root, "channel")
    _text(head, "title", channel.title)
    _text(head, "link", channel.link)
    _text(head, "description", channel.description)
    _text(head, "language", LANGUAGE)
    _text(head, "lastBuildDate", rfc822(channel.updated))
    _text(head, "generator", PRODUCT)
    _text(head, "ttl", str(channel.ttl_minutes))
    ET.SubElement(head, f"{{{ATOM_NS}}}link", {
        "href": clean(channel.self_url), "rel": "self", "type": RSS_TYPE.split(";")[0]})
    for item in items:
        element = ET.SubElement(head, "item")
        _text(element, "title", item.title)
        _text(element, "link", item.link)
        # RSS defines description as HTML: escaped, the text shows as written (a
        # postmortem: its sanitised HTML).
        _text(element, "description", item.html if item.html is not None
              else html.escape(clean(item.summary), quote=False))
        _text(element, "guid", item.guid,
              isPermaLink="true" if item.guid_is_permalink else "false")
        _text(element, "pubDate", rfc822(item.updated))
        _text(element, "category", item.incident_type)
        _extensions(element, item)
    return _serialize(root)


def atom(channel: Channel, items: Iterable[Item]) -> bytes:
    # Atom is the default namespace, declared by hand: ElementTree's default_namespace
    # option would want namespaced attribute names too.
    root = ET.Element("feed", {"xmlns": ATOM_NS,
                               "{http://www.w3.org/XML/1998/namespace}lang": LANGUAGE})
    _text(root, "id", channel.atom_id)
    _text(root, "title", channel.title, type="text")
    _text(root, "subtitle", channel.description, type="text")
    _text(root, "updated", rfc3339(channel.updated))
    ET.SubElement(root, "link", {
        "rel": "self", "href": clean(channel.self_url), "type": ATOM_TYPE.split(";")[0]})
    ET.SubElement(root, "link", {
        "rel": "alternate", "href": clean(channel.link), "type": "text/html"})
    author = ET.SubElement(root, "author")
    _text(author, "name", PRODUCT)
    _text(root, "generator", PRODUCT)
    for item in items:
        entry = ET.SubElement(root, "entry")
        _text(entry, "id", item.atom_id)
        _text(entry, "title", item.title, type="text")
        _text(entry, "updated", rfc3339(item.updated))
        _text(entry, "published", rfc3339(item.published))
        ET.SubElement(entry, "link", {
            "rel": "alternate", "href": clean(item.link), "type": "text/html"})
        _text(entry, "summary", item.summary, type="text")
        if item.html is not None:
            _text(entry, "content", item.html, type="html")
        ET.SubElement(entry, "category", {"term": clean(item.incident_type)})
        _extensions(entry, item)
    return _serialize(root)
