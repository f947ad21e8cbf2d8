"""The drift report's table."""

from insights import selectors

from .base import Column, Table

DRIFT_TABLE = "drift"


def drift_table(report: selectors.DriftReport) -> Table:
    """Every agent's numbers for this week's drift test (drifting ones first)."""
    rows = [
        [
            row.agent,
            row.result.escalations,
            row.result.exposure,
            row.result.rate,
            row.result.baseline_escalations,
            row.result.baseline_exposure,
            row.result.baseline_rate,
            row.result.p_value,
            "drifting"
            if row.result.is_drifting
            else ("normal" if row.result.p_value is not None else "too little volume"),
        ]
        for row in sorted(report.rows, key=lambda r: (not r.result.is_drifting, r.agent))
    ]
    return Table(
        DRIFT_TABLE,
        f"This week ({report.week_start.isoformat()} to {report.today.isoformat()}) against the four weeks before",
        [
            Column("agent", "Agent", "text"),
            Column("escalations", "Escalations"),
            Column("gate_checks", "Gate checks"),
            Column("rate", "Rate", "rate"),
            Column("baseline_escalations", "Before: escalations"),
            Column("baseline_gate_checks", "Before: gate checks"),
            Column("baseline_rate", "Before: rate", "rate"),
            Column("p_value", "p", "pvalue"),
            Column("status", "Status", "text"),
        ],
        rows,
    )
