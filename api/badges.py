"""SVG status badges in the usual flat style (a grey label, a coloured message), drawn from
the public summary: text is XML-escaped and stripped of characters XML cannot carry, so a
service name is shown as written and never read as markup. Equal inputs give equal bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from api.feeds_xml import clean, closed
from api.pages.views import overall_state

SVG_TYPE = "image/svg+xml"
_COLOURS = {"operational": "#4c1", "degraded": "#dfb317", "major": "#e05d44",
            "maintenance": "#007ec6", "unknown": "#9f9f9f"}
_CHAR_WIDTH = 7  # px per character, about the average of Verdana 11px
_PADDING = 10


def _width(text: str) -> int:
    return len(text) * _CHAR_WIDTH + _PADDING


def draw(label: str, message: str, colour: str) -> bytes:
    label, message = closed(clean(label)), clean(message)
    left, right = _width(label), _width(message)
    total = left + right
    title = escape(f"{label}: {message}")
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label={quoteattr(f"{label}: {message}")}>'
        f"<title>{title}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" '
        'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{escape(label)}</text>'
        f'<text x="{left + right / 2}" y="14">{escape(message)}</text>'
        "</g></svg>"
    )
    return svg.encode()


def overall(summary: Mapping[str, Any]) -> bytes:
    """The overall state, as the status page's banner says it."""
    kind, _ = overall_state(summary)
    message = {"operational": "operational", "degraded": "degraded",
               "major": "major outage", "maintenance": "under maintenance"}[kind]
    return draw("status", message, _COLOURS[kind])


def service(summary: Mapping[str, Any], name: str) -> bytes:
    """A service's state; `unknown` for a service no public incident names."""
    state = next((s["state"] for s in summary["services"] if s["name"] == name), None)
    if state is None:
        return draw(name, "unknown", _COLOURS["unknown"])
    if state == "operational":
        return draw(name, "operational", _COLOURS["operational"])
    if state == "maintenance":  # only a maintenance in progress
        return draw(name, "under maintenance", _COLOURS["maintenance"])
    if state in ("critical", "high"):  # the summary's state: the worst active severity
        return draw(name, "major outage", _COLOURS["major"])
    return draw(name, "degraded", _COLOURS["degraded"])
