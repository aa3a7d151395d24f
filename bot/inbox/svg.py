"""Charts drawn on the server as inline SVG: a line chart for trends, a bar chart for statistics.

No JavaScript and no chart library. Every chart is built as an :mod:`xml.etree.ElementTree`
tree and serialised by it, so each label, title and hover text is escaped as text, never
markup. The strict CSP allows no ``style`` attributes; colour, dashes and sizes are SVG
presentation attributes. Series differ by marker shape and dash pattern as well as colour,
and every chart has ``role="img"`` with a ``<title>`` and ``<desc>``; the pages put a table with
the same numbers right below it.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 40, 40
INK, GRID, MUTED = "#1d2330", "#d5d9e0", "#5a6270"
CHILD, CASEWORKER, FALL = "#1f5f8b", "#8b4a1f", "#b00020"
# Characters XML 1.0 cannot carry: a label holding one would make the page unparseable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ID = re.compile(r"[^A-Za-z0-9_-]")

SeriesKind = Literal["child", "caseworker"]


@dataclass(frozen=True, slots=True)
class Point:
    """One value at one moment; ``y`` is ``None`` for a check-in with every item skipped."""

    x: float
    y: float | None
    label: str  # hover text, e.g. "03.02.2025: score 6"
    marked: bool = False  # a flagged fall


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    kind: SeriesKind
    points: Sequence[Point]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float | None  # None: suppressed or no data; ``text`` says which
    text: str


def text(value: str) -> str:
    """``value`` without the control characters XML cannot hold (the rest stays as it is)."""
    return _NOT_XML.sub("", value)


def safe_id(value: str) -> str:
    return _ID.sub("-", value)


def line_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    series: Sequence[Series],
    y_range: tuple[float, float],
    x_labels: Sequence[tuple[float, str]],
    legend_fall: str,
) -> Markup:
    """A line chart of ``series`` over time (``x`` in seconds); gaps where ``y`` is None."""
    svg = _root(chart_id, title, desc)
    low, high = y_range
    xs = [p.x for s in series for p in s.points] + [x for x, _ in x_labels]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 0.0)

    def px(x: float) -> float:
        if x_high == x_low:  # one moment (one check-in): the middle
            return LEFT + (WIDTH - LEFT - RIGHT) / 2
        return LEFT + (x - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def py(y: float) -> float:
        span = (high - low) or 1.0
        return HEIGHT - BOTTOM - (y - low) / span * (HEIGHT - TOP - BOTTOM)

    _y_axis(svg, low, high, py)
    axis = ET.SubElement(svg, "g", {"class": "x-axis", "fill": MUTED, "font-size": "11"})
    for i, (x, label) in enumerate(x_labels):
        # The outer labels grow inwards, so a date at either edge is never cut off.
        anchor = "middle"
        if len(x_labels) > 1 and i in (0, len(x_labels) - 1):
            anchor = "start" if i == 0 else "end"
        _text(axis, px(x), HEIGHT - BOTTOM + 16, label, anchor=anchor)
    for s in series:
        colour = CHILD if s.kind == "child" else CASEWORKER
        group = ET.SubElement(svg, "g", {"class": f"series series-{s.kind}"})
        for run in _runs(s.points):
            if len(run) > 1:
                ET.SubElement(group, "polyline", _line_attrs(s.kind, colour)).set(
                    "points", " ".join(f"{px(p.x):.1f},{py(p.y or 0):.1f}" for p in run)
                )
        for p in s.points:
            if p.y is not None:
                marker = _marker(group, s.kind, px(p.x), py(p.y), colour)
                marker.set("data-value", f"{p.y:g}")
                ET.SubElement(marker, "title").text = text(p.label)
            if p.marked:
                y = py(p.y) if p.y is not None else HEIGHT - BOTTOM
                fall = _triangle(group, px(p.x), y + 9, "fall-mark")
                ET.SubElement(fall, "title").text = text(f"{legend_fall}: {p.label}")
    _legend(svg, series, legend_fall, any(p.marked for s in series for p in s.points))
    return _serialise(svg)


def bar_chart(*, chart_id: str, title: str, desc: str, bars: Sequence[Bar]) -> Markup:
    """Vertical bars with their value written above them; a missing value leaves a gap."""
    svg = _root(chart_id, title, desc)
    values = [b.value for b in bars if b.value is not None]
    high = _nice_ceiling(max(values)) if values else 1.0

    def py(y: float) -> float:
        return HEIGHT - BOTTOM - y / high * (HEIGHT - TOP - BOTTOM)

    _y_axis(svg, 0.0, high, py)
    slot = (WIDTH - LEFT - RIGHT) / max(len(bars), 1)
    width = min(40.0, slot * 0.7)
    group = ET.SubElement(svg, "g", {"class": "bars", "font-size": "11"})
    for i, b in enumerate(bars):
        middle = LEFT + slot * (i + 0.5)
        _text(group, middle, HEIGHT - BOTTOM + 16, b.label, anchor="middle", fill=MUTED)
        if b.value is None:
            _text(group, middle, HEIGHT - BOTTOM - 4, b.text, anchor="middle", fill=MUTED)
            continue
        top = py(b.value)
        attrs = {"class": "bar", "x": f"{middle - width / 2:.1f}", "y": f"{top:.1f}"}
        attrs |= {"width": f"{width:.1f}", "height": f"{HEIGHT - BOTTOM - top:.1f}"}
        rect = ET.SubElement(group, "rect", attrs | {"fill": CHILD, "data-value": f"{b.value:g}"})
        ET.SubElement(rect, "title").text = text(f"{b.label}: {b.text}")
        _text(group, middle, top - 4, b.text, anchor="middle", fill=INK)
    return _serialise(svg)


def _root(chart_id: str, title: str, desc: str) -> ET.Element:
    chart_id = safe_id(chart_id)
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "class": "chart",
            "id": chart_id,
            "role": "img",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "width": "100%",
            "preserveAspectRatio": "xMinYMin meet",
            "aria-labelledby": f"{chart_id}-title {chart_id}-desc",
            "font-family": "system-ui, sans-serif",
        },
    )
    ET.SubElement(svg, "title", {"id": f"{chart_id}-title"}).text = text(title)
    ET.SubElement(svg, "desc", {"id": f"{chart_id}-desc"}).text = text(desc)
    return svg


def _serialise(svg: ET.Element) -> Markup:
    # ElementTree escapes &, < and > in text and quotes in attributes: the result is safe.
    return Markup(ET.tostring(svg, encoding="unicode", short_empty_elements=True))  # noqa: S704


def _y_axis(svg: ET.Element, low: float, high: float, py: Callable[[float], float]) -> None:
    axis = ET.SubElement(svg, "g", {"class": "y-axis", "fill": MUTED, "font-size": "11"})
    step = _nice_ceiling((high - low) / 5) if high > low else 1.0
    tick = math.ceil(low / step) * step
    while tick <= high + 1e-9:
        y = f"{py(tick):.1f}"
        ET.SubElement(
            axis,
            "line",
            {"x1": str(LEFT), "x2": str(WIDTH - RIGHT), "y1": y, "y2": y, "stroke": GRID},
        )
        _text(axis, LEFT - 6, py(tick) + 4, f"{tick:g}", anchor="end")
        tick += step


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n that is at least ``value`` (axis steps, maxima)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value - 1e-9:
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _runs(points: Sequence[Point]) -> list[list[Point]]:
    """Consecutive points with a value: a skipped check-in breaks the line, not joins it."""
    runs: list[list[Point]] = [[]]
    for p in points:
        if p.y is None:
            runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


def _line_attrs(kind: SeriesKind, colour: str) -> dict[str, str]:
    attrs = {"fill": "none", "stroke": colour, "stroke-width": "2", "class": f"line-{kind}"}
    if kind == "caseworker":
        attrs["stroke-dasharray"] = "6 4"
    return attrs


def _marker(parent: ET.Element, kind: SeriesKind, x: float, y: float, colour: str) -> ET.Element:
    if kind == "child":
        return ET.SubElement(
            parent,
            "circle",
            {"class": "point point-child", "cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": "4"}
            | {"fill": colour},
        )
    return ET.SubElement(
        parent,
        "rect",
        {"class": "point point-caseworker", "x": f"{x - 4:.1f}", "y": f"{y - 4:.1f}"}
        | {"width": "8", "height": "8", "fill": "#ffffff", "stroke": colour, "stroke-width": "2"},
    )


def _triangle(parent: ET.Element, x: float, y: float, css: str) -> ET.Element:
    """A downward triangle centred on (x, y): a fall, told by shape as well as colour."""
    d = f"M{x - 5:.1f},{y - 4:.1f} L{x + 5:.1f},{y - 4:.1f} L{x:.1f},{y + 5:.1f} Z"
    return ET.SubElement(parent, "path", {"class": css, "d": d, "fill": FALL})


def _legend(svg: ET.Element, series: Sequence[Series], fall_label: str, show_fall: bool) -> None:
    legend = ET.SubElement(svg, "g", {"class": "legend", "font-size": "12", "fill": INK})
    x = float(LEFT)
    for s in series:
        colour = CHILD if s.kind == "child" else CASEWORKER
        line = ET.SubElement(legend, "line", _line_attrs(s.kind, colour))
        line.attrib |= {"x1": f"{x:.1f}", "x2": f"{x + 24:.1f}", "y1": "16", "y2": "16"}
        _marker(legend, s.kind, x + 12, 16, colour).set("class", f"legend-{s.kind}")
        x = _text(legend, x + 30, 20, s.name) + 16
    if show_fall:
        _triangle(legend, x + 6, 16, "legend-fall")
        _text(legend, x + 16, 20, fall_label)


def _text(
    parent: ET.Element,
    x: float,
    y: float,
    value: str,
    *,
    anchor: str = "start",
    fill: str | None = None,
) -> float:
    """Add a text; returns a rough right edge (for laying out the legend)."""
    attrs = {"x": f"{x:.1f}", "y": f"{y:.1f}", "text-anchor": anchor}
    if fill is not None:
        attrs["fill"] = fill
    ET.SubElement(parent, "text", attrs).text = text(value)
    return x + 7 * len(value)
