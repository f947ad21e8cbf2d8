"""The flagged backlog's reads: decisions made without a person (the policy's at tier 2, a
machine reviewer's) that nobody has looked at yet (reviews.queue.flagged), newest first or
most uncertain (lowest confidence) first."""

from dataclasses import dataclass

from escalations.models import Escalation
from escalations.selectors import escalations_for_reviewer

from .queue import COUNT_CAP, flagged

SORTS = {
    "newest": ("-created_at", "-pk"),
    "uncertain": ("confidence", "-created_at", "-pk"),
}
SORT_LABELS = {"newest": "Newest first", "uncertain": "Most uncertain first"}
PAGE_SIZE = 50


@dataclass(frozen=True)
class Backlog:
    rows: list[Escalation]
    left: int  # capped at COUNT_CAP + 1 ("999+")
    sort: str

    @property
    def left_label(self) -> str:
        return f"{COUNT_CAP}+" if self.left > COUNT_CAP else str(self.left)


def backlog(user, *, sort: str) -> Backlog:
    """The first PAGE_SIZE flagged escalations in `sort`'s order, and how many are left."""
    visible = escalations_for_reviewer(user).filter(flagged())
    rows = list(
        visible.select_related(None)
        .select_related("agent", "decision")
        .only(
            "id", "title", "uncertainty", "confidence", "options", "created_at", "domain", "reason",
            "agent__name", "decision__option_key", "decision__decided_at", "decision__decided_by_type",
            "decision__decided_by_name", "decision__kind",
        )
        .order_by(*SORTS[sort])[:PAGE_SIZE]
    )
    left = visible.order_by().values("pk")[: COUNT_CAP + 1].count()
    return Backlog(rows=rows, left=left, sort=sort)
