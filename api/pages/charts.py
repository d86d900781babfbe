"""Charts drawn by the server as inline SVG: no script, no library, nothing from a CDN.

Geometry is written as SVG attributes and colours come from classes of pages.css (the
pages' Content-Security-Policy allows no inline style). Every chart is an image with a
title and a description for screen readers; the page shows its figures as a table too.
Text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

WIDTH, HEIGHT = 480, 250
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 30, 30
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_LABELS = 6
_RECT = Markup('<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>')


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # the class that colours it
    values: Sequence[float | None]


@dataclass(frozen=True)
class Unit:
    name: str
    seconds: float

    def of(self, seconds: float) -> float:
        return seconds / self.seconds


COUNT = Unit("incidents", 1)
_WHOLE = (1, 2, 5)


def time_unit(largest_seconds: float) -> Unit:
    """Minutes up to two hours, hours up to two days, days beyond."""
    if largest_seconds < 2 * 3600:
        return Unit("minutes", 60)
    if largest_seconds < 2 * 86_400:
        return Unit("hours", 3600)
    return Unit("days", 86_400)


def nice_top(largest: float, steps: Sequence[float] = (1, 2, 2.5, 5)) -> float:
    """The axis' top: four ticks of 1, 2, 2.5 or 5 times a power of ten (whole steps for
    counts), reaching at least `largest`."""
    if largest <= 0:
        return 4.0
    power = 10 ** math.floor(math.log10(largest / 4))
    step = next(s * power for s in (*steps, 10) if s * power >= largest / 4)
    return float(max(step, 1 if steps == _WHOLE else 0) * 4)


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def _frame(title: str, description: str, body: list[Markup]) -> Markup:
    slug = "".join(c if c.isalnum() else "-" for c in title.lower())
    return Markup(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t {}-d" '
        'xmlns="http://www.w3.org/2000/svg"><title id="{}-t">{}</title>'
        '<desc id="{}-d">{}</desc>{}</svg>').format(
        WIDTH, HEIGHT, slug, slug, slug, title, slug, description, Markup("").join(body))


def _y_axis(top: float, unit: Unit) -> list[Markup]:
    parts = []
    for n in range(5):
        y = f"{TOP + PLOT_H - PLOT_H * n / 4:.1f}"
        parts.append(Markup(
            '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
            '<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>').format(
            LEFT, WIDTH - RIGHT, y, y, LEFT - 6, f"{float(y) + 4:.1f}",
            _number(top * n / 4)))
    parts.append(Markup('<text class="axis" x="4" y="14" text-anchor="start">{}</text>')
                 .format(unit.name))
    return parts


def _x_labels(labels: Sequence[str], centre: list[float]) -> list[Markup]:
    every = max(1, math.ceil(len(labels) / MAX_LABELS))
    return [Markup('<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>').format(
                f"{x:.1f}", HEIGHT - BOTTOM + 18, label)
            for n, (label, x) in enumerate(zip(labels, centre, strict=True)) if n % every == 0]


def _slots(count: int) -> tuple[float, list[float]]:
    width = PLOT_W / max(count, 1)
    return width, [LEFT + width * (n + 0.5) for n in range(count)]


def stacked_bars(title: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """One bar per label, the series stacked in it (counts)."""
    totals = [sum(s.values[n] or 0 for s in series) for n in range(len(labels))]
    top = nice_top(max(totals, default=0), _WHOLE)
    width, centre = _slots(len(labels))
    body = _y_axis(top, COUNT)
    for n, x in enumerate(centre):
        base = 0.0
        for s in series:
            value = s.values[n] or 0
            if not value:
                continue
            height = PLOT_H * value / top
            y = TOP + PLOT_H - PLOT_H * base / top - height
            body.append(_RECT.format(s.css, f"{x - width * 0.35:.1f}", f"{y:.1f}",
                                     f"{width * 0.7:.1f}", f"{height:.1f}",
                                     f"{labels[n]}: {_number(value)} {s.name}"))
            base += value
    body += _x_labels(labels, centre)
    description = "; ".join(
        f"{label}: {_number(total)}" for label, total in zip(labels, totals, strict=True))
    return _frame(title, description or "no incidents", body)


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """One line per series of durations in seconds (a gap where a value is missing)."""
    largest = max((v for s in series for v in s.values if v is not None), default=0.0)
    unit = time_unit(largest)
    top = nice_top(unit.of(largest))
    _, centre = _slots(len(labels))
    body = _y_axis(top, unit)
    described = []
    for s in series:
        run: list[str] = []
        runs: list[list[str]] = [run]
        for n, value in enumerate(s.values):
            if value is None:
                run = []
                runs.append(run)
                continue
            y = TOP + PLOT_H - PLOT_H * unit.of(value) / top
            run.append(f"{centre[n]:.1f},{y:.1f}")
            body.append(Markup('<circle class="{}" cx="{}" cy="{}" r="3.5"><title>{}</title>'
                               '</circle>').format(
                s.css, f"{centre[n]:.1f}", f"{y:.1f}",
                f"{labels[n]}: {s.name} {_number(unit.of(value))} {unit.name}"))
        body += [Markup('<polyline class="{}" points="{}"/>').format(s.css, " ".join(points))
                 for points in runs if len(points) > 1]
        measured = [v for v in s.values if v is not None]
        described.append(f"{s.name}: {len(measured)} weeks measured")
    body += _x_labels(labels, centre)
    return _frame(title, "; ".join(described), body)


def bars(title: str, items: Sequence[tuple[str, float | None]]) -> Markup:
    """One bar per item, of durations in seconds (none for a missing value)."""
    largest = max((v for _, v in items if v is not None), default=0.0)
    unit = time_unit(largest)
    top = nice_top(unit.of(largest))
    width, centre = _slots(len(items))
    body = _y_axis(top, unit)
    for (label, value), x in zip(items, centre, strict=True):
        if value is None:
            continue
        height = PLOT_H * unit.of(value) / top
        body.append(_RECT.format("bar", f"{x - width * 0.3:.1f}",
                                 f"{TOP + PLOT_H - height:.1f}", f"{width * 0.6:.1f}",
                                 f"{height:.1f}",
                                 f"{label}: {_number(unit.of(value))} {unit.name}"))
    body += _x_labels([label for label, _ in items], centre)
    description = "; ".join(
        f"{label}: {'none' if v is None else _number(unit.of(v)) + ' ' + unit.name}"
        for label, v in items)
    return _frame(title, description, body)
