"""Markdown as the pages and feeds show it: rendered by markdown-it-py (CommonMark, tables,
strikethrough) and sanitised by nh3, so that what a writer types can never run in a
reader's browser.

Two layers, each enough alone: the parser is told to treat raw HTML as text (`html`
off) and refuses `javascript:`, `vbscript:`, `file:` and `data:` links; nh3 then keeps
only the tags and attributes listed here, only `http`, `https` and `mailto` URLs (and
relative ones), and gives every link `rel="nofollow noopener"`. Event-handler and style
attributes are never among those kept. Pure and deterministic: equal text, equal HTML.
"""

from __future__ import annotations

from functools import cache

import nh3
from markdown_it import MarkdownIt

TAGS = frozenset({
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody",
    "tr", "th", "td",
})
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener"


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def sanitise(html: str) -> str:
    """The HTML with only the tags, attributes and URLs listed here."""
    return nh3.clean(html, tags=set(TAGS), attributes=ATTRIBUTES,
                     url_schemes=set(URL_SCHEMES), link_rel=LINK_REL)


def render(text: str) -> str:
    """The Markdown `text` as safe HTML."""
    return sanitise(_parser().render(text))
