"""How many escalations: the rate per agent, by reason, by tier."""

from insights import selectors
from insights.selectors import Filters

from .base import (
    PALETTE,
    REASONS,
    TIER_COLOURS,
    TIER_NAMES,
    Chart,
    Column,
    Table,
    period_label,
    ratio,
    series_key,
    time_layout,
)


def rate_chart(f: Filters) -> Chart:
    cells: dict = {}
    for row in selectors.activity_rows(f):
        key = (row["period"], row["agent__name"], row["domain"])
        cell = cells.setdefault(key, [0, 0, 0, 0])
        cell[0] += row["escalations"]
        cell[1] += row["gate_checks"]
        cell[2] += row["runs"]
        cell[3] += row["ungated_escalations"]
    # Per gate check: only the escalations that followed a gate call of their run.
    rows = [
        [period.isoformat(), agent, domain, e, u, g, r, ratio(e - u, g), ratio(e, r)]
        for (period, agent, domain), (e, g, r, u) in sorted(cells.items())
    ]
    ungated = sum(row[4] for row in rows)
    table = Table(
        "escalation-rate",
        "Escalations, gate checks and runs per period",
        [
            Column("period", period_label(f), "date"),
            Column("agent", "Agent", "text"),
            Column("domain", "Domain", "text"),
            Column("escalations", "Escalations"),
            Column("without_gate_call", "Without a gate call"),
            Column("gate_checks", "Gate checks"),
            Column("runs", "Runs"),
            Column("rate_per_gate_check", "Gated per gate check", "rate"),
            Column("rate_per_run", "Per run", "rate"),
        ],
        rows,
    )
    alerts = selectors.drift_alerts_sent(f)
    series = sorted({series_key(r[1], r[2]) for r in rows})
    periods = [p.isoformat() for p in f.periods()]
    figures = []
    for index, title in ((7, "Escalations after a gate call, per gate check"), (8, "Escalations per run")):
        by_key = {(r[0], series_key(r[1], r[2])): r[index] for r in rows}
        traces = [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": periods,
                "y": [by_key.get((p, name)) for p in periods],
                "line": {"color": PALETTE[i % len(PALETTE)], "width": 2},
                "connectgaps": False,
            }
            for i, name in enumerate(series)
        ]
        figures.append(
            {
                "data": traces,
                "layout": time_layout(f, title, **alert_marks(f, alerts)),
            }
        )
    sent = "; ".join(f"{agent} on {day:%-d %b}" for day, agent in alerts)
    return Chart(
        "rate",
        "Escalation rate over time",
        "Escalations (all tiers) per gate check and per run, per agent and domain. "
        "Runs count in their agent's domain; a gap means no gate checks or runs that period. "
        "Per gate check counts only escalations whose run asked the gate (run_id) in the 24 h "
        f"before: {ungated:,} escalation{'s' if ungated != 1 else ''} in this range had no gate "
        "call and are counted apart (Without a gate call)."
        + (f" Dotted red lines: drift alerts sent ({sent})." if alerts else ""),
        [table],
        figures,
    )


ALERT_COLOUR = "#b42318"


def alert_marks(f: Filters, alerts: list) -> dict:
    """Plotly shapes and annotations: a dotted line at the period of each drift alert sent,
    labelled with the agents alerted then."""
    by_period: dict[str, list[str]] = {}
    for day, agent in alerts:
        by_period.setdefault(f.period(day).isoformat(), []).append(agent)
    line = {"color": ALERT_COLOUR, "width": 1.5, "dash": "dot"}
    return {
        "shapes": [
            {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1, "line": line}
            for x in by_period
        ],
        "annotations": [
            {
                "x": x,
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "yanchor": "top",
                "xanchor": "left",
                "showarrow": False,
                "text": "drift: " + ", ".join(agents),
                "font": {"color": ALERT_COLOUR, "size": 11},
            }
            for x, agents in by_period.items()
        ],
    }


def _stacked(
    f: Filters, key: str, names: dict, colours: dict | None, csv: str, caption: str
) -> tuple[Table, dict]:
    counts = selectors.escalations_by_period(f, key)
    present = sorted(
        {k for (_, k) in counts}, key=lambda k: (list(names).index(k) if k in names else 99, str(k))
    )
    periods = f.periods()
    rows = (
        [
            [
                p.isoformat(),
                *(counts.get((p, k), 0) for k in present),
                sum(counts.get((p, k), 0) for k in present),
            ]
            for p in periods
        ]
        if present
        else []
    )
    table = Table(
        csv,
        caption,
        [
            Column("period", period_label(f), "date"),
            *(Column(str(k), names.get(k, str(k))) for k in present),
            Column("total", "Total"),
        ],
        rows,
    )
    traces = [
        {
            "type": "bar",
            "name": names.get(k, str(k)),
            "x": [p.isoformat() for p in periods],
            "y": [counts.get((p, k), 0) for p in periods],
            "marker": {"color": (colours or {}).get(k, PALETTE[i % len(PALETTE)])},
        }
        for i, k in enumerate(present)
    ]
    return table, {
        "data": traces,
        "layout": time_layout(f, "Escalations", barmode="stack"),
    }


def reason_chart(f: Filters) -> Chart:
    table, figure = _stacked(
        f, "reason", REASONS, None, "escalations-by-reason", "Escalations per period by reason"
    )
    return Chart(
        "reasons",
        "Escalations by reason",
        "Why agents asked, per period (all tiers).",
        [table],
        [figure],
    )


def tier_chart(f: Filters) -> Chart:
    table, figure = _stacked(
        f, "tier", TIER_NAMES, TIER_COLOURS, "escalations-by-tier", "Escalations per period by tier"
    )
    return Chart(
        "tiers",
        "Escalations by tier",
        "Tiers 1 and 2 were decided by the policy; 3 and 4 waited for a person.",
        [table],
        [figure],
    )
