"""A clock tests move by hand, given to `bootstrap(settings, clock=...)`."""

from __future__ import annotations

from datetime import datetime, timedelta


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, moment: datetime) -> None:
        assert moment >= self.now, "this clock only moves forward"
        self.now = moment

    def move(self, **delta: float) -> None:
        self.now += timedelta(**delta)
