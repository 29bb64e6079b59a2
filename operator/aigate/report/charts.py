"""One chart per metric and rollout attempt: values over time against the approved
threshold, as inline SVG from matplotlib's SVG backend (no display, no pyplot state).

The threshold lines carry the id `<chart>-threshold-min|max`, so a reader (or a test) can
find them; failed and inconclusive measurements are marked. A long series is downsampled
for the picture only (every failed and inconclusive point is kept, and each bucket keeps
its lowest and highest value): the JSON report and the tables keep every measurement.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
from matplotlib import dates as mdates
from matplotlib.figure import Figure

from aigate.report.model import Point, Series, StageRun, parse_time

MAX_POINTS_PER_TRACK = 240
_TRACK_STYLE = {"canary": "#1f77b4", "stable": "#2ca02c"}
_SVG_START = re.compile(r"<svg\b")
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)


@dataclass(frozen=True)
class Chart:
    chart_id: str
    metric: str
    svg: str
    points_total: int
    points_drawn: int


def downsample(points: Sequence[Point], limit: int = MAX_POINTS_PER_TRACK) -> list[Point]:
    """At most about `limit` points: every non-pass point, and the lowest and highest value
    of each of limit/2 equal buckets (in time order)."""
    if len(points) <= limit:
        return list(points)
    keep: set[int] = {i for i, p in enumerate(points) if p.verdict != "Pass" or p.value is None}
    buckets = max(1, limit // 2)
    size = len(points) / buckets
    for b in range(buckets):
        members = [
            i for i in range(int(b * size), int((b + 1) * size)) if points[i].value is not None
        ]
        if members:
            keep.add(min(members, key=lambda i: points[i].value))
            keep.add(max(members, key=lambda i: points[i].value))
    return [points[i] for i in sorted(keep)]


def render_chart(chart_id: str, series: Series, stages: Sequence[StageRun] = ()) -> Chart:
    figure = Figure(figsize=(7.5, 2.4), dpi=72)  # fixed margins: constrained layout is slow
    figure.subplots_adjust(left=0.09, right=0.985, top=0.96, bottom=0.13)
    axes = figure.add_subplot()
    drawn = 0
    for track in sorted({p.track for p in series.points}):
        points = downsample([p for p in series.points if p.track == track])
        drawn += len(points)
        _plot_track(axes, track, points)
    for bound, kind in ((series.min, "min"), (series.max, "max")):
        if bound is not None:
            line = axes.axhline(bound, color="#d62728", linestyle="--", linewidth=1.2)
            line.set_gid(f"{chart_id}-threshold-{kind}")
            line.set_label(f"threshold {kind} {bound:g}")
    for stage in stages:
        when = parse_time(stage.started_at)
        if when is not None:
            axes.axvline(when, color="#999999", linewidth=0.6, linestyle=":")
            axes.annotate(
                stage.name,
                (when, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color="#555555",
                va="top",
                rotation=0,
                xytext=(2, -2),
                textcoords="offset points",
            )
    axes.set_ylabel(series.metric, fontsize=8)
    axes.tick_params(labelsize=7)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    axes.grid(alpha=0.25)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="best")
    return Chart(chart_id, series.metric, _svg(figure, chart_id), len(series.points), drawn)


def _plot_track(axes: object, track: str, points: Sequence[Point]) -> None:
    color = _TRACK_STYLE.get(track, "#7f7f7f")
    timed = [(parse_time(p.time), p) for p in points]
    timed = [(t, p) for t, p in timed if t is not None]
    values = [(t, p.value) for t, p in timed if p.value is not None]
    if values:
        xs, ys = zip(*values, strict=True)
        # a line without per-point markers: each marker is an SVG element of its own
        axes.plot(xs, ys, color=color, linewidth=1, label=track)
    fails = [(t, p.value) for t, p in timed if p.verdict == "Fail" and p.value is not None]
    if fails:
        xs, ys = zip(*fails, strict=True)
        axes.plot(
            xs,
            ys,
            linestyle="none",
            marker="x",
            color="#d62728",
            markersize=6,
            label=f"{track} fail",
        )
    unknown = [t for t, p in timed if p.verdict == "Inconclusive"]
    if unknown:  # drawn on the bottom edge: no value to place them by
        axes.plot(
            unknown,
            [0.02] * len(unknown),
            linestyle="none",
            marker="|",
            color="#ff7f0e",
            markersize=8,
            transform=axes.get_xaxis_transform(),
            label=f"{track} inconclusive",
        )


def _svg(figure: Figure, chart_id: str) -> str:
    buffer = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id, "svg.id": chart_id}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    start = _SVG_START.search(text)
    text = text[start.start() :] if start else text  # drop the XML prolog and DOCTYPE
    return _METADATA.sub("", text, count=1)  # RDF boilerplate: bytes an auditor never sees
