"""The dashboard's chart of the last hour, drawn here as inline SVG: no script, no library, nothing from elsewhere
(the console's Content-Security-Policy allows none), and it shows without JavaScript."""

from __future__ import annotations

import time
from collections.abc import Sequence

from markupsafe import Markup, escape

from sentq.stats import Minute

WIDTH, HEIGHT = 720, 170
LEFT, RIGHT, TOP = 52, 8, 10
RATE_H = 100  # the texts/s bars
FAIL_TOP, FAIL_H = 126, 24  # the failures strip under them


def _nice(value: float) -> float:
    """The axis' top: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step >= 10 and step / 10 >= value:
        step /= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def _clock(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


def last_hour_svg(minutes: Sequence[Minute]) -> Markup:
    """Texts/s per minute (bars) over the failures per minute (red bars, chunks that failed), oldest left; each bar
    has its numbers in a tooltip and in data- attributes."""
    n = max(len(minutes), 1)
    slot = (WIDTH - LEFT - RIGHT) / n
    top_rate = _nice(max((m.texts / 60 for m in minutes), default=0.0))
    top_fail = max((m.chunks_failed for m in minutes), default=0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        'aria-label="texts scored per second and chunks failed, minute by minute, over the last hour" '
        'data-chart="last-hour">',
        f'<line x1="{LEFT}" y1="{TOP + RATE_H}" x2="{WIDTH - RIGHT}" y2="{TOP + RATE_H}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}" class="grid"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" class="tick" text-anchor="end">{top_rate:,g}/s</text>',
        f'<text x="{LEFT - 6}" y="{TOP + RATE_H}" class="tick" text-anchor="end">0</text>',
        f'<text x="{LEFT - 6}" y="{FAIL_TOP + FAIL_H - 6}" class="tick bad" text-anchor="end">failed</text>',
        f'<line x1="{LEFT}" y1="{FAIL_TOP + FAIL_H}" x2="{WIDTH - RIGHT}" y2="{FAIL_TOP + FAIL_H}" class="axis"/>',
    ]
    for i, m in enumerate(minutes):
        x = LEFT + i * slot
        rate = m.texts / 60
        h = RATE_H * rate / top_rate
        tip = escape(
            f"{_clock(m.start)} UTC: {m.texts:,} texts scored ({rate:,.1f}/s), {m.chunks_failed:,} chunk(s) failed"
            + (f", {m.texts_failed:,} text(s) failed alone" if m.texts_failed else "")
        )
        parts.append(
            f'<g data-minute="{int(m.start)}" data-texts="{m.texts}" data-chunks-failed="{m.chunks_failed}">'
            f"<title>{tip}</title>"
            f'<rect x="{x + 0.5:.1f}" y="{TOP:.1f}" width="{max(slot - 1, 1):.1f}" height="{FAIL_TOP + FAIL_H - TOP}" '
            'class="hover"/>'
        )
        if m.texts:
            parts.append(
                f'<rect x="{x + 0.5:.1f}" y="{TOP + RATE_H - h:.1f}" width="{max(slot - 1, 1):.1f}" '
                f'height="{max(h, 1):.1f}" class="rate"/>'
            )
        if m.chunks_failed:
            fh = FAIL_H * m.chunks_failed / top_fail
            parts.append(
                f'<rect x="{x + 0.5:.1f}" y="{FAIL_TOP + FAIL_H - fh:.1f}" width="{max(slot - 1, 1):.1f}" '
                f'height="{max(fh, 1):.1f}" class="fail"/>'
            )
        parts.append("</g>")
    if minutes:
        parts.append(f'<text x="{LEFT}" y="{HEIGHT - 2}" class="tick">{_clock(minutes[0].start)} UTC</text>')
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 2}" class="tick" text-anchor="end">now</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
