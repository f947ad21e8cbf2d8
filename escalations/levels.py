"""Escalation levels, like an on-call escalation policy: pure decisions, no ORM, no clock.

Level 1 is the queue. A domain's further levels (EscalationLevel rows, numbered from 2)
each have a delay counted from the escalation's creation. An escalation still open past a
level's delay is due at that level. Open means pending or claimed: a live claim does not
pause the clock, because the delay measures the time to a decision, and a claim left
sitting is exactly what the next level is for. Reaching a level adds the boosts of every
level up to it to the priority, so priority only rises as an escalation climbs.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_LEVELS = 8  # levels 2..9: more steps than any on-call rota needs
MAX_AFTER_MINUTES = 60 * 24 * 30


@dataclass(frozen=True)
class Step:
    """One level of a domain: reached `after_minutes` after creation, adding `priority_boost`."""

    level: int
    after_minutes: int
    priority_boost: int = 0


def due_level(steps: Sequence[Step], *, created_at: datetime, now: datetime) -> int:
    """The level an escalation created at `created_at` is due at by `now` (1: the queue)."""
    waited = now - created_at
    return max(
        (s.level for s in steps if waited >= timedelta(minutes=s.after_minutes)), default=1
    )


def next_level(
    steps: Sequence[Step], *, current: int, created_at: datetime, now: datetime
) -> int | None:
    """The level to move to now, or None when it is already there (or above).

    When several levels came due at once (the job was held up), the answer is the highest:
    an escalation never waits at a level whose delay has already passed.
    """
    due = due_level(steps, created_at=created_at, now=now)
    return due if due > current else None


def boost_at(steps: Sequence[Step], level: int) -> int:
    """The priority boost at `level`: the boosts of every level up to it, added up."""
    return sum(s.priority_boost for s in steps if s.level <= level)


def numbered(delays: Sequence[int]) -> list[int]:
    """Level numbers for rows given by their delays: 2, 3, … in the order of the delays."""
    order = sorted(range(len(delays)), key=lambda i: delays[i])
    levels = [0] * len(delays)
    for rank, index in enumerate(order):
        levels[index] = rank + 2
    return levels


def rows_errors(rows: Sequence[tuple[int, int]]) -> list[tuple[int, str, str]]:
    """What is wrong with a domain's levels given as (after_minutes, priority_boost) rows.

    Answers (row index, field, message). Delays are 1 minute to 30 days and distinct (two
    levels at one delay would be one step); boosts 0-100; at most MAX_LEVELS levels.
    """
    errors = []
    if len(rows) > MAX_LEVELS:
        errors.append((MAX_LEVELS, "after_minutes", f"at most {MAX_LEVELS} levels"))
    seen: dict[int, int] = {}
    for index, (after, boost) in enumerate(rows):
        if not 1 <= after <= MAX_AFTER_MINUTES:
            errors.append((index, "after_minutes", "must be between 1 minute and 30 days (43200)"))
        elif after in seen:
            errors.append(
                (index, "after_minutes", f"another level already starts after {duration(after)}")
            )
        seen.setdefault(after, index)
        if not 0 <= boost <= 100:
            errors.append((index, "priority_boost", "must be between 0 and 100"))
    return errors


def duration(minutes: int) -> str:
    """`45 min`, `2 h`, `1 h 30 min`, `3 days` for a person to read."""
    days, rest = divmod(minutes, 60 * 24)
    hours, mins = divmod(rest, 60)
    if days and not rest:
        return f"{days} day{'s' if days != 1 else ''}"
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if mins or not parts:
        parts.append(f"{mins} min")
    return " ".join(parts)
