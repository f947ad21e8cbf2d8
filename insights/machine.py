"""The machine reviewers' agreement with people, for the rollups (MachineRollup).

A person who looks after a machine judges it: deciding an escalation a machine recommended
an option for (agreed: the person chose that option), or reviewing a decision a machine
made (agreed: reviewed as fine). A machine's last recommendation before the human decision
counts, once per escalation and machine. Machine decisions themselves are no human
judgement: they stay out of the agents' calibration and the people's time to decision
(services.aggregate_escalations counts human decisions and reviews of policy decisions).
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime

from django.db.models import F, QuerySet

from escalations.models import Decision, Escalation, FlagReview, Recommendation

from .models import MachineRollup

# One judgement: (agent_id, domain, created_at, machine, "recommended" or "decided", agreed).
Judgement = tuple[int, str, datetime, str, str, bool]


def judgements(escalations: QuerySet[Escalation]) -> list[Judgement]:
    """The judgements of machines on `escalations` (a queryset): two queries."""
    ids = escalations.order_by().values("pk")
    out: dict[tuple, Judgement] = {}
    advice = (
        Recommendation.objects.filter(
            is_machine=True,
            escalation_id__in=ids,
            escalation__decision__decided_by_type=Decision.DecidedBy.HUMAN,
            at__lte=F("escalation__decision__decided_at"),
        )
        .order_by("escalation_id", "name", "at", "id")
        .values_list(
            "escalation_id", "name", "option_key", "escalation__agent_id", "escalation__domain",
            "escalation__created_at", "escalation__decision__kind", "escalation__decision__option_key",
        )
    )
    for pk, name, option, agent_id, domain, created, kind, chosen in advice:
        agreed = kind == Decision.Kind.OPTION and chosen == option
        out[(pk, name)] = (agent_id, domain, created, name, "recommended", agreed)  # the last stands
    reviewed = (
        Escalation.objects.filter(
            pk__in=ids,
            decision__decided_by_type=Decision.DecidedBy.MACHINE,
            flag_review__isnull=False,
        )
        .order_by()
        .values_list("agent_id", "domain", "created_at", "decision__decided_by_name", "flag_review__verdict")
    )
    found = list(out.values())
    for agent_id, domain, created, name, verdict in reviewed:
        found.append((agent_id, domain, created, name, "decided", verdict == FlagReview.Verdict.FINE))
    return found


def aggregate(found: Iterable[Judgement]) -> dict[date, list[MachineRollup]]:
    """Unsaved MachineRollup rows per UTC day of the escalations' creation."""
    sums: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for agent_id, domain, created, name, what, agreed in found:
        one = sums[(created.astimezone(UTC).date(), agent_id, domain, name)]
        one[what] += 1
        one[f"{what}_agreed"] += agreed
    out: dict[date, list[MachineRollup]] = defaultdict(list)
    for (day, agent_id, domain, name), counts in sums.items():
        out[day].append(MachineRollup(day=day, agent_id=agent_id, domain=domain, reviewer=name, **counts))
    return dict(out)
