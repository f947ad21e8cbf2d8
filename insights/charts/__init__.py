"""The insights page's charts: each a table of numbers (shown, and exported as CSV) and a
plotly figure drawn from the same numbers. Figures are plain dicts (plotly's JSON schema);
the browser draws them with the plotly.js that the plotly package ships."""

from collections.abc import Callable

from insights.selectors import Filters

from .base import Chart, Column, Table, format_seconds
from .budget import budget_chart
from .drift import DRIFT_TABLE, drift_table
from .machine import machine_chart
from .quality import calibration_chart, recommended_chart
from .reviewers import reviewer_chart
from .timing import timing_chart
from .volume import rate_chart, reason_chart, tier_chart

__all__ = [
    "CHARTS",
    "DRIFT_TABLE",
    "TABLES",
    "Chart",
    "Column",
    "Filters",
    "Table",
    "all_charts",
    "budget_chart",
    "calibration_chart",
    "drift_table",
    "format_seconds",
    "machine_chart",
    "rate_chart",
    "reason_chart",
    "recommended_chart",
    "reviewer_chart",
    "table_by_key",
    "tier_chart",
    "timing_chart",
]

CHARTS: dict[str, Callable[[Filters], Chart]] = {
    "rate": rate_chart,
    "reasons": reason_chart,
    "tiers": tier_chart,
    "timing": timing_chart,
    "recommended": recommended_chart,
    "calibration": calibration_chart,
    "machine": machine_chart,
    "budget": budget_chart,
    "reviewers": reviewer_chart,
}


def all_charts(f: Filters) -> list[Chart]:
    return [build(f) for build in CHARTS.values()]


# Which chart holds each table (the CSV export builds only that chart).
TABLES = {
    "escalation-rate": "rate",
    "escalations-by-reason": "reasons",
    "escalations-by-tier": "tiers",
    "time-to-decision": "timing",
    "recommended-option": "recommended",
    "calibration-summary": "calibration",
    "calibration-bins": "calibration",
    "machine-agreement": "machine",
    "budget-use": "budget",
    "reviewer-load": "reviewers",
}


def table_by_key(f: Filters, key: str) -> Table | None:
    chart = TABLES.get(key)
    if chart is None:
        return None
    return next(table for table in CHARTS[chart](f).tables if table.key == key)
