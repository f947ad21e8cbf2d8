"""What every chart is made of: its tables, its figure, the shared layout and colours."""

from dataclasses import dataclass, field
from typing import Any

from escalations.models import Escalation
from insights.selectors import Filters

TIER_COLOURS = {1: "#9aa3b2", 2: "#2456c9", 3: "#d98b1a", 4: "#b42318"}
TIER_NAMES = {1: "1 autonomous", 2: "2 flagged", 3: "3 escalated", 4: "4 halt"}
PALETTE = [
    "#2456c9",
    "#d98b1a",
    "#0b6b3a",
    "#b42318",
    "#5b3cc4",
    "#0e7490",
    "#a16207",
    "#be185d",
    "#4b5563",
    "#65a30d",
]
REASONS = dict(Escalation.Reason.choices)
# A reliability diagram's point needs this many judged escalations in its bin (the table
# lists every bin): a share of 2 or 3 is noise that draws the eye.
DIAGRAM_MIN_JUDGED = 5


@dataclass
class Column:
    key: str  # the CSV header
    label: str  # the page's header
    kind: str = "int"  # int, text, pct (a share 0-1), rate, seconds, float, date


@dataclass
class Table:
    key: str  # the CSV file's name
    caption: str
    columns: list[Column]
    rows: list[list[Any]]


@dataclass
class Chart:
    key: str
    title: str
    description: str
    tables: list[Table]
    figures: list[dict] = field(default_factory=list)
    # What an empty chart says, when "no data" would mislead (a range with activity but
    # none of what the chart counts).
    empty: str = ""

    @property
    def figure_items(self) -> list[tuple[str, dict]]:
        """(element id, figure) pairs, for json_script."""
        return [(f"figure-{self.key}-{i}", figure) for i, figure in enumerate(self.figures)]

    @property
    def is_empty(self) -> bool:
        return not any(table.rows for table in self.tables)


def chart_layout(y_title: str, x_title: str = "", **extra: Any) -> dict:
    layout = {
        "margin": {"l": 64, "r": 16, "t": 40, "b": 56},
        "height": 320,
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        # Above the plot, never over it: plotly grows the top margin to fit it.
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "xaxis": {"title": {"text": x_title}, "gridcolor": "#eef0f4", "automargin": True},
        "yaxis": {
            "title": {"text": y_title},
            "gridcolor": "#eef0f4",
            "rangemode": "tozero",
            "automargin": True,
        },
    }
    layout.update(extra)
    return layout


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def time_layout(f: Filters, y_title: str, **extra: Any) -> dict:
    """A layout whose x axis is the filter's periods (weekly ticks sit on the weeks' Mondays)."""
    layout = chart_layout(y_title, period_label(f), **extra)
    if f.by_week:
        periods = [p.isoformat() for p in f.periods()]
        layout["xaxis"].update(tickvals=periods, tickformat="%d %b")
    return layout


def period_label(f: Filters) -> str:
    return "Week starting (UTC)" if f.by_week else "Day (UTC)"


def series_key(agent: str, domain: str) -> str:
    return f"{agent} · {domain}"


# ---------------------------------------------------------------- charts


def format_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 90:
        return f"{value:.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.0f} min"
    if value < 36 * 3600:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"
