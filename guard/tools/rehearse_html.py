"""`guard rehearse --html FILE`: the report as one self-contained page (inline SVG, no assets,
no script), so it can be mailed or attached to a change ticket and opened offline."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any, Final

from guard.tools.rehearse_replay import REFUSALS
from guard.tools.rehearse_report import WAIT_SHARES, to_text

__all__ = ["svg_plot", "to_html"]

_W: Final = 560
_H: Final = 220
_PAD: Final = 40
_MARK: Final = "#d62728"
_COLOURS: Final = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd")
_STYLE: Final = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}tr:nth-child(even){background:#f4f4f4}"
    "svg{background:#fff;border:1px solid #ddd;margin:4px}pre{background:#f8f8f8;padding:1em}"
    ".plots{display:flex;flex-wrap:wrap}"
)

Series = tuple[str, Sequence[tuple[float, float]]]


def svg_plot(
    title: str,
    series: Sequence[Series],
    marks: Sequence[tuple[str, float, bool]] = (),
    labels: tuple[str, str] = ("", ""),
) -> str:
    """Lines (with dots) of each series; marks are (label, value, vertical) guide lines."""
    points = [p for _, pts in series for p in pts]
    xs = [p[0] for p in points] + [v for _, v, vertical in marks if vertical]
    ys = [p[1] for p in points] + [v for _, v, vertical in marks if not vertical]
    x_max, y_max = max(xs, default=1.0) or 1.0, max(ys, default=1.0) or 1.0

    def sx(x: float) -> float:
        return _PAD + (_W - 2 * _PAD) * x / x_max

    def sy(y: float) -> float:
        return _H - _PAD - (_H - 2 * _PAD) * y / y_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">',
        f"<title>{escape(title)}</title>",
        _text(_PAD, 16, title, "#222"),
        _line(_PAD, sy(0), _W - _PAD, sy(0), "#999"),
        _line(_PAD, sy(0), _PAD, _PAD, "#999"),
        _text(_W - _PAD, _H - 8, f"{labels[0]} (max {x_max:g})", "#222", "end"),
        _text(4, _PAD - 6, f"{labels[1]} (max {y_max:.4g})", "#222"),
    ]
    for i, (name, pts) in enumerate(series):
        colour = _COLOURS[i % len(_COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" points="{path}"/>')
        parts += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{colour}"/>' for x, y in pts
        ]
        parts.append(_text(_W - _PAD, 30 + 14 * i, name, colour, "end"))
    for label, value, vertical in marks:
        if vertical:
            right = sx(value) > _W - 3 * _PAD  # keep the label inside the plot
            parts += [_line(sx(value), sy(0), sx(value), _PAD, _MARK, True),
                      _text(sx(value) + (-3 if right else 3), _PAD + 12, label, _MARK,
                            "end" if right else "start")]  # fmt: skip
        else:
            parts += [_line(_PAD, sy(value), _W - _PAD, sy(value), _MARK, True),
                      _text(_PAD + 3, sy(value) - 3, label, _MARK)]  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _text(x: float, y: float, text: str, colour: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" fill="{colour}" text-anchor="{anchor}">'
        f"{escape(text)}</text>"
    )


def _line(x1: float, y1: float, x2: float, y2: float, colour: str, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="4"' if dashed else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}"{dash}/>'
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _knee_plots(doc: dict[str, Any]) -> list[str]:
    plots = []
    for knee in doc["knees"]:
        marks: list[tuple[str, float, bool]] = []
        if knee["knee_n"] is not None:
            marks.append((f"knee {knee['knee_n']:g}", knee["knee_n"], True))
        if knee["max_active"] is not None:
            marks.append((f"max_active {knee['max_active']}", knee["max_active"], True))
        scope = "site" if knee["kind"] == "site" else f"{knee['kind']} {knee['name']}"
        title = f"{scope}: throughput vs concurrency"
        curve = [(n, x) for n, x in knee["curve"]]
        plots.append(
            svg_plot(title, [("X(N), steady windows", curve)], marks, ("N in flight", "req/s"))
        )
    return plots


def _timeline_plots(doc: dict[str, Any]) -> list[str]:
    plots = []
    for scope in [*doc["backends"], *[r for r in doc["rules"] if r["max_active"]]]:
        line = [(float(t), float(v)) for t, v in enumerate(scope["timeline"])]
        marks = (
            []
            if scope["max_active"] is None
            else [(f"max {scope['max_active']}", scope["max_active"], False)]
        )
        title = f"{scope['name']}: replayed peak active per second"
        plots.append(svg_plot(title, [("active", line)], marks, ("seconds", "active")))
    return plots


def _sweep_plot(doc: dict[str, Any]) -> list[str]:
    if "sweep" not in doc:
        return []
    rows = doc["sweep"]["rows"]
    series: list[Series] = [
        (key, [(float(r["max_active"]), float(r[key])) for r in rows])
        for key in ("admitted", "refused")
    ]
    return [
        svg_plot(
            f"sweep {doc['sweep']['target']}.max_active", series, (), ("max_active", "requests")
        )
    ]


def _rooms_table(doc: dict[str, Any]) -> str:
    if not doc["rooms"]:
        return ""
    head = ["room", "admit/s", "direct", "queued", "admitted", "longest line"]
    head += [f"{k} wait (s)" for k, _ in WAIT_SHARES] + ["left in line"]
    rows = [
        [
            r["name"], r["admit_rate"], r["shoppers_direct"], r["shoppers_queued"],
            r["shoppers_admitted"], r["longest_line"],
            *(r["wait_s"][k] for k, _ in WAIT_SHARES), r["requests_left_waiting"],
        ]
        for r in doc["rooms"]
    ]  # fmt: skip
    return f"<h2>Waiting rooms</h2>{_table(head, rows)}"


def to_html(doc: dict[str, Any]) -> str:
    rules = _table(
        ["rule", "max", "admitted", *REFUSALS, "queued", "peak", "at ceiling (s)"],
        [
            [
                r["name"],
                r["max_active"] or "-",
                r["admitted"],
                *(r["refused"][k] for k in REFUSALS),
                r["queued"],
                r["peak_active"],
                r["time_at_ceiling_s"],
            ]
            for r in doc["rules"]
        ],
    )
    backends = _table(
        ["backend", "max", "peak", ">= 90 % (s)"],
        [
            [b["name"], b["max_active"], b["peak_active"], b["time_near_ceiling_s"]]
            for b in doc["backends"]
        ],
    )
    plots = "".join(_knee_plots(doc) + _timeline_plots(doc) + _sweep_plot(doc))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>guard rehearse</title>"
        f"<style>{_STYLE}</style></head><body><h1>guard rehearse</h1>"
        f"<h2>Rules</h2>{rules}{_rooms_table(doc)}<h2>Backends</h2>{backends}"
        f'<h2>Plots</h2><div class="plots">{plots}</div>'
        f"<h2>Report</h2><pre>{escape(to_text(doc))}</pre></body></html>\n"
    )
