"""Where the insights page's names lead: the reviewer queue filtered to an agent, a domain
or a reason, with the queue's own URL parameters (reviews.filters.QueueFilter).

A range that reaches today leads to what is open now (the queue as a reviewer works it);
a past range leads to the escalations created in it that are no longer open (the queue's
closed tab with created_from / created_to, whole UTC days as the rollups count them), so a
past row's link lists the escalations that row counted.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from urllib.parse import urlencode

from django.urls import reverse

from escalations.models import Escalation, Policy

from .selectors import DriftReport, DriftRow, Filters

# Columns whose values are names the queue filters by (the queue's parameter of each).
NAME_COLUMNS = {"agent": "agent", "domain": "domain", "reason": "reason"}
REASONS = frozenset(Escalation.Reason.values)


@dataclass(frozen=True)
class QueueLinks:
    filters: Filters
    today: date
    agent: str = ""  # the page's agent filter, by name (the queue filters agents by name)

    def url(self, start: date | None = None, end: date | None = None, **names: str) -> str:
        """The queue under the page's agent and domain filters, `names` (agent, domain,
        reason) overriding them, for the days start..end (the page's range by default)."""
        start, end = start or self.filters.start, end or self.filters.end
        params = {"agent": self.agent, "domain": self.filters.domain or "", **names}
        if end < self.today:
            params |= {
                "tab": "closed",
                "created_from": start.isoformat(),
                "created_to": end.isoformat(),
            }
        query = urlencode({key: value for key, value in params.items() if value})
        return self.queue + (f"?{query}" if query else "")

    @cached_property
    def queue(self) -> str:
        return reverse("reviews:queue")

    def period(self, value: str) -> tuple[date, date]:
        """The days of a table's period cell (a day, or a week's Monday), within the range."""
        first = date.fromisoformat(value)
        last = first + timedelta(days=6 if self.filters.by_week else 0)
        return max(first, self.filters.start), min(last, self.filters.end)

    def row(self, keys: list[str], row: list) -> dict[str, str]:
        """{column key: URL} for a table row's name cells (and, in a table of counts by
        reason, each reason's count), scoped to the row's period when it has one."""
        values = dict(zip(keys, row, strict=True))
        start, end = self.period(values["period"]) if values.get("period") else (None, None)
        links = {
            key: self.url(start, end, **{NAME_COLUMNS[key]: str(value)})
            for key, value in values.items()
            if key in NAME_COLUMNS and value not in (None, "")
        }
        links |= {
            key: self.url(start, end, reason=key)
            for key, value in values.items()
            if key in REASONS and value
        }
        return links

    def header(self, key: str) -> str | None:
        """A reason's column header leads to that reason's escalations over the range."""
        return self.url(reason=key) if key in REASONS else None


# ---------------------------------------------------------------- drift alerts

# The backtest a drift alert proposes: the domain's flag threshold this much lower, so more
# of the agent's escalations would be decided by the policy (tier 2) and flagged.
BACKTEST_FLAG_STEP = 0.05


@dataclass(frozen=True)
class DriftLinks:
    row: DriftRow
    queue: str  # the agent's open escalations
    agent: str  # the agent's page
    policy: str | None  # its domain's policy page (None: the domain has no policy)
    backtest: str | None  # the policy page, its backtest form prefilled and run


def backtest_url(policy: Policy, settings: Mapping[str, str]) -> str:
    """The policy page with its backtest form prefilled by query parameters (`settings`,
    by the form's field names) and run. Nothing is saved."""
    query = urlencode({**settings, "backtest": "1"})
    return f"{reverse('reviews:policy', args=[policy.domain])}?{query}#backtest"


def drift_backtest_url(policy: Policy) -> str:
    """The backtest a drift alert proposes: the flag threshold one step lower, never below
    the escalate threshold."""
    proposed = max(policy.escalate_threshold, round(policy.flag_threshold - BACKTEST_FLAG_STEP, 2))
    return backtest_url(policy, {"flag_threshold": f"{proposed:g}"})


def drift_links(report: DriftReport) -> list[DriftLinks]:
    """Where each drifting agent's alert leads."""
    week = QueueLinks(Filters(report.week_start, report.today), report.today)
    rows = report.drifting
    policies = Policy.objects.in_bulk([row.domain for row in rows], field_name="domain")
    out = []
    for row in rows:
        policy = policies.get(row.domain)
        out.append(
            DriftLinks(
                row,
                week.url(agent=row.agent),
                reverse("reviews:agent", args=[row.agent_id]),
                reverse("reviews:policy", args=[row.domain]) if policy else None,
                drift_backtest_url(policy) if policy else None,
            )
        )
    return out
