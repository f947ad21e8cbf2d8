"""Who decides how much."""

from typing import Any

from insights import selectors, stats
from insights.selectors import Filters

from .base import Chart, Column, Table, chart_layout, format_seconds


def reviewer_chart(f: Filters) -> Chart:
    hists = selectors.reviewer_histograms(f)
    rows: list[list[Any]] = sorted(
        ([name, sum(h), stats.quantile(h, 0.5)] for name, h in hists.items()),
        key=lambda r: (-r[1], r[0]),
    )
    table = Table(
        "reviewer-load",
        "Decisions and median time per reviewer",
        [
            Column("reviewer", "Reviewer", "text"),
            Column("decisions", "Decisions"),
            Column("median_seconds", "Median time", "seconds"),
        ],
        rows,
    )
    figure = {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": [r[0] for r in rows][::-1],
                "x": [r[1] for r in rows][::-1],
                "text": [f"{r[1]} · median {format_seconds(r[2])}" for r in rows][::-1],
                "textposition": "auto",
                "marker": {"color": "#5b3cc4"},
                "name": "Decisions",
            }
        ],
        "layout": chart_layout("", "Decisions", height=max(220, 60 + 34 * len(rows))),
    }
    return Chart(
        "reviewers",
        "Reviewer load",
        "Human decisions per reviewer; time from their claim (or, unclaimed, from creation) to the decision.",
        [table],
        [figure] if rows else [],
    )
