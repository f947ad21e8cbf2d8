"""The demo's data files (demo/data/*.toml), read into plain values."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


@cache
def people() -> dict[str, Any]:
    """Reviewers, agents, the password and the escalation levels (people.toml)."""
    return _load(DATA / "people.toml")


@dataclass(frozen=True)
class DemoEscalation:
    """One demo escalation (a file of data/escalations/): the package an agent posts, where it
    sits in time and what happens to it next."""

    agent: str
    run_id: str
    package: dict[str, Any]
    history: list[dict[str, str]]  # steps: action, outcome, detail (optional)
    ago_minutes: int  # before now, when the agent posted it
    history_minutes: int = 40  # how long the history took, ending at posting time
    respond_in_minutes: int | None = None  # the deadline, after posting
    # A decision (DecisionRequest's fields), by the demo reviewer or `by` (a reviewer or a
    # machine of people.toml), decided_after_minutes after posting.
    decide: dict[str, Any] | None = None
    claim_by: str | None = None  # a reviewer who holds it (and comments)
    # A machine reviewer's advice (people.toml's machines), before any decision: by, option,
    # note, confidence, args (optional), after_minutes (after posting; 3).
    recommend: dict[str, Any] | None = None
    # A person's look at a decision made without one (the policy's tier 2, a machine's): by,
    # verdict ("fine" or "other"), option (for "other"), note, after_minutes (after it; 30).
    review: dict[str, Any] | None = None
    # A reviewer's question the agent has not answered yet: {by, text, ago_minutes}.
    ask: dict[str, Any] | None = None


@cache
def escalations() -> list[DemoEscalation]:
    """The demo escalations, in the order of their files."""
    return [DemoEscalation(**_load(path)) for path in sorted((DATA / "escalations").glob("*.toml"))]


@cache
def history() -> dict[str, Any]:
    """The insights history: agents' profiles, reasons, reviewers (history.toml)."""
    return _load(DATA / "history.toml")
