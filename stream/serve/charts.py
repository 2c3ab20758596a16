"""Charts rendered on the server as SVG: no chart library, no script, nothing fetched by the browser.

Colours follow the video overlay (stream/annotate.py): female pink, male blue, unknown grey; the eight age
groups run along one sequential palette (viridis), young to old.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape

# The overlay's own colours (BGR there), so the page and the video agree.
from stream.annotate import _FEMALE, _MALE, _UNKNOWN
from stream.types import AGE_GROUPS


def _hex(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"#{r:02x}{g:02x}{b:02x}"


FEMALE, MALE, UNKNOWN = _hex(_FEMALE), _hex(_MALE), _hex(_UNKNOWN)
GENDER_COLOURS: dict[str, str] = {"female": FEMALE, "male": MALE, "unknown": UNKNOWN}
AGE_COLOURS: dict[str, str] = dict(zip(AGE_GROUPS, (
    "#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")))
_FONT = 'font-family="system-ui,sans-serif" fill="#334"'
_TEXT = _FONT + ' font-size="11"'


def age_bars(probs: Sequence[float], colour: str, *, highlight: Sequence[int] | None = None, title: str = "") -> str:
    """Vertical bars of the 8 age-group probabilities (the upload page's chart for one face).

    Args:
        probs: 8 probabilities in :data:`~stream.types.AGE_GROUPS` order.
        colour: Bar colour (the face's gender colour).
        highlight: Indexes of the groups shown on the overlay, one or the two of a range (drawn solid, the others
            lighter); None: all solid (the age is undecided).
        title: Accessible name of the chart.
    """
    width, height, left, bottom, top = 336, 150, 8, 26, 16
    slot = (width - 2 * left) / len(AGE_GROUPS)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart age-bars" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title or "age group probabilities")}">']
    plot = height - bottom - top
    parts.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - left}" y2="{height - bottom}" '
                 'stroke="#99a" stroke-width="1"/>')
    for i, (group, p) in enumerate(zip(AGE_GROUPS, probs)):
        p = max(0.0, min(1.0, float(p)))
        bar = plot * p
        x = left + i * slot + 4
        opacity = "1" if highlight is None or i in highlight else "0.45"
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{height - bottom - bar:.1f}" width="{slot - 8:.1f}" '
                     f'height="{bar:.1f}" rx="2" fill="{colour}" fill-opacity="{opacity}">'
                     f'<title>{group}: {p * 100:.1f}%</title></rect>')
        parts.append(f'<text x="{x + (slot - 8) / 2:.1f}" y="{height - bottom - bar - 3:.1f}" text-anchor="middle" '
                     f'{_TEXT}>{p * 100:.0f}%</text>')
        parts.append(f'<text x="{x + (slot - 8) / 2:.1f}" y="{height - 8}" text-anchor="middle" {_TEXT}>{group}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_timeline(counts: Sequence[tuple[float, dict[str, int]]], keys: Sequence[str], colours: dict[str, str],
                     *, bucket_s: float, title: str, subtitle: str = "") -> str:
    """Stacked bars over time: ``counts`` is ``(bucket start epoch s, {key: count})`` in time order.

    Args:
        counts: One entry per bucket, oldest first (empty buckets included).
        keys: The stacked series, bottom first, with a legend entry each.
        colours: Colour of each key.
        bucket_s: Bucket width, for the axis labels.
        title: Chart title, drawn and used as its accessible name.
        subtitle: A second, smaller line under the title (e.g. the window).
    """
    width, left, right = 640, 36, 10
    # The legend first: its entries wrap onto more lines rather than run off the chart.
    legend: list[tuple[float, int, str]] = []
    legend_x, line = float(left), 0
    for key in keys:
        step = 14 + 6.5 * len(key) + 14
        if legend_x + step > width - right and legend_x > left:
            legend_x, line = float(left), line + 1
        legend.append((legend_x, line, key))
        legend_x += step
    top = 46 if subtitle else 30
    bottom = 44 + 16 * line
    height = top + 166 + bottom
    plot_w, plot_h = width - left - right, height - top - bottom
    step = max(1, math.ceil(max([sum(c.values()) for _, c in counts] + [1]) / 4))
    peak = step * math.ceil(max([sum(c.values()) for _, c in counts] + [1]) / step)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart timeline" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" {_FONT} font-weight="600" font-size="13">{escape(title)}</text>']
    if subtitle:
        parts.append(f'<text x="{left}" y="32" {_TEXT} fill-opacity="0.75">{escape(subtitle)}</text>')
    for tick in range(0, peak + 1, step):
        y = top + plot_h - plot_h * tick / peak
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e3e6ee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_TEXT}>{tick}</text>')
    if not any(sum(bucket.values()) for _, bucket in counts):
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" {_TEXT}>'
                     "no people counted yet: a person is counted when they leave the view</text>")
    slot = plot_w / max(len(counts), 1)
    label_every = max(1, len(counts) // 6)
    for i, (start, bucket) in enumerate(counts):
        x = left + i * slot + slot * 0.12
        y = top + plot_h
        for key in keys:
            n = bucket.get(key, 0)
            if n <= 0:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.76:.1f}" height="{h:.1f}" '
                         f'fill="{colours[key]}"><title>{escape(key)}: {n}</title></rect>')
        if i % label_every == 0:
            stamp = time.strftime("%H:%M:%S" if bucket_s < 60 else "%H:%M", time.localtime(start))
            parts.append(f'<text x="{x + slot * 0.38:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                         f'{_TEXT}>{stamp}</text>')
    for x, row, key in legend:
        y = top + plot_h + 24 + 16 * row
        parts.append(f'<rect x="{x:.0f}" y="{y}" width="10" height="10" rx="2" fill="{colours[key]}"/>')
        parts.append(f'<text x="{x + 14:.0f}" y="{y + 9}" {_TEXT}>{escape(key)}</text>')
    parts.append("</svg>")
    return "".join(parts)
