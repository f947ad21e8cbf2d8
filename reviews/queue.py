"""The reviewer queue's reads: tabs and their counts, sorts, keyset pages, one row's match.

Every read starts from selectors.escalations_for_reviewer (what the reviewer may see); the
filters of reviews.filters narrow it. Pages are keyset pages (no OFFSET) in each sort's
order, and each sort has a partial index over open escalations (migration 0006) and one
over closed ones (0011, the closed tab) so the first page of 100,000 open or 550,000 closed
escalations reads about one page of index entries.
"""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import F, Q
from django.utils import timezone

from escalations.models import Escalation, EscalationQuerySet
from escalations.selectors import escalations_for_reviewer

# ---------------------------------------------------------------- tabs


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    empty: str
    counted: bool = True  # the tab bar shows how many it holds


TABS = (
    Tab("open", "Open", "Nothing waits for a human"),
    Tab("mine", "Mine", "You have claimed nothing"),
    Tab("waiting", "Waiting for agent", "No question waits for an agent's answer"),
    Tab("flagged", "Flagged", "No flagged decisions to look at"),
    Tab("overdue", "Overdue", "Nothing is overdue"),
    Tab("decided", "Decided today", "Nothing decided yet today"),
    # Every escalation no longer open (decided, resumed, expired, withdrawn), of any day:
    # with the created_from / created_to filters, a past period's escalations (insights).
    # Not counted: it only grows, and a count would cost every queue page a query.
    Tab("closed", "Closed", "Nothing closed", counted=False),
)
TAB_KEYS = tuple(tab.key for tab in TABS)


def start_of_day(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def live_claim_by(user, now: datetime) -> Q:
    """Claimed by `user` with a lease that has not lapsed (the expiry job may lag)."""
    return Q(claimed_by=user, claimed_until__gt=now)


def live_claim(now: datetime) -> Q:
    return Q(claimed_by__isnull=False, claimed_until__gt=now)


def flagged() -> Q:
    """Decisions a person looks at afterwards (FlagReview.applies: the policy's at tier 2, a
    machine reviewer's) that nobody has looked at yet: Escalation.awaiting_look, which the
    decision's and the review's services keep, read through its partial indexes (a page, or a
    capped count, is one index range).
    """
    return Q(awaiting_look=True)


def in_tab(queryset: EscalationQuerySet, tab: str, *, user, now: datetime) -> EscalationQuerySet:
    if tab == "mine":
        return queryset.in_queue().filter(live_claim_by(user, now))
    if tab == "flagged":
        return queryset.filter(flagged())
    if tab == "overdue":
        return queryset.overdue(now)
    if tab == "decided":
        return queryset.filter(decision__decided_at__gte=start_of_day(now))
    if tab == "waiting":
        return queryset.filter(status=Escalation.Status.AWAITING_AGENT)
    if tab == "closed":
        # The esc_closed_* indexes' condition, word for word (the planner matches it).
        return queryset.exclude(status__in=Escalation.OPEN_STATUSES)
    return queryset.in_queue()


# Tabs are counted up to this many; past it a tab says "999+" (a COUNT is linear in the
# rows it counts, and a backlog of 999 or 100,000 asks the same of a reviewer).
COUNT_CAP = 999


def matching(queryset: EscalationQuerySet, search: str) -> EscalationQuerySet:
    """Every word of `search` in the title or the uncertainty (the queue's search box): a
    case-insensitive substring (`icontains`; no accent folding), on SQLite and PostgreSQL.

    On PostgreSQL, trigram indexes over every escalation serve `UPPER(col::text) LIKE ...`
    (escalations migration 0010), in every tab and count: the closed tab found one closed
    escalation in 1.9 s before (a scan of 550,000 rows), 1.4 ms now. Being over the whole
    table, ANALYZE keeps statistics of their expressions (PostgreSQL ignores a partial
    index's), so the planner knows a word in every row from a rare one and walks a sort's
    index for the first, reads the trigrams for the second (bench/README.md).
    """
    for word in search.split():
        queryset = queryset.filter(Q(title__icontains=word) | Q(uncertainty__icontains=word))
    return queryset


def tab_counts(user, *, now: datetime, search: str = "") -> dict[str, int]:
    """How many escalations each tab holds under the search (before the other filters), one
    query each.

    Each count reads at most COUNT_CAP + 1 entries of an index (the open escalations'
    partial indexes in Escalation.Meta, the flagged ones, decisions by time); a count above
    COUNT_CAP means "more than COUNT_CAP".
    """
    visible = matching(escalations_for_reviewer(user).select_related(None), search)
    opened = visible.in_queue()
    tabs = {
        "open": opened,
        "mine": opened.filter(live_claim_by(user, now)),
        "overdue": opened.filter(respond_by__lt=now),
        "flagged": visible.filter(flagged()),
        "decided": visible.filter(decision__decided_at__gte=start_of_day(now)),
        "waiting": visible.filter(status=Escalation.Status.AWAITING_AGENT),
    }
    # No ORDER BY (the model's would sort every row before the LIMIT).
    return {key: rows.order_by().values("pk")[: COUNT_CAP + 1].count() for key, rows in tabs.items()}


# The package's bulk, which no row of the queue shows.
HEAVY = ("history", "options", "uncertainty", "action", "links", "metadata", "delay_note")


def for_rows(queryset: EscalationQuerySet) -> EscalationQuerySet:
    """What a queue row reads: no run, none of the package's bulk (rows are kilobytes)."""
    return queryset.select_related(None).select_related("agent", "claimed_by", "decision").defer(*HEAVY)


# ---------------------------------------------------------------- sorts and keyset pages


@dataclass(frozen=True)
class Sort:
    """An order as (field, descending) pairs ending in the primary key, so it is total.

    Only respond_by may be NULL; NULLs sort last (no deadline: least urgent).
    """

    key: str
    label: str
    fields: tuple[tuple[str, bool], ...]

    def order_by(self) -> list:
        # NULLS LAST only where NULLs can be (PostgreSQL's default for ASC, so the index on
        # respond_by serves it): a NULLS clause on the others would not match their indexes.
        return [
            F(name).asc(nulls_last=True) if name in NULLABLE else (f"-{name}" if desc else name)
            for name, desc in self.fields
        ]


NULLABLE = ("respond_by",)
SORTS = {
    sort.key: sort
    for sort in (
        Sort("priority", "Priority", (("priority", True), ("created_at", False), ("id", False))),
        Sort("time_left", "Time left", (("respond_by", False), ("created_at", False), ("id", False))),
        Sort("age", "Oldest first", (("created_at", False), ("id", False))),
    )
}
DEFAULT_SORT = "priority"


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _typed(name: str, value):
    """A cursor value back as the field's type; ValueError for anything else."""
    if value is None:
        if name != "respond_by":
            raise ValueError(f"{name} cannot be empty")
        return None
    if name == "priority":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("priority must be an integer")
        return value
    if name == "id":
        return uuid.UUID(str(value))
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"{name} must carry its time zone")
    return parsed


@dataclass(frozen=True)
class Cursor:
    """The position after a row in one sort: its values of the sort's fields."""

    sort: str
    values: tuple

    def encode(self) -> str:
        raw = json.dumps([self.sort, *map(_plain, self.values)], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, sort: str) -> "Cursor":
        """Raises ValueError for anything that is not a cursor we made for `sort`."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            name, *values = json.loads(raw)
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
            raise ValueError("not a queue cursor") from exc
        if name != sort or sort not in SORTS or len(values) != len(SORTS[sort].fields):
            raise ValueError("a cursor of another sort")
        fields = SORTS[sort].fields
        return cls(sort, tuple(_typed(f, v) for (f, _), v in zip(fields, values, strict=True)))

    @classmethod
    def of(cls, escalation: Escalation, sort: str) -> "Cursor":
        return cls(sort, tuple(getattr(escalation, name) for name, _ in SORTS[sort].fields))


def _past(name: str, desc: bool, value, forward: bool) -> Q:
    """Rows strictly after (forward) or before `value` in this field's order (NULLs last)."""
    if value is None:  # nothing sorts after NULL, every value before it
        return Q(pk__in=[]) if forward else Q(**{f"{name}__isnull": False})
    beyond = Q(**{f"{name}__lt" if desc == forward else f"{name}__gt": value})
    return beyond | Q(**{f"{name}__isnull": True}) if forward and name in NULLABLE else beyond


def _equal(name: str, value) -> Q:
    return Q(**{f"{name}__isnull": True}) if value is None else Q(**{name: value})


def _bound(name: str, desc: bool, value, forward: bool) -> Q:
    """`name` at or past `value` (before it, not forward): redundant beside the cursor's
    condition, it gives the index scan its start."""
    return Q(**{f"{name}__lte" if desc == forward else f"{name}__gte": value})


def ranges(cursor: Cursor, *, forward: bool = True) -> list[Q]:
    """The rows after `cursor` (before it, not forward) as index ranges in reading order,
    each bounded where the sort's index scan starts: (a > x) or (a = x and b > y) or ...,
    for the sort's fields, and the leading column's bound.

    With NULLs last on the leading column (time left: no deadline), the rows after a deadline
    are two ranges, the later deadlines from it, then the NULL group; before a row of the NULL
    group, the group's rows before it (bounded on the next column), then every deadline. Read
    as one condition, neither had a start: a deep page scanned from the index's start, and a
    previous step in the NULL group walked back over the group's end."""
    fields = SORTS[cursor.sort].fields
    condition, same = Q(pk__in=[]), Q()
    for (name, desc), value in zip(fields, cursor.values, strict=True):
        condition |= same & _past(name, desc, value, forward)
        same &= _equal(name, value)
    (lead, desc), first = fields[0], cursor.values[0]
    if first is not None:
        bounded = condition & _bound(lead, desc, first, forward)  # no NULL lead passes it
        return [bounded, Q(**{f"{lead}__isnull": True})] if forward and lead in NULLABLE else [bounded]
    (second, second_desc), then = fields[1], cursor.values[1]
    in_group = condition & Q(**{f"{lead}__isnull": True}) & _bound(second, second_desc, then, forward)
    return [in_group] if forward else [in_group, Q(**{f"{lead}__isnull": False})]


def page(
    queryset: EscalationQuerySet, sort: str, cursor: Cursor | None, limit: int
) -> tuple[list[Escalation], Cursor | None]:
    """(rows, the cursor of the next page or None): limit + 1 rows in `sort`'s order, one
    query (a second only for a page that runs from the deadlines into the NULL group). The
    queryset says what each row loads (for_rows for the queue page)."""
    ordered = queryset.order_by(*SORTS[sort].order_by())
    rows: list[Escalation] = []
    for condition in [Q()] if cursor is None else ranges(cursor):
        rows += ordered.filter(condition)[: limit + 1 - len(rows)]
        if len(rows) > limit:
            break
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (Cursor.of(rows[-1], sort) if more and rows else None)


def sort_key(escalation: Escalation, sort: str) -> str:
    """A string that orders rows as `sort` does, for the page's script to place a live row
    (ISO times in UTC compare as strings; "~" sorts after every digit: NULLs last)."""
    parts = []
    for name, desc in SORTS[sort].fields:
        value = getattr(escalation, name)
        if name == "priority":
            parts.append(f"{(999 - value) if desc else value:03d}")
        elif isinstance(value, datetime):
            parts.append(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"))
        elif value is None:
            parts.append("~")
        else:
            parts.append(str(value))
    return "|".join(parts)


# ---------------------------------------------------------------- next and previous


def _reversed(sort: str) -> list:
    """The sort's order backwards (NULL deadlines, last going forward, come first)."""
    return [
        F(name).desc(nulls_first=True) if name in NULLABLE else (name if desc else f"-{name}")
        for name, desc in SORTS[sort].fields
    ]


def neighbour(
    queryset: EscalationQuerySet, escalation: Escalation, sort: str, *, forward: bool
) -> Escalation | None:
    """The escalation after (or before) `escalation` in `sort`'s order among `queryset`,
    whether or not `escalation` itself is still in it (a decided one has left the open tab,
    and its place in the order is where the reviewer was)."""
    cursor = Cursor.of(escalation, sort)
    if forward:
        rows, _ = page(queryset, sort, cursor, 1)
        return rows[0] if rows else None
    # The rows before the cursor, read backwards: index ranges, as a page is (it was the
    # rows NOT IN those after it: a scan of the tab, minutes over 550,000 closed ones).
    backwards = queryset.order_by(*_reversed(sort))
    for condition in ranges(cursor, forward=False):
        row = backwards.filter(condition).first()
        if row is not None:
            return row
    return None
