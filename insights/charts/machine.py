"""The machine reviewers' agreement with people, beside the agents' calibration."""

from insights import selectors
from insights.selectors import Filters

from .base import PALETTE, Chart, Column, Table, chart_layout, ratio


def machine_chart(f: Filters) -> Chart:
    rows = []
    for r in selectors.machine_agreement(f):
        judged = r["recommended"] + r["decided"]
        agreed = r["recommended_agreed"] + r["decided_agreed"]
        if not judged:
            continue
        rows.append(
            [
                r["reviewer"],
                r["recommended"],
                r["recommended_agreed"],
                ratio(r["recommended_agreed"], r["recommended"]),
                r["decided"],
                r["decided_agreed"],
                ratio(r["decided_agreed"], r["decided"]),
                judged,
                ratio(agreed, judged),
            ]
        )
    table = Table(
        "machine-agreement",
        "Machine reviewers' agreement with people",
        [
            Column("machine", "Machine reviewer", "text"),
            Column("recommendations_judged", "Recommendations a person decided after"),
            Column("recommendations_agreed", "Person chose the same"),
            Column("share_recommendations_agreed", "Share", "pct"),
            Column("decisions_reviewed", "Decisions a person reviewed"),
            Column("decisions_agreed", "Reviewed as fine"),
            Column("share_decisions_agreed", "Share", "pct"),
            Column("judged", "Judged"),
            Column("share_agreed", "Agreement", "pct"),
        ],
        rows,
    )
    figure = {
        "data": [
            {
                "type": "bar",
                "x": [r[0] for r in rows],
                "y": [round(100 * r[8], 1) for r in rows],
                "text": [f"{100 * r[8]:.0f}% of {r[7]}" for r in rows],
                "textposition": "outside",
                "marker": {"color": [PALETTE[(i + 4) % len(PALETTE)] for i in range(len(rows))]},
                "name": "Agreement",
            }
        ],
        "layout": chart_layout(
            "% agreed",
            "Machine reviewer",
            yaxis={"title": {"text": "% agreed"}, "range": [0, 110], "gridcolor": "#eef0f4"},
        ),
    }
    return Chart(
        "machine",
        "Machine reviewers' agreement with people",
        "How often a person, looking after a machine reviewer, chose what the machine "
        "recommended (deciding an escalation the machine left a recommendation on: its last "
        "one before the decision) or found its decision fine (reviewing a decision the "
        "machine made). Machine decisions are not counted in the agents' calibration nor "
        "in the people's time to decision.",
        [table],
        [figure] if rows else [],
        empty="No machine reviewer's recommendation or decision was judged by a person in this range.",
    )
