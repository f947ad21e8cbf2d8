"""How good the agents' judgement is: the recommended option taken, confidence calibration."""

from insights import selectors, stats
from insights.selectors import Filters

from .base import DIAGRAM_MIN_JUDGED, PALETTE, Chart, Column, Table, chart_layout, ratio


def recommended_chart(f: Filters) -> Chart:
    rows = [
        [
            o["agent"],
            o["human_decided"],
            o["took_recommended"],
            ratio(o["took_recommended"], o["human_decided"]),
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
        "layout": chart_layout(
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
        "layout": chart_layout(
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
