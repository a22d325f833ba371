"""The auditor page's charts as inline SVG, drawn on the server.

No JavaScript library and nothing to download (the machine may be offline, and the page lives
in the Airflow UI's iframe). Their size is bounded whatever the ledger's: bars per week, and the
time-to-complete scatter binned into a grid, each dot one cell of requests (darker: more).
"""

from __future__ import annotations

import html
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

from gdpr_erasure.ledger.export import GDPR_DEADLINE, Completion

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 36
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
#: Cells of the scatter: at most this many columns (time) and rows (days taken).
COLUMNS, ROWS = 120, 60
LIMIT_DAYS = GDPR_DEADLINE / timedelta(days=1)
BLUE, RED, GREY = "#3182ce", "#e53e3e", "#718096"


def _svg(body: str, label: str, chart_id: str) -> str:
    e = html.escape
    return (
        f'<svg id="{e(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="{e(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'style="max-width:{WIDTH}px;font:11px system-ui,sans-serif">{body}</svg>'
    )


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (axis maximum)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _y_axis(maximum: float, unit: str) -> str:
    parts = []
    for fraction in (0, 0.5, 1):
        y = TOP + PLOT_H * (1 - fraction)
        value = maximum * fraction
        text = f"{value:g}" if value < 10_000 else f"{value:,.0f}"
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{GREY}">{text}</text>'
        )
    parts.append(
        f'<text x="12" y="{TOP + PLOT_H / 2:.1f}" fill="{GREY}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + PLOT_H / 2:.1f})">{html.escape(unit)}</text>'
    )
    return "".join(parts)


def weekly_chart(weeks: Sequence[tuple[str, int]]) -> str:
    """Bars: requests completed per ISO week (``weeks`` from
    :func:`~gdpr_erasure.ledger.export.completions_per_week`)."""
    if not weeks:
        return '<p class="empty" id="chart-weekly-empty">No request was completed in this period.</p>'
    e = html.escape
    maximum = _nice_ceiling(max(count for _, count in weeks))
    step = PLOT_W / len(weeks)
    gap = min(2.0, step * 0.2)
    bars = []
    for index, (week, count) in enumerate(weeks):
        height = PLOT_H * count / maximum
        x = LEFT + index * step
        bars.append(
            f'<rect x="{x + gap / 2:.2f}" y="{TOP + PLOT_H - height:.2f}" width="{max(step - gap, 0.5):.2f}" '
            f'height="{height:.2f}" fill="{BLUE}"><title>{e(week)}: {count:,} completed</title></rect>'
        )
    labels = []
    every = max(1, math.ceil(len(weeks) / 8))
    for index in range(0, len(weeks), every):
        x = LEFT + (index + 0.5) * step
        labels.append(
            f'<text x="{x:.1f}" y="{TOP + PLOT_H + 16}" text-anchor="middle" fill="{GREY}">'
            f"{e(weeks[index][0])}</text>"
        )
    total = sum(count for _, count in weeks)
    label = f"Requests completed per ISO week: {total:,} in {len(weeks)} week(s)"
    return _svg(_y_axis(maximum, "requests") + "".join(bars) + "".join(labels), label, "chart-weekly")


def deadline_chart(completions: Sequence[Completion]) -> tuple[str, str]:
    """A scatter of each request's time to complete (received to completed, in days) against
    when it completed, with a line at the 30-day limit; and the same in a sentence: how many
    took longer, and their share."""
    timed = [(c.completed_at, c.duration) for c in completions if c.duration is not None]
    if not timed:
        return "", "No completed request in this period."
    e = html.escape
    days = [duration / timedelta(days=1) for _, duration in timed]
    late = sum(duration > GDPR_DEADLINE for _, duration in timed)
    sentence = (
        f"{late:,} of {len(timed):,} request(s) ({late / len(timed):.1%}) took longer than "
        f"{LIMIT_DAYS:g} days to complete; median {statistics.median(days):.1f} days, "
        f"longest {max(days):.1f} days."
    )
    top = _nice_ceiling(max(max(days), LIMIT_DAYS * 1.15))
    start = min(moment for moment, _ in timed)
    span = max((max(moment for moment, _ in timed) - start).total_seconds(), 1.0)
    columns = min(COLUMNS, max(1, math.ceil(span / 86_400)))
    cells: dict[bool, Counter[tuple[int, int]]] = {False: Counter(), True: Counter()}
    for (moment, duration), taken in zip(timed, days, strict=True):
        column = min(columns - 1, int((moment - start).total_seconds() / span * columns))
        row = min(ROWS - 1, max(0, int(taken / top * ROWS)))
        cells[duration > GDPR_DEADLINE][(column, row)] += 1
    busiest = max(max(c.values(), default=1) for c in cells.values())
    dots = []
    cell_w, cell_h = PLOT_W / columns, PLOT_H / ROWS
    for is_late, counter in cells.items():
        colour = RED if is_late else BLUE
        for (column, row), count in sorted(counter.items()):
            opacity = 0.35 + 0.65 * (math.log(count) / math.log(busiest) if busiest > 1 else 1)
            when = start + timedelta(seconds=(column + 0.5) / columns * span)
            dots.append(
                f'<circle cx="{LEFT + (column + 0.5) * cell_w:.1f}" '
                f'cy="{TOP + PLOT_H - (row + 0.5) * cell_h:.1f}" r="3" fill="{colour}" '
                f'fill-opacity="{opacity:.2f}"><title>{count:,} request(s) completed around '
                f"{e(when.date().isoformat())}, about {(row + 0.5) * top / ROWS:.1f} days each"
                f"{' (over the limit)' if is_late else ''}</title></circle>"
            )
    limit_y = TOP + PLOT_H * (1 - LIMIT_DAYS / top)
    limit = (
        f'<line id="deadline-line" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{limit_y:.1f}" y2="{limit_y:.1f}" '
        f'stroke="{RED}" stroke-dasharray="6 4"/>'
        # A white halo keeps the label readable over the dots.
        f'<text x="{LEFT + 4}" y="{limit_y - 4:.1f}" fill="{RED}" stroke="white" stroke-width="3" '
        f'paint-order="stroke">{LIMIT_DAYS:g}-day limit</text>'
    )
    end = start + timedelta(seconds=span)
    axis = (
        f'<text x="{LEFT}" y="{TOP + PLOT_H + 16}" fill="{GREY}">{e(start.date().isoformat())}</text>'
        f'<text x="{LEFT + PLOT_W}" y="{TOP + PLOT_H + 16}" text-anchor="end" fill="{GREY}">'
        f"{e(end.date().isoformat())}</text>"
        f'<text x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H + 30}" text-anchor="middle" fill="{GREY}">'
        "completed on</text>"
    )
    svg = _svg(
        _y_axis(top, "days to complete") + "".join(dots) + limit + axis,
        f"Time to complete per request against the {LIMIT_DAYS:g}-day limit. {sentence}",
        "chart-deadline",
    )
    return svg, sentence
