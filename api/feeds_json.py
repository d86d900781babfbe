"""JSON Feed 1.1 documents (https://www.jsonfeed.org/version/1.1/) of the same items as the
RSS and Atom feeds (api/feeds_xml.py builds them: one item per public incident).

Required by the spec: `version` (the 1.1 URL), `title`, `items`; each item's `id` and one of
`content_html` / `content_text` (here the plain text, the RSS item's description as
written; a published postmortem also has its sanitised HTML as `content_html`). The
incident's details are in the `_incident` extension object (JSON Feed extensions start
with `_`). Text drops the characters the XML feeds cannot carry either,
so all three show the same words. Equal inputs give equal bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from api.feeds_xml import LANGUAGE, PRODUCT, Channel, Item, clean, rfc3339

JSON_FEED_TYPE = "application/feed+json"
VERSION = "https://jsonfeed.org/version/1.1"


def _item(item: Item) -> dict[str, Any]:
    content = {"content_text": clean(item.summary)}
    if item.html is not None:  # a postmortem: its sanitised HTML as well
        content["content_html"] = clean(item.html)
    return {
        "id": clean(item.guid),
        "url": clean(item.link),
        "title": clean(item.title),
        **content,
        "date_published": rfc3339(item.published),
        "date_modified": rfc3339(item.updated),
        "tags": [clean(item.incident_type)],
        "_incident": {
            "status": clean(item.status),
            "severity": clean(item.severity),
            "incident_type": clean(item.incident_type),
            "services": [clean(s) for s in item.services],
        },
    }


def json_feed(channel: Channel, items: Sequence[Item]) -> bytes:
    document = {
        "version": VERSION,
        "title": clean(channel.title),
        "home_page_url": clean(channel.link),
        "feed_url": clean(channel.self_url),
        "description": clean(channel.description),
        "language": LANGUAGE,
        "authors": [{"name": PRODUCT}],
        "items": [_item(item) for item in items],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
