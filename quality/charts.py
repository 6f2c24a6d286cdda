"""Charts as inline SVG drawn on the server: nothing to download, nothing to run in the browser.

Each function takes plain rows and returns safe SVG markup with a <title> per mark (hover shows the value)
and role="img" with an aria-label; the page puts the same rows in a table beside it.
"""

from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#4f6d7a", "#c0392b", "#2e8b57", "#d08c2a", "#6c5b7b", "#3b8ea5", "#a0522d", "#7a9e3a", "#b5527e", "#5d6d7e"]
WIDTH = 640
BAR_HEIGHT = 22


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _svg(height: int, body: list[str], label: str, width: int = WIDTH) -> SafeString:
    return mark_safe(  # noqa: S308 - every text below goes through escape()
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(label)}" class="chart">' + "".join(body) + "</svg>"
    )


def _left_margin(names: Sequence[str]) -> int:
    """Room for the longest category name (about 6.5 px a character at 12 px), within limits."""
    return int(min(300, max(90, 6.5 * max((len(str(n)) for n in names), default=0) + 12)))


def _clip(name: str, left: int) -> str:
    limit = int((left - 12) / 6.5)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def hbar(rows: Sequence[tuple[str, float]], *, label: str, colors: Sequence[str] | None = None) -> SafeString:
    """Horizontal bars, one per (name, value)."""
    if not rows:
        return _svg(30, ['<text x="4" y="20" class="muted">No data yet</text>'], label)
    top = max(v for _, v in rows) or 1
    left, right = _left_margin([n for n, _ in rows]), 70
    span = WIDTH - left - right
    body = []
    for i, (name, value) in enumerate(rows):
        y = 4 + i * (BAR_HEIGHT + 6)
        w = max(span * value / top, 1 if value else 0)
        fill = colors[i] if colors else color(0)
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{escape(_clip(str(name), left))}</text>"
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}" rx="3" fill="{fill}">'
            f"<title>{escape(str(name))}: {_fmt(value)}</title></rect>"
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{_fmt(value)}</text>'
        )
    return _svg(8 + len(rows) * (BAR_HEIGHT + 6), body, label)


def stacked(
    categories: Sequence[str], series: Sequence[str], values: dict[tuple[str, str], float], *, label: str
) -> SafeString:
    """One horizontal bar per category, split into series (shares of the category's total), with a legend."""
    if not categories:
        return _svg(30, ['<text x="4" y="20">No data yet</text>'], label)
    left, right = _left_margin(categories), 60
    span = WIDTH - left - right
    body = []
    for i, category in enumerate(categories):
        y = 4 + i * (BAR_HEIGHT + 6)
        total = sum(values.get((category, s), 0) for s in series) or 1
        x = float(left)
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{escape(_clip(str(category), left))}</text>"
        )
        for j, name in enumerate(series):
            value = values.get((category, name), 0)
            if not value:
                continue
            w = span * value / total
            body.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}" fill="{color(j)}">'
                f"<title>{escape(str(category))} · {escape(name)}: {_fmt(value)} ({value / total:.0%})</title></rect>"
            )
            x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + 15}" font-size="12">{_fmt(total)}</text>')
    y = 8 + len(categories) * (BAR_HEIGHT + 6)
    x = 10.0
    for j, name in enumerate(series):
        if x > WIDTH - 120:
            x, y = 10.0, y + 18
        body.append(
            f'<rect x="{x:.0f}" y="{y}" width="10" height="10" fill="{color(j)}"/>'
            f'<text x="{x + 14:.0f}" y="{y + 9}" font-size="11">{escape(name[:20])}</text>'
        )
        x += 18 + 7 * min(len(name), 20)
    return _svg(y + 20, body, label)


def line(
    points: Sequence[tuple[str, float]],
    *,
    label: str,
    forecast: Sequence[tuple[str, float]] = (),
    y_max: float | None = None,
    percent: bool = False,
) -> SafeString:
    """A line over ordered points (x labels are shown first and last), an optional dashed forecast after it."""
    if not points:
        return _svg(30, ['<text x="4" y="20">No data yet</text>'], label)
    everything = list(points) + list(forecast)
    height, left, bottom, top_pad = 200, 56, 28, 10
    top = y_max if y_max is not None else max(v for _, v in everything) or 1
    span_x = WIDTH - left - 20
    n = max(len(everything) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + span_x * i / n, top_pad + (height - bottom - top_pad) * (1 - v / top)

    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{WIDTH - 20}" y2="{height - bottom}" stroke="#ccd"/>']
    for tick in (0, 0.5, 1):
        _, y = xy(0, top * tick)
        text = f"{top * tick:.0%}" if percent else _fmt(top * tick if top < 10 else round(top * tick))
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{text}</text>')
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, (_, v) in enumerate(points)))
    body.append(f'<polyline points="{path}" fill="none" stroke="{color(0)}" stroke-width="2"/>')
    for i, (name, v) in enumerate(points):
        x, y = xy(i, v)
        shown = f"{v:.0%}" if percent else _fmt(v)
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color(0)}"><title>{escape(name)}: {shown}</title></circle>'
        )
    if forecast:
        start = len(points) - 1
        chain = [xy(start, points[-1][1])] + [xy(start + 1 + i, v) for i, (_, v) in enumerate(forecast)]
        body.append(
            '<polyline points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in chain)
            + f'" fill="none" stroke="{color(1)}" stroke-width="2" stroke-dasharray="5 4"/>'
        )
        x, y = chain[-1]
        body.append(
            f'<text x="{x - 4:.1f}" y="{y - 6:.1f}" text-anchor="end" font-size="11">'
            f"{escape(forecast[-1][0])} (forecast)</text>"
        )
    body.append(f'<text x="{left}" y="{height - 8}" font-size="11">{escape(points[0][0])}</text>')
    if len(points) > 1:
        body.append(
            f'<text x="{left + span_x * (len(points) - 1) / n:.1f}" y="{height - 8}" text-anchor="end" '
            f'font-size="11">{escape(points[-1][0])}</text>'
        )
    return _svg(height, body, label)
