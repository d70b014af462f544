"""``tenure report``'s page: one self-contained HTML file (inline CSS and SVG; no script, no font, no CDN) with
the weekly figures of :mod:`engine.report` as bar charts and a table, for HR and IT to read together.

Every bar is an SVG ``rect`` of class ``bar`` carrying ``data-chart``, ``data-series`` and ``data-value``, with a
``<title>`` a reader sees on hover; a chart with nothing to show says so in words instead of drawing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from engine.report import Report, Week

__all__ = ["Series", "bar_chart", "render_html"]

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 240, 56, 36, 16


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    values: list[float | None]


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def bar_chart(chart: str, title: str, unit: str, labels: list[str], series: list[Series]) -> str:
    """Grouped bars, one group per label, negative values below the zero line (e.g. access before day one)."""
    values = [v for s in series for v in s.values if v is not None]
    if not any(values):
        return (
            f'<figure class="chart" data-chart="{chart}"><figcaption>{escape(title)}</figcaption>'
            '<p class="empty">No data in this period.</p></figure>'
        )
    top, bottom = max(0.0, *values), min(0.0, *values)
    span = (top - bottom) or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_TOP - PAD_BOTTOM

    def y(value: float) -> float:
        return PAD_TOP + (top - value) / span * plot_h

    group_w = plot_w / max(1, len(labels))
    bar_w = max(2.0, group_w * 0.8 / len(series))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - 8}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="axis"/>',
        f'<text x="{PAD_LEFT - 6}" y="{y(top) + 4:.1f}" class="tick" text-anchor="end">{_number(top)}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{y(0) + 4:.1f}" class="tick" text-anchor="end">0</text>',
    ]
    if bottom < 0:
        parts.append(
            f'<text x="{PAD_LEFT - 6}" y="{y(bottom):.1f}" class="tick" text-anchor="end">{_number(bottom)}</text>'
        )
    for index, label in enumerate(labels):
        x0 = PAD_LEFT + index * group_w + group_w * 0.1
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" class="tick" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
        for number, s in enumerate(series):
            value = s.values[index]
            if value is None or value == 0:
                continue
            y_top, y_bottom = sorted((y(value), y(0)))
            parts.append(
                f'<rect class="bar" data-chart="{chart}" data-series="{escape(s.name)}" '
                f'data-value="{_number(value)}" x="{x0 + number * bar_w:.1f}" y="{y_top:.1f}" '
                f'width="{bar_w - 1:.1f}" height="{max(1.0, y_bottom - y_top):.1f}" fill="{s.colour}">'
                f"<title>{escape(s.name)}, week from {escape(label)}: {_number(value)} {escape(unit)}</title></rect>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{s.colour}"></i>{escape(s.name)}</span>' for s in series
    )
    return (
        f'<figure class="chart" data-chart="{chart}"><figcaption>{escape(title)} '
        f'<small>({escape(unit)})</small></figcaption>{"".join(parts)}<div class="legend">{legend}</div></figure>'
    )


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def _charts(weeks: list[Week]) -> list[str]:
    labels = [w.label for w in weeks]
    return [
        bar_chart(
            "access",
            "Time to access: hire → account active (negative: ready before day one)",
            "hours",
            labels,
            [
                Series("p50", "#2b6cb0", [w.access.median_hours for w in weeks]),
                Series("p90", "#90cdf4", [w.access.p90_hours for w in weeks]),
            ],
        ),
        bar_chart(
            "revoke",
            "Time to revoke: termination → account disabled",
            "hours",
            labels,
            [
                Series("p50", "#c05621", [w.revoke.median_hours for w in weeks]),
                Series("p90", "#fbd38d", [w.revoke.p90_hours for w in weeks]),
            ],
        ),
        bar_chart(
            "review",
            "Access reviews: items decided by a reviewer, and of those revoked",
            "%",
            labels,
            [
                Series("completion", "#2f855a", [_percent(w.completion_rate) for w in weeks]),
                Series("revocation", "#9ae6b4", [_percent(w.revocation_rate) for w in weeks]),
            ],
        ),
        bar_chart(
            "failures",
            "Failed runs and mass-change brake trips",
            "count",
            labels,
            [
                Series("failed runs", "#c53030", [float(w.failed_runs) for w in weeks]),
                Series("brake trips", "#6b46c1", [float(w.brake_trips) for w in weeks]),
            ],
        ),
    ]


def _table(weeks: list[Week]) -> str:
    def cell(value: float | None, suffix: str) -> str:
        return "–" if value is None else f"{_number(value)}{suffix}"

    rows = "".join(
        f"<tr><td>{w.start:%Y-%m-%d}</td><td>{cell(w.access.median_hours, ' h')}</td>"
        f"<td>{cell(w.access.p90_hours, ' h')}</td><td>{w.access.count}</td>"
        f"<td>{cell(w.revoke.median_hours, ' h')}</td><td>{cell(w.revoke.p90_hours, ' h')}</td>"
        f"<td>{w.revoke.count}</td><td>{cell(_percent(w.completion_rate), ' %')}</td>"
        f"<td>{cell(_percent(w.revocation_rate), ' %')}</td><td>{w.failed_runs}</td><td>{w.brake_trips}</td></tr>"
        for w in weeks
    )
    return (
        "<table><thead><tr><th>week from</th><th>access p50</th><th>access p90</th><th>hires</th>"
        "<th>revoke p50</th><th>revoke p90</th><th>leavers</th><th>review completion</th><th>revocation</th>"
        f"<th>failed runs</th><th>brake trips</th></tr></thead><tbody>{rows}</tbody></table>"
    )


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1a202c;max-width:1500px}
h1{font-size:20px;margin:0 0 4px} p.meta{color:#4a5568;margin:0 0 16px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px}
figure.chart{margin:0;border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px}
figcaption{font-weight:600;margin-bottom:4px} svg{width:100%;height:auto}
.axis{stroke:#a0aec0} .tick{font-size:11px;fill:#4a5568} .empty{color:#718096}
.legend{font-size:12px} .key{margin-right:12px} .key i{display:inline-block;width:10px;height:10px;margin-right:4px}
table{border-collapse:collapse;margin-top:16px;font-size:13px} td,th{border:1px solid #e2e8f0;padding:3px 8px}
"""


def render_html(report: Report) -> str:
    """The whole page (module docstring)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tenure report</title>'
        f"<style>{STYLE}</style></head><body><h1>Tenure: access for HR and IT</h1>"
        f'<p class="meta">Weeks since {report.since:%Y-%m-%d}, generated {report.generated_at:%Y-%m-%d %H:%M} UTC. '
        "Time to access and time to revoke as defined by <code>tenure kpi</code>.</p>"
        f'<div class="grid">{"".join(_charts(report.weeks))}</div>{_table(report.weeks)}</body></html>'
    )
