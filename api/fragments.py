"""Drawn parts of answers kept by a key naming all they are drawn from: a status page or a
services list of hundreds of services draws again only the parts of those that changed
(`projections.service_queries.ServiceBar.key`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

# At most this many characters kept by one `Fragments`.
FRAGMENT_CHARACTERS = 64 * 1024 * 1024

Text = TypeVar("Text", bound=str)


class Fragments(Generic[Text]):
    """Texts by key, least recently used out first, bounded by their characters."""

    def __init__(self, max_characters: int = FRAGMENT_CHARACTERS) -> None:
        self.max_characters = max_characters
        self.entries: OrderedDict[Hashable, Text] = OrderedDict()
        self.characters = 0
        self.lock = threading.Lock()

    def get(self, key: Hashable, draw: Callable[[], Text]) -> Text:
        """The text kept for `key`, else `draw()` (kept)."""
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
                return found
        drawn = draw()
        with self.lock:
            if key not in self.entries:
                self.entries[key] = drawn
                self.characters += len(drawn)
            while self.characters > self.max_characters and len(self.entries) > 1:
                _, dropped = self.entries.popitem(last=False)
                self.characters -= len(dropped)
        return drawn
