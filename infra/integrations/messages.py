"""What each kind of integration sends for an event: the CloudEvent itself (webhook), a
Block Kit message (Slack), an Events API v2 event (PagerDuty), or a mail (email).

Every message carries the id a receiver uses to drop a repeat: the CloudEvent id
(`webhook-id`, the mail's `Message-ID`), or PagerDuty's `dedup_key` + action.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from commands.cloudevents import event_id as cloudevent_id
from domain.incident import Incident
from domain.values import Severity, Status, reopens
from infra.integrations.occurrences import IncidentRecord, Occurrence

JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"
STATUS_LABELS = {Status.SCHEDULED: "Scheduled", Status.INVESTIGATING: "Investigating",
                 Status.IDENTIFIED: "Identified",
                 Status.MONITORING: "Monitoring", Status.RESOLVED: "Resolved",
                 Status.POST_INCIDENT: "Post-incident"}
PAGERDUTY_SEVERITY = {Severity.CRITICAL: "critical", Severity.HIGH: "error",
                      Severity.MEDIUM: "warning", Severity.LOW: "info", Severity.MINOR: "info"}
HEADLINES = {Incident.Created: "New incident", Incident.DetailsChanged: "Details changed",
             Incident.UpdateAdded: "Status update", Incident.Resolved: "Resolved",
             Incident.Deleted: "Withdrawn", Incident.PostmortemUpdated: "Postmortem"}
TEST_TYPE = "com.example.integration.test"
_SLACK_TEXT_LIMIT = 3000


@dataclass(frozen=True)
class Message:
    """One message for one destination. `body` for HTTP kinds, `mail` for email."""

    message_id: str
    position: int | None
    type: str
    body: bytes = b""
    content_type: str = JSON
    mail: EmailMessage | None = None


def incident_url(base_url: str, incident_id: str) -> str:
    return f"{base_url}/incidents/{incident_id}"


def public_message(occurrence: Occurrence) -> str:
    """What the event says to the public: an update's public message, a published
    postmortem, else the incident's public message."""
    event = occurrence.event
    if isinstance(event, Incident.UpdateAdded) and event.public_message.strip():
        return event.public_message
    if isinstance(event, Incident.PostmortemUpdated) and event.published:
        return event.body
    return occurrence.after.public_message


def summary_line(record: IncidentRecord) -> str:
    return f"{record.title} — {STATUS_LABELS[record.status]}, {record.severity.value} severity"


# Webhook.

def webhook(occurrence: Occurrence, document: bytes) -> Message:
    return Message(occurrence.event_id, occurrence.position, occurrence.type, document,
                   CLOUDEVENTS_JSON)


# Slack.

def _mrkdwn(text: str) -> str:
    """Slack's three escapes; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(record: IncidentRecord, said: str, link: str, headline: str) -> dict[str, Any]:
    services = ", ".join(record.affected_services) or "none listed"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": record.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*{_mrkdwn(headline)}:* {_mrkdwn(record.title)}\n"
            f"*Status:* {STATUS_LABELS[record.status]}")}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Severity*\n{record.severity.value}"},
            {"type": "mrkdwn", "text": f"*Services*\n{_mrkdwn(services)[:1900]}"},
        ]},
    ]
    if said.strip():
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": _mrkdwn(said)[:_SLACK_TEXT_LIMIT]}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"<{link}|View the incident>"}]})
    return {"text": summary_line(record), "blocks": blocks}


def slack(occurrence: Occurrence, base_url: str) -> Message:
    record = occurrence.after
    body = slack_body(record, public_message(occurrence), incident_url(base_url, record.id),
                      HEADLINES[type(occurrence.event)])
    return Message(occurrence.event_id, occurrence.position, occurrence.type,
                   json.dumps(body, ensure_ascii=False).encode())


# PagerDuty.

def pagerduty_action(occurrence: Occurrence) -> str | None:
    """Declared or reopened: trigger; moved to identified or monitoring: acknowledge;
    resolved or deleted: resolve; anything else sends nothing. Scheduled maintenance pages
    no one: neither when declared nor when it starts."""
    event = occurrence.event
    if isinstance(event, Incident.Created):
        return None if event.status is Status.SCHEDULED else "trigger"
    if isinstance(event, Incident.UpdateAdded):
        if event.previous_status is Status.SCHEDULED:
            return None
        if reopens(event.previous_status, event.status):
            return "trigger"
        if event.status in (Status.IDENTIFIED, Status.MONITORING) \
                and event.status is not event.previous_status:
            return "acknowledge"
        return None
    if isinstance(event, Incident.Resolved | Incident.Deleted):
        return "resolve"
    return None


def pagerduty_body(action: str, record: IncidentRecord, routing_key: str, said: str,
                   base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                            "dedup_key": record.id}
    if action != "trigger":
        return body
    link = incident_url(base_url, record.id)
    body["payload"] = {
        "summary": record.title[:1024],
        "severity": PAGERDUTY_SEVERITY[record.severity],
        "source": record.affected_services[0] if record.affected_services else "product-status",
        "timestamp": record.updated_at.isoformat(),
        "class": record.incident_type.value,
        "custom_details": {"status": record.status.value,
                           "services": list(record.affected_services),
                           "regions": list(record.affected_regions),
                           "public_message": said},
    }
    body["links"] = [{"href": link, "text": "Incident page"}]
    body["client"] = "Product Status"
    body["client_url"] = link
    return body


def pagerduty(occurrence: Occurrence, routing_key: str, base_url: str) -> Message | None:
    action = pagerduty_action(occurrence)
    if action is None:
        return None
    body = pagerduty_body(action, occurrence.after, routing_key, public_message(occurrence),
                          base_url)
    return Message(occurrence.event_id, occurrence.position, occurrence.type,
                   json.dumps(body, ensure_ascii=False).encode())


def pagerduty_withdrawal(occurrence: Occurrence, routing_key: str) -> Message | None:
    """For an event that took a public incident out of the public's sight: the resolve a
    deletion sends (nothing else sends anything), naming the incident by its id only, as
    nothing else of the event or of the incident after it is public."""
    if pagerduty_action(occurrence) != "resolve":
        return None
    body = {"routing_key": routing_key, "event_action": "resolve",
            "dedup_key": occurrence.stored.subject}
    return Message(occurrence.event_id, occurrence.position, occurrence.type,
                   json.dumps(body, ensure_ascii=False).encode())


# Email.

@cache
def _templates() -> Environment:
    return Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                       autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                       keep_trailing_newline=True)


def mail_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def message_id(event_id: str, sender: str) -> str:
    """The Message-ID of the mail about one event: the same on every retry."""
    return f"<{event_id}@{mail_domain(sender)}>"


def email(occurrence: Occurrence, *, sender: str, to: tuple[str, ...], base_url: str,
          include_internal: bool, unsubscribe: str = "") -> Message:
    """The mail about one event. With an `unsubscribe` link (a subscriber's mail), the
    body carries it and the RFC 8058 headers offer it for one click."""
    record, event = occurrence.after, occurrence.event
    internal = ""
    if include_internal and isinstance(event, Incident.UpdateAdded):
        internal = event.message
    elif include_internal and isinstance(event, Incident.PostmortemUpdated) \
            and not event.published:
        internal = event.body  # a draft: for the team only
    context = {
        "headline": HEADLINES[type(event)], "incident": record,
        "status": STATUS_LABELS[record.status], "said": public_message(occurrence),
        "internal_message": internal,
        "internal_notes": record.internal_notes if include_internal else "",
        "link": incident_url(base_url, record.id), "unsubscribe": unsubscribe,
    }
    mail = _mail(sender, to, f"[{STATUS_LABELS[record.status]}] {record.title}", context)
    if unsubscribe:
        mail["List-Unsubscribe"] = f"<{unsubscribe}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail["Message-ID"] = message_id(occurrence.event_id, sender)
    mail["Date"] = format_datetime(event.timestamp)
    if not isinstance(event, Incident.Created):
        first = message_id(cloudevent_id(record.id, 1), sender)
        mail["In-Reply-To"] = first
        mail["References"] = first
    return Message(occurrence.event_id, occurrence.position, occurrence.type, mail=mail)


def _mail(sender: str, to: tuple[str, ...], subject: str, context: dict[str, Any]
          ) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(formataddr(("", address)) for address in to)
    mail["Subject"] = " ".join(subject.split())  # no line breaks in a header
    mail["Auto-Submitted"] = "auto-generated"
    env = _templates()
    mail.set_content(env.get_template("email.txt").render(context))
    mail.add_alternative(env.get_template("email.html").render(context), subtype="html")
    return mail


def confirmation_mail(sender: str, to: str, link: str, services: tuple[str, ...],
                      site: str) -> EmailMessage:
    """The double opt-in message of a subscriber: a link to the confirmation page."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = formataddr(("", to))
    mail["Subject"] = "Confirm your subscription to incident updates"
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(_templates().get_template("confirm.txt").render(
        link=link, services=services, site=site))
    return mail


def test_mail(sender: str, to: tuple[str, ...], message_key: str, name: str) -> EmailMessage:
    context = {"name": name}
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(formataddr(("", address)) for address in to)
    mail["Subject"] = "[Test] Product Status integration"
    mail["Message-ID"] = message_id(message_key, sender)
    mail["Auto-Submitted"] = "auto-generated"
    env = _templates()
    mail.set_content(env.get_template("test.txt").render(context))
    return mail
