"""The insights page's charts: each a table of numbers (shown, and exported as CSV) and a
plotly figure drawn from the same numbers. Figures are plain dicts (plotly's JSON schema);
the browser draws them with the plotly.js that the plotly package ships."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from escalations.models import Escalation

from . import selectors, stats
from .selectors import Filters

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

    @property
    def figure_items(self) -> list[tuple[str, dict]]:
        """(element id, figure) pairs, for json_script."""
        return [(f"figure-{self.key}-{i}", figure) for i, figure in enumerate(self.figures)]

    @property
    def is_empty(self) -> bool:
        return not any(table.rows for table in self.tables)


def _layout(y_title: str, x_title: str = "", **extra: Any) -> dict:
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


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _time_layout(f: Filters, y_title: str, **extra: Any) -> dict:
    """A layout whose x axis is the filter's periods (weekly ticks sit on the weeks' Mondays)."""
    layout = _layout(y_title, _period_label(f), **extra)
    if f.by_week:
        periods = [p.isoformat() for p in f.periods()]
        layout["xaxis"].update(tickvals=periods, tickformat="%d %b")
    return layout


def _period_label(f: Filters) -> str:
    return "Week starting (UTC)" if f.by_week else "Day (UTC)"


def _series_key(agent: str, domain: str) -> str:
    return f"{agent} · {domain}"


# ---------------------------------------------------------------- charts


def rate_chart(f: Filters) -> Chart:
    cells: dict = {}
    for row in selectors.activity_rows(f):
        key = (row["period"], row["agent__name"], row["domain"])
        cell = cells.setdefault(key, [0, 0, 0])
        cell[0] += row["escalations"]
        cell[1] += row["gate_checks"]
        cell[2] += row["runs"]
    rows = [
        [period.isoformat(), agent, domain, e, g, r, _ratio(e, g), _ratio(e, r)]
        for (period, agent, domain), (e, g, r) in sorted(cells.items())
    ]
    table = Table(
        "escalation-rate",
        "Escalations, gate checks and runs per period",
        [
            Column("period", _period_label(f), "date"),
            Column("agent", "Agent", "text"),
            Column("domain", "Domain", "text"),
            Column("escalations", "Escalations"),
            Column("gate_checks", "Gate checks"),
            Column("runs", "Runs"),
            Column("rate_per_gate_check", "Per gate check", "rate"),
            Column("rate_per_run", "Per run", "rate"),
        ],
        rows,
    )
    series = sorted({_series_key(r[1], r[2]) for r in rows})
    periods = [p.isoformat() for p in f.periods()]
    figures = []
    for index, title in ((6, "Escalations per gate check"), (7, "Escalations per run")):
        by_key = {(r[0], _series_key(r[1], r[2])): r[index] for r in rows}
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
                "layout": _time_layout(f, title),
            }
        )
    return Chart(
        "rate",
        "Escalation rate over time",
        "Escalations (all tiers) per gate check and per run, per agent and domain. "
        "Runs count in their agent's domain; a gap means no gate checks or runs that period.",
        [table],
        figures,
    )


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
            Column("period", _period_label(f), "date"),
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
        "layout": _time_layout(f, "Escalations", barmode="stack"),
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


def timing_chart(f: Filters) -> Chart:
    by_tier = selectors.outcomes_by(f, "tier", histograms=True)
    hists = selectors.duration_histograms(by_tier)
    outcomes = {row["tier"]: row for row in by_tier}
    rows = []
    for tier in sorted(outcomes):
        o = outcomes[tier]
        claim = hists.get((tier, "claim"), [0] * stats.DURATION_BUCKETS)
        decide = hists.get((tier, "decide"), [0] * stats.DURATION_BUCKETS)
        rows.append(
            [
                tier,
                o["escalations"],
                o["claimed"],
                stats.quantile(claim, 0.5),
                stats.quantile(claim, 0.9),
                o["human_decided"],
                stats.quantile(decide, 0.5),
                stats.quantile(decide, 0.9),
                o["with_deadline"],
                o["within_deadline"],
                _ratio(o["within_deadline"], o["with_deadline"]),
            ]
        )
    table = Table(
        "time-to-decision",
        "Time to claim and to a human decision, per tier",
        [
            Column("tier", "Tier"),
            Column("escalations", "Escalations"),
            Column("claimed", "Claimed"),
            Column("claim_p50_seconds", "Claim p50", "seconds"),
            Column("claim_p90_seconds", "Claim p90", "seconds"),
            Column("human_decisions", "Human decisions"),
            Column("decision_p50_seconds", "Decision p50", "seconds"),
            Column("decision_p90_seconds", "Decision p90", "seconds"),
            Column("with_respond_by", "With respond_by"),
            Column("decided_within_respond_by", "Decided in time"),
            Column("share_within_respond_by", "Share in time", "pct"),
        ],
        rows,
    )
    measured = [r for r in rows if r[2] or r[5]]
    x = [TIER_NAMES.get(r[0], str(r[0])) for r in measured]
    minutes = lambda v: round(v / 60, 1) if v is not None else None  # noqa: E731
    traces = [
        {
            "type": "bar",
            "name": name,
            "x": x,
            "y": [minutes(r[index]) for r in measured],
            "text": [minutes(r[index]) for r in measured],
            "textposition": "outside",
            "cliponaxis": False,
            "marker": {"color": colour},
        }
        for name, index, colour in (
            ("Claim p50", 3, "#9db5ea"),
            ("Claim p90", 4, "#2456c9"),
            ("Decision p50", 6, "#f0c27b"),
            ("Decision p90", 7, "#d98b1a"),
        )
    ]
    figure = {"data": traces, "layout": _layout("Minutes", "Tier", barmode="group")}
    return Chart(
        "timing",
        "Time to claim and to decision",
        "From creation to the first claim, and to a person's decision, read from fixed-bucket "
        "histograms (p50/p90 interpolated within a bucket). Decided in time: decided by "
        "someone (not by the timeout) no later than its respond_by.",
        [table],
        [figure] if measured else [],
    )


def recommended_chart(f: Filters) -> Chart:
    rows = [
        [
            o["agent"],
            o["human_decided"],
            o["took_recommended"],
            _ratio(o["took_recommended"], o["human_decided"]),
        ]
        for o in sorted(selectors.outcomes_by(f, "agent__name"), key=lambda o: o["agent"])
        if o["human_decided"]
    ]
    table = Table(
        "recommended-option",
        "Human decisions that took the agent's recommended option",
        [
            Column("agent", "Agent", "text"),
            Column("human_decisions", "Human decisions"),
            Column("took_recommended", "Took recommended"),
            Column("share", "Share", "pct"),
        ],
        rows,
    )
    figure = {
        "data": [
            {
                "type": "bar",
                "x": [r[0] for r in rows],
                "y": [round(100 * r[3], 1) for r in rows],
                "text": [f"{100 * r[3]:.0f}%" for r in rows],
                "textposition": "outside",
                "marker": {"color": "#0b6b3a"},
                "name": "Took recommended",
            }
        ],
        "layout": _layout(
            "% of human decisions",
            "Agent",
            yaxis={
                "title": {"text": "% of human decisions"},
                "range": [0, 110],
                "gridcolor": "#eef0f4",
            },
        ),
    }
    return Chart(
        "recommended",
        "Recommended option chosen",
        "How often a person chose the option the agent recommended.",
        [table],
        [figure] if rows else [],
    )


def calibration_chart(f: Filters) -> Chart:
    by_agent = selectors.calibration_bins(f)
    summary, bins_rows, traces = [], [], []
    for i, agent in enumerate(sorted(by_agent)):
        bins = by_agent[agent]
        n = sum(b.n for b in bins)
        summary.append([agent, n, stats.expected_calibration_error(bins), stats.brier_score(bins)])
        points = []
        for index, b in enumerate(bins):
            if not b.n:
                continue
            low = index / stats.CONFIDENCE_BINS
            mean_c, share = b.sum_c / b.n, b.agreed / b.n
            bins_rows.append([agent, f"{low:.1f}–{low + 0.1:.1f}", b.n, mean_c, b.agreed, share])
            if b.n >= DIAGRAM_MIN_JUDGED:
                points.append((mean_c, share, b.n))
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": agent,
                "x": [round(p[0], 3) for p in points],
                "y": [round(p[1], 3) for p in points],
                "marker": {
                    "size": [min(18, 6 + p[2] ** 0.5) for p in points],
                    "color": PALETTE[i % len(PALETTE)],
                },
                "line": {"color": PALETTE[i % len(PALETTE)]},
            }
        )
    if traces:
        traces.insert(
            0,
            {
                "type": "scatter",
                "mode": "lines",
                "name": "perfectly calibrated",
                "x": [0, 1],
                "y": [0, 1],
                "line": {"dash": "dot", "color": "#9aa3b2"},
            },
        )
    axis = {"range": [0, 1.02], "gridcolor": "#eef0f4", "tickformat": ".0%"}
    figure = {
        "data": traces,
        "layout": _layout(
            "",
            "",
            height=380,
            xaxis={**axis, "title": {"text": "Stated confidence (bin mean)"}},
            yaxis={**axis, "title": {"text": "Share that took the recommended option"}},
        ),
    }
    return Chart(
        "calibration",
        "Calibration",
        "A reliability diagram per agent: confidence in bins of 0.1 against the share of "
        "judged escalations where the person agreed with the agent (a human decision that "
        "took the recommended option, or a flagged escalation reviewed as fine). On the "
        "dotted line, 0.8 confidence means agreement 80% of the time. ECE: the bins' gaps "
        "weighted by their size; Brier: the mean of (confidence − agreed)². Lower is better. "
        f"The diagram draws bins with at least {DIAGRAM_MIN_JUDGED} judged; the table has them all.",
        [
            Table(
                "calibration-summary",
                "Calibration per agent",
                [
                    Column("agent", "Agent", "text"),
                    Column("judged", "Judged"),
                    Column("ece", "ECE", "float"),
                    Column("brier", "Brier score", "float"),
                ],
                summary,
            ),
            Table(
                "calibration-bins",
                "Reliability diagram points",
                [
                    Column("agent", "Agent", "text"),
                    Column("confidence_bin", "Confidence bin", "text"),
                    Column("judged", "Judged"),
                    Column("mean_confidence", "Mean confidence", "float"),
                    Column("agreed", "Agreed"),
                    Column("share_agreed", "Share agreed", "pct"),
                ],
                bins_rows,
            ),
        ],
        [figure] if traces else [],
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
                _ratio(mean, budget),
                _ratio(max(days), budget),
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
    layout = _layout("% of daily budget", "Agent", barmode="group")
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
        "layout": _layout("", "Decisions", height=max(220, 60 + 34 * len(rows))),
    }
    return Chart(
        "reviewers",
        "Reviewer load",
        "Human decisions per reviewer; time from their claim (or, unclaimed, from creation) to the decision.",
        [table],
        [figure] if rows else [],
    )


CHARTS: dict[str, Callable[[Filters], Chart]] = {
    "rate": rate_chart,
    "reasons": reason_chart,
    "tiers": tier_chart,
    "timing": timing_chart,
    "recommended": recommended_chart,
    "calibration": calibration_chart,
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
    "budget-use": "budget",
    "reviewer-load": "reviewers",
}


def table_by_key(f: Filters, key: str) -> Table | None:
    chart = TABLES.get(key)
    if chart is None:
        return None
    return next(table for table in CHARTS[chart](f).tables if table.key == key)


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
