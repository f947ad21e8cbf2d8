"""Presentation helpers for the reviewer pages: durations, deadlines, JSON, safe links.

Filters return plain strings; Django's autoescaping applies to everything they return.
"""

import json
from datetime import datetime
from urllib.parse import urlsplit

from django import template
from django.utils import timezone

register = template.Library()

TIER_NAMES = {1: "Autonomous", 2: "Flagged", 3: "Escalated", 4: "Halt"}
OUTCOME_LABELS = {"ok": "OK", "failed": "Failed", "skipped": "Skipped", "info": "Info"}
DECISION_VERBS = {
    "option": "proceed with an option",
    "instruction": "follow a different instruction",
    "take_over": "take the run over",
    "halt": "halt the run",
}


def span(seconds: float) -> str:
    """A short human duration: "45 min", "3 h 20 min", "2 d 4 h"."""
    minutes = int(abs(seconds) // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes and hours < 10 else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def time_left(deadline: datetime | None) -> str:
    """ "2 h 10 min left", "overdue by 35 min", or "" without a deadline."""
    if deadline is None:
        return ""
    seconds = (deadline - timezone.now()).total_seconds()
    return f"{span(seconds)} left" if seconds >= 0 else f"overdue by {span(seconds)}"


@register.filter
def duration(seconds: float | None) -> str:
    """ "45 min", "3 h 20 min": a number of seconds for a person to read."""
    return span(seconds or 0)


@register.filter
def since(moment: datetime | None) -> str:
    """ "3 h 5 min" since `moment`."""
    if moment is None:
        return ""
    return span((timezone.now() - moment).total_seconds())


@register.filter
def tier_name(tier: int) -> str:
    return TIER_NAMES.get(tier, f"Tier {tier}")


@register.filter
def outcome_label(outcome: str) -> str:
    return OUTCOME_LABELS.get(outcome or "info", outcome)


@register.filter
def decision_verb(kind: str) -> str:
    return DECISION_VERBS.get(kind, kind)


@register.filter
def iso_time(value: str | None) -> datetime | str | None:
    """A history step's ISO time as a datetime (or the raw value if it is not one)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def http_url(url: str) -> str:
    """The URL if it is http(s), else "" (packages are validated; this is defence in depth)."""
    try:
        scheme = urlsplit(str(url)).scheme.lower()
    except ValueError:
        return ""
    return str(url) if scheme in ("http", "https") else ""


@register.filter
def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


@register.filter
def failed_count(history: list) -> int:
    return sum(1 for step in history or () if step.get("outcome") == "failed")


@register.filter
def option_label(escalation, key: str) -> str:
    option = escalation.option(key) if key else None
    return option["label"] if option else key


# A long history reads as its failures and its end: runs of this many `ok` steps or more
# fold into one line ("37 steps ok"); the last LAST_STEPS steps before the pause stay open.
FOLD_RUN = 3
LAST_STEPS = 5


@register.filter
def history_groups(history: list) -> list[dict]:
    """The history as the page shows it, in order: {"step", "number", "last"} for a step
    shown on its own, {"run": [those], "first", "last_number"} for a folded run of ok steps."""
    steps = list(history or ())
    last_from = max(0, len(steps) - LAST_STEPS)
    shown = [
        {"step": step, "number": n, "last": n - 1 >= last_from, "first_last": n - 1 == last_from}
        for n, step in enumerate(steps, start=1)
    ]
    groups: list[dict] = []
    run: list[dict] = []

    def flush() -> None:
        if len(run) >= FOLD_RUN:
            groups.append({"run": list(run), "first": run[0]["number"], "last_number": run[-1]["number"]})
        else:
            groups.extend(run)
        run.clear()

    for item in shown:
        if item["step"].get("outcome") == "ok" and not item["last"]:
            run.append(item)
            continue
        flush()
        groups.append(item)
    flush()
    return groups
