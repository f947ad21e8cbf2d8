"""How long people take to decide."""

from insights import selectors, stats
from insights.selectors import Filters

from .base import (
    TIER_NAMES,
    Chart,
    Column,
    Table,
    chart_layout,
    ratio,
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
                ratio(o["within_deadline"], o["with_deadline"]),
                o["expired"],
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
            Column("expired", "Expired"),
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
    figure = {"data": traces, "layout": chart_layout("Minutes", "Tier", barmode="group")}
    return Chart(
        "timing",
        "Time to claim and to decision",
        "From creation to the first claim, and to a person's decision, read from fixed-bucket "
        "histograms (p50/p90 interpolated within a bucket). Decided in time: decided by "
        "someone (not by the timeout) no later than its respond_by. Only people's decisions are "
        "timed (not a machine reviewer's, the policy's or the timeout's). Expired: decided, but "
        "the agent did not take the decision before its valid_until (it must not act on it).",
        [table],
        [figure] if measured else [],
    )
