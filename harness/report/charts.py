"""Charts as inline SVG, written in Python: the report needs no script, font or network.

Three kinds: `time_chart` (stacked panels on one time axis, with vertical marks across all of
them), `xy_chart` (a relation, e.g. latency against requests/s, with limit lines) and
`sparkline` (a trend in a table cell). Text is escaped here; callers pass plain strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif"
GRID = "#e5e7eb"
AXIS = "#6b7280"
MARK = "#7c3aed"
CHAR_W = 6.2  # average width of an 11px character, for laying out labels

Point = tuple[float, float | None]
Scale = Callable[[float], float]  # data value to SVG coordinate


@dataclass(frozen=True)
class Line:
    """One series of a panel.

    Args:
        step: hold each value until the next point (counts: pods, replicas).
        bars: draw one-second bars instead of a line (failures).
        dash: an SVG dash pattern ("4 3") to tell similar lines apart.
    """

    label: str
    points: Sequence[Point]
    color: str
    step: bool = False
    bars: bool = False
    dash: str = ""


@dataclass(frozen=True)
class Panel:
    """One band of a time chart: a title, a unit for its axis and its lines."""

    title: str
    unit: str
    lines: Sequence[Line]


@dataclass(frozen=True)
class Marker:
    """A moment drawn across every panel (a fault injected, a rollout started)."""

    t: float
    label: str


@dataclass(frozen=True)
class Limit:
    """A horizontal or vertical reference line of an xy chart (an SLO limit, the knee)."""

    value: float
    label: str
    color: str = "#dc2626"


def _svg_start(width: int, height: float, title: str, left: float) -> list[str]:
    """The opening of a chart: the svg element, its accessible title and the visible one."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'style="{FONT};font-size:11px;background:#fff">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="15" font-size="13" font-weight="600">{escape(title)}</text>',
    ]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= `value` (axis tops)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(f * power for f in (1, 2, 2.5, 5, 10) if f * power >= value * (1 - 1e-9))


def ticks(top: float, count: int = 4) -> list[float]:
    """Round axis ticks from 0 up to at least `top`, about `count` steps apart."""
    step = nice_ceiling(top / count) if top > 0 else 1.0
    steps = math.ceil(top / step - 1e-9) if top > 0 else 1
    return [step * i for i in range(max(1, steps) + 1)]


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m{seconds % 60:02d}s"


def _time_step(span: float, max_ticks: int = 10) -> float:
    return next(
        (
            s
            for s in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800)
            if span / s <= max_ticks
        ),
        3600,
    )


def time_chart(
    panels: Sequence[Panel],
    markers: Sequence[Marker],
    *,
    start: float,
    end: float,
    title: str,
    width: int = 960,
    panel_height: int = 110,
) -> str:
    """Panels stacked on one time axis (seconds from `start`), markers across all of them.

    Example:
        >>> svg = time_chart([Panel("requests/s", "req/s", [Line("rps", [(0, 5), (1, 6)],
        ...                   "#2563eb")])], [Marker(0.5, "fault")], start=0, end=2, title="t")
        >>> svg.startswith("<svg")
        True
    """
    end = max(end, start + 1)
    left, right, gap, legend = 56, 16, 18, 18
    plot_w = width - left - right
    rows = _marker_rows(markers, start, end, plot_w)
    band = 14 * max(1, len(rows)) + 6 if markers else 0
    top = 24 + band
    height = top + len(panels) * (panel_height + legend + gap) + 22

    def x(t: float) -> float:
        return left + (t - start) / (end - start) * plot_w

    parts = _svg_start(width, height, title, left)
    y = top
    for panel in panels:
        parts += _panel(panel, x, left, y + legend, plot_w, panel_height, start, end)
        y += panel_height + legend + gap
    bottom = y - gap
    tick = _time_step(end - start)
    t = 0.0
    while start + t <= end + 1e-9:
        px = x(start + t)
        parts.append(
            f'<text x="{px:.1f}" y="{bottom + 14}" text-anchor="middle" fill="{AXIS}">'
            f"{_duration(t)}</text>"
        )
        t += tick
    for row, placed in enumerate(rows):
        for marker in placed:
            px = x(marker.t)
            label_y = 24 + 14 * row + 10
            label = _clip(marker.label, 28)
            # A label that would run off the right edge is written to the left of its line.
            flip = px + 3 + CHAR_W * len(label) > width
            anchor = f'x="{px - 3:.1f}" text-anchor="end"' if flip else f'x="{px + 3:.1f}"'
            parts.append(
                f"<g><title>{escape(marker.label)} (+{_duration(marker.t - start)})</title>"
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{label_y + 2}" y2="{bottom}" '
                f'stroke="{MARK}" stroke-dasharray="3 3" stroke-width="1"/>'
                f'<text {anchor} y="{label_y}" fill="{MARK}">{escape(label)}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _marker_rows(
    markers: Sequence[Marker], start: float, end: float, plot_w: float, max_rows: int = 4
) -> list[list[Marker]]:
    """Markers placed on label rows so their labels do not overlap (the last row takes the
    rest: a label may then overlap, the line and its tooltip are still there)."""
    rows: list[list[Marker]] = []
    ends: list[float] = []
    for marker in sorted(markers, key=lambda m: m.t):
        if not start <= marker.t <= end:
            continue
        px = (marker.t - start) / (end - start) * plot_w
        span = px + 6 + CHAR_W * len(_clip(marker.label, 28))
        row = next((i for i, edge in enumerate(ends) if edge < px), None)
        if row is None and len(rows) < max_rows:
            rows.append([])
            ends.append(0.0)
            row = len(rows) - 1
        row = len(rows) - 1 if row is None else row
        rows[row].append(marker)
        ends[row] = max(ends[row], span)
    return rows


def _panel(
    panel: Panel,
    x: Scale,
    left: float,
    top: float,
    plot_w: float,
    height: float,
    start: float,
    end: float,
) -> list[str]:
    values = [v for line in panel.lines for _, v in line.points if v is not None]
    levels = ticks(max(values, default=0.0), 2)
    ymax = levels[-1]

    def y(v: float) -> float:
        return top + height - v / ymax * height

    parts = [f'<text x="{left}" y="{top - 6}" font-weight="600">{escape(panel.title)}</text>']
    lx = left + CHAR_W * len(panel.title) + 16
    for line in panel.lines:
        stroke = f'stroke="{line.color}"' + (
            f' stroke-dasharray="{line.dash}"' if line.dash else ""
        )
        parts.append(
            f'<line x1="{lx:.1f}" x2="{lx + 14:.1f}" y1="{top - 10}" y2="{top - 10}" '
            f'{stroke} stroke-width="{6 if line.bars else 2}"/>'
            f'<text x="{lx + 18:.1f}" y="{top - 6}" fill="{AXIS}">{escape(line.label)}</text>'
        )
        lx += 18 + CHAR_W * len(line.label) + 14
    for level in levels:
        gy = y(level)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="{GRID}"/>'
            f'<text x="{left - 4}" y="{gy + 4:.1f}" text-anchor="end" fill="{AXIS}">'
            f"{_number(level)}</text>"
        )
    parts.append(
        f'<text x="12" y="{top + height / 2:.1f}" fill="{AXIS}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + height / 2:.1f})">{escape(panel.unit)}</text>'
    )
    if not values:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + height / 2:.1f}" '
            f'text-anchor="middle" fill="{AXIS}">nothing recorded</text>'
        )
    bar_w = max(1.0, plot_w / (end - start) * 0.8)
    for line in panel.lines:
        inside = [(t, v) for t, v in line.points if start <= t <= end]
        if line.bars:
            parts += [
                f'<rect x="{x(t):.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" '
                f'height="{top + height - y(v):.1f}" fill="{line.color}" opacity="0.8"/>'
                for t, v in inside
                if v
            ]
            continue
        for path in _paths(line, inside, x, y, end):
            dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
            parts.append(
                f'<path d="{path}" fill="none" stroke="{line.color}" stroke-width="1.8"{dash}/>'
            )
    return parts


def _paths(line: Line, points: Sequence[Point], x: Scale, y: Scale, end: float) -> list[str]:
    """SVG path data for a line, broken where a value is missing."""
    paths, current = [], ""
    last_y = None
    for t, v in points:
        if v is None:
            if current:
                paths.append(current)
            current, last_y = "", None
            continue
        px, py = x(t), y(v)
        if not current:
            current = f"M{px:.1f},{py:.1f}"
        elif line.step:
            current += f"H{px:.1f}V{py:.1f}"
        else:
            current += f"L{px:.1f},{py:.1f}"
        last_y = py
    if current:
        if line.step and last_y is not None:
            current += f"H{x(end):.1f}"
        paths.append(current)
    return paths


def xy_chart(
    lines: Sequence[Line],
    *,
    title: str,
    x_label: str,
    y_label: str,
    hlines: Sequence[Limit] = (),
    vlines: Sequence[Limit] = (),
    point_labels: Sequence[str] = (),
    width: int = 460,
    height: int = 260,
) -> str:
    """Points joined in the order given (a load's steps), with dots and reference lines.

    Args:
        point_labels: text beside the first line's points, in order (e.g. "4 users").
    """
    left, right, top, bottom = 56, 16, 40, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [px for line in lines for px, _ in line.points] + [v.value for v in vlines]
    ys = [v for line in lines for _, v in line.points if v is not None]
    ys += [h.value for h in hlines]
    x_levels, y_levels = ticks(max(xs, default=0.0)), ticks(max(ys, default=0.0))
    xmax, ymax = x_levels[-1], y_levels[-1]

    def x(v: float) -> float:
        return left + v / xmax * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / ymax * plot_h

    parts = _svg_start(width, height, title, left)
    lx = float(left)
    for line in lines:
        parts.append(
            f'<circle cx="{lx + 4:.1f}" cy="{27}" r="3.5" fill="{line.color}"/>'
            f'<text x="{lx + 11:.1f}" y="31" fill="{AXIS}">{escape(line.label)}</text>'
        )
        lx += 24 + CHAR_W * len(line.label)
    for level in y_levels:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            f'stroke="{GRID}"/>'
            f'<text x="{left - 4}" y="{y(level) + 4:.1f}" text-anchor="end" fill="{AXIS}">'
            f"{_number(level)}</text>"
        )
    parts += [
        f'<text x="{x(level):.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="{AXIS}">'
        f"{_number(level)}</text>"
        for level in x_levels
    ]
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" '
        f'fill="{AXIS}">{escape(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2:.1f}" fill="{AXIS}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    for limit in hlines:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(limit.value):.1f}" '
            f'y2="{y(limit.value):.1f}" stroke="{limit.color}" stroke-dasharray="5 3"/>'
            f'<text x="{left + plot_w - 2}" y="{y(limit.value) - 4:.1f}" text-anchor="end" '
            f'fill="{limit.color}">{escape(limit.label)}</text>'
        )
    for limit in vlines:
        parts.append(
            f'<line x1="{x(limit.value):.1f}" x2="{x(limit.value):.1f}" y1="{top}" '
            f'y2="{top + plot_h}" stroke="{limit.color}" stroke-dasharray="5 3"/>'
            f'<text x="{x(limit.value) + 3:.1f}" y="{top + 10}" fill="{limit.color}">'
            f"{escape(limit.label)}</text>"
        )
    for line in lines:
        known = [(px, py) for px, py in line.points if py is not None]
        if len(known) > 1:
            path = "M" + "L".join(f"{x(px):.1f},{y(py):.1f}" for px, py in known)
            parts.append(f'<path d="{path}" fill="none" stroke="{line.color}" stroke-width="1.8"/>')
        parts += [
            f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3.5" fill="{line.color}"/>'
            for px, py in known
        ]
    labelled = [(px, py) for px, py in lines[0].points if py is not None] if lines else []
    for (px, py), text in zip(labelled, point_labels, strict=False):
        parts.append(
            f'<text x="{x(px) + 5:.1f}" y="{y(py) - 5:.1f}" fill="{AXIS}" font-size="10">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(
    values: Sequence[float | None], *, worse: bool = False, width: int = 110, height: int = 22
) -> str:
    """A small trend line of a figure over runs; the last point red when it got `worse`."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return ""
    low = min(v for _, v in known)
    high = max(v for _, v in known)
    span = (high - low) or 1.0
    step = (width - 6) / max(1, len(values) - 1)

    def point(i: int, v: float) -> tuple[float, float]:
        return 3 + i * step, height - 3 - (v - low) / span * (height - 6)

    coords = [point(i, v) for i, v in known]
    path = "M" + "L".join(f"{px:.1f},{py:.1f}" for px, py in coords)
    last_x, last_y = coords[-1]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="trend">'
        f'<path d="{path}" fill="none" stroke="{AXIS}" stroke-width="1.5"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="3" '
        f'fill="{"#dc2626" if worse else "#2563eb"}"/></svg>'
    )
