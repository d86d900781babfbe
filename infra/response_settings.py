"""RESPONSE_TARGETS: `severity=duration` pairs, comma-separated (`critical=5m,high=30m`);
a duration is a number with `s`, `m`, `h` or `d`. Severities left out keep the product's
targets (domain/response.py)."""

from __future__ import annotations

import re
from datetime import timedelta

from domain.values import Severity

_DURATION = re.compile(r"^([0-9]{1,6}(?:\.[0-9]{1,6})?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_MOST = timedelta(days=365)


def parse_duration(text: str) -> timedelta:
    found = _DURATION.match(text.strip().lower())
    if found is None:
        raise ValueError(f"{text.strip()!r} is not a duration such as 90s, 15m, 4h or 2d")
    seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if not 0 < seconds <= _MOST.total_seconds():
        raise ValueError(f"{text.strip()!r} must be more than 0 and at most 365d")
    return timedelta(seconds=seconds)


def parse_response_targets(text: str) -> dict[str, float]:
    """Severity -> target in seconds; raises ValueError naming every bad entry."""
    targets: dict[str, float] = {}
    problems: list[str] = []
    known = ", ".join(s.value for s in Severity)
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, equals, duration = entry.partition("=")
        name = name.strip().lower()
        if not equals:
            problems.append(f"{entry!r} is not severity=duration")
            continue
        if name not in {s.value for s in Severity}:
            problems.append(f"{name!r} is not a severity ({known})")
            continue
        if name in targets:
            problems.append(f"{name!r} is given twice")
            continue
        try:
            targets[name] = parse_duration(duration).total_seconds()
        except ValueError as error:
            problems.append(f"{name}: {error}")
    if problems:
        raise ValueError("; ".join(problems))
    return targets
