"""Charts drawn on the server as inline SVG: no chart library, no script, and nothing the
Content-Security-Policy has to allow (colours are presentation attributes and CSS
classes, never `style=`).

>>> from datetime import UTC, datetime
>>> from taskyard.entrypoints.ui.views import Bucket
>>> at = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
>>> svg = outcome_chart([Bucket(start=at, succeeded=3, dead=1, failed_attempts=2)], bucket_s=300)
>>> svg.count("<rect class=\\"bar-") == 3 and 'role="img"' in svg
True
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from taskyard.entrypoints.ui.views import Bucket

WIDTH = 720
HEIGHT = 200
PAD_LEFT = 44
PAD_BOTTOM = 24
PAD_TOP = 10
SERIES = (
    ("succeeded", "succeeded jobs"),
    ("failed_attempts", "failed attempts"),
    ("dead", "jobs that went dead"),
)


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1).

    >>> [_nice_max(v) for v in (0, 1, 3, 7, 12, 480)]
    [1, 1, 5, 10, 20, 500]
    """
    step = 1
    while True:
        for factor in (1, 2, 5):
            if value <= step * factor:
                return step * factor
        step *= 10


def outcome_chart(buckets: Sequence[Bucket], *, bucket_s: int) -> Markup:
    """Grouped bars per bucket: succeeded, failed attempts, dead; a labelled y axis."""
    peak = _nice_max(max((max(b.succeeded, b.failed_attempts, b.dead) for b in buckets), default=0))
    plot_w = WIDTH - PAD_LEFT - 4
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(1, len(buckets))
    bar_w = max(1.0, (slot - 4) / len(SERIES))
    parts: list[str] = []
    for tick in (0, peak // 2, peak) if peak > 1 else (0, peak):
        y = PAD_TOP + plot_h - plot_h * tick / peak
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    for index, bucket in enumerate(buckets):
        x0 = PAD_LEFT + index * slot + 2
        for offset, (field, _) in enumerate(SERIES):
            value: int = getattr(bucket, field)
            h = plot_h * value / peak
            parts.append(
                f'<rect class="bar-{field}" x="{x0 + offset * bar_w:.1f}" '
                f'y="{PAD_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
                f"<title>{escape(bucket.start.strftime('%H:%M'))} UTC: {value} "
                f"{escape(field.replace('_', ' '))}</title></rect>"
            )
        if len(buckets) <= 8 or index % 3 == 0:
            parts.append(
                f'<text class="axis" x="{x0:.1f}" y="{HEIGHT - 6}">'
                f"{escape(bucket.start.strftime('%H:%M'))}</text>"
            )
    minutes = bucket_s // 60
    summary = ", ".join(
        f"{sum(getattr(b, field) for b in buckets)} {label}" for field, label in SERIES
    )
    title = f"Outcomes per {minutes} minutes over the last {len(buckets) * minutes} minutes"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-title">{escape(title)}</title>'
        f'<desc id="chart-desc">{escape(summary)}</desc>'
        f"{''.join(parts)}</svg>"
    )
