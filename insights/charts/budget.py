"""How much of their daily budgets the agents use."""

from insights import selectors
from insights.selectors import Filters

from .base import (
    Chart,
    Column,
    Table,
    chart_layout,
    ratio,
)


def budget_chart(f: Filters) -> Chart:
    daily = selectors.daily_escalations_by_agent(f)
    budgets = selectors.budgets(daily)
    rows = []
    for agent in sorted(daily):
        days = daily[agent]
        budget = budgets.get(agent, 0)
        mean = sum(days) / len(days)
        rows.append(
            [
                agent,
                budget,
                len(days),
                sum(days),
                mean,
                max(days),
                ratio(mean, budget),
                ratio(max(days), budget),
                sum(1 for d in days if d > budget),
            ]
        )
    table = Table(
        "budget-use",
        "Escalation budget use per agent (days with escalations)",
        [
            Column("agent", "Agent", "text"),
            Column("daily_budget", "Budget / day"),
            Column("active_days", "Days active"),
            Column("escalations", "Escalations"),
            Column("mean_per_day", "Mean / day", "float1"),
            Column("peak_day", "Busiest day"),
            Column("mean_use", "Mean use", "pct"),
            Column("peak_use", "Peak use", "pct"),
            Column("days_over_budget", "Days over"),
        ],
        rows,
    )
    pct = lambda v: round(100 * v, 1) if v is not None else None  # noqa: E731
    traces = [
        {
            "type": "bar",
            "name": name,
            "x": [r[0] for r in rows],
            "y": [pct(r[index]) for r in rows],
            "text": [f"{pct(r[index]):.0f}%" if r[index] is not None else "" for r in rows],
            "textposition": "outside",
            "cliponaxis": False,
            "marker": {"color": colour},
        }
        for name, index, colour in (("Mean day", 6, "#9db5ea"), ("Busiest day", 7, "#2456c9"))
    ]
    layout = chart_layout("% of daily budget", "Agent", barmode="group")
    layout["margin"]["r"] = 60  # room for the budget line's label
    layout["shapes"] = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": 100,
            "y1": 100,
            "line": {"color": "#b42318", "dash": "dash", "width": 1.5},
        }
    ]
    layout["annotations"] = [
        {
            "xref": "paper",
            "x": 1,
            "y": 100,
            "text": "budget",
            "showarrow": False,
            "xanchor": "left",
            "yanchor": "middle",
            "font": {"color": "#b42318"},
        }
    ]
    return Chart(
        "budget",
        "Budget use",
        "Escalations per day against each agent's daily budget (over budget is shown, never refused).",
        [table],
        [{"data": traces, "layout": layout}] if rows else [],
    )
