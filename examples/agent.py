#!/usr/bin/env python3
"""A small agent that hands an irreversible step to a human and resumes with the decision.

It cleans up stale git branches (simulated: nothing is deleted for real). Two steps go
fine; the third, deleting branches, can't be undone, so it asks the governance policy,
escalates with its history and options, prints the reviewer's URL, waits for the
decision, and continues with whatever the reviewer chose: the branches they approved
(possibly an edited list), nothing, their own instruction, or a stop.

    HANDOFF_URL=http://127.0.0.1:8000 HANDOFF_TOKEN=hnd_... python examples/agent.py

Runs with only httpx installed: if handoff_client is not installed, it is imported from
clients/python/src next to this file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import handoff_client
except ImportError:  # running from a checkout without `pip install -e clients/python`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python" / "src"))
    import handoff_client

from handoff_client import Escalation, Handoff, HandoffError, WaitTimeout

STALE = [
    "feature/old-checkout",
    "fix/1841-timezone",
    "spike/graphql",
    "release/2024.3",
    "feature/dark-mode",
    "hotfix/cert-renewal",
]


def now() -> datetime:
    return datetime.now(UTC)


def say(message: str) -> None:
    print(f"[agent] {message}", flush=True)


class Run:
    """The agent's own record of what it did, sent as the package's history."""

    def __init__(self) -> None:
        self.id = f"branch-janitor-{uuid.uuid4().hex[:8]}"
        self.history: list[dict[str, Any]] = []

    def step(self, action: str, outcome: str = "ok", detail: str = "") -> None:
        entry: dict[str, Any] = {"at": now(), "action": action, "outcome": outcome}
        if detail:
            entry["detail"] = detail
        self.history.append(entry)
        say(f"{action} [{outcome}]" + (f": {detail}" if detail else ""))
        time.sleep(0.3)


def delete_branches(branches: list[str], remote: str) -> None:
    for branch in branches:
        say(f"(simulated) git push {remote} --delete {branch}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for a decision (default: for ever)",
    )
    options = parser.parse_args()
    url = os.environ.get("HANDOFF_URL", "http://127.0.0.1:8000")
    token = os.environ.get("HANDOFF_TOKEN")
    if not token:
        print(
            "HANDOFF_TOKEN is not set: create an agent with\n"
            "  .venv/bin/python manage.py agent_create my-agent\n"
            "and export the token it prints.",
            file=sys.stderr,
        )
        return 2

    run = Run()
    say(f"run {run.id}, talking to {url} (handoff-client {handoff_client.__version__})")
    run.step(
        "Listed remote branches merged into main and idle for 90+ days",
        "ok",
        f"{len(STALE)} branches: " + ", ".join(STALE),
    )
    run.step(
        "Checked open pull requests that reference them",
        "info",
        "release/2024.3 is still named in the changelog of PR #2210 (closed, unmerged)",
    )

    with Handoff(url, token) as client:
        verdict = client.gate(
            action={
                "name": "delete_remote_branches",
                "irreversible": True,
                "planned_scope": len(STALE),
                "actual_scope": len(STALE),
            },
            confidence=0.7,
            run_id=run.id,
        )
        say(f"policy says {verdict.verdict} (tier {verdict.tier}): {'; '.join(verdict.reasons)}")
        if verdict.verdict == "proceed":
            delete_branches(STALE, "origin")
            return 0
        if verdict.verdict == "halt":
            say("the policy forbids this step; stopping")
            return 1

        escalation = client.escalate(
            idempotency_key=f"{run.id}:delete-branches",
            run_id=run.id,
            title=f"Delete {len(STALE)} stale remote branches?",
            uncertainty=(
                "release/2024.3 looks stale (merged, idle 140 days) but an unmerged PR still "
                "names it in its changelog: I can't tell whether someone means to cut a "
                "patch release from it. Deleting a remote branch can't be undone from here."
            ),
            reason="irreversible_action",
            confidence=0.7,
            history=run.history,
            options=[
                {
                    "key": "delete",
                    "label": f"Delete all {len(STALE)} branches",
                    "irreversible": True,
                    "recommended": True,
                    "args": {"branches": STALE, "remote": "origin"},
                    "description": "Edit `branches` to keep some of them.",
                },
                {"key": "keep", "label": "Delete nothing; report the list instead"},
            ],
            cost_of_delay={
                "blocking": False,
                "impact": "low",
                "note": "Only clutter until then; no one is blocked.",
            },
            action={
                "name": "delete_remote_branches",
                "irreversible": True,
                "planned_scope": len(STALE),
                "actual_scope": len(STALE),
            },
        )
        if escalation.is_open:
            say(
                f"escalated (tier {escalation.tier}); decide in the browser:\n\n"
                f"    {escalation.url}\n"
            )
        try:
            decided = client.wait(escalation, timeout=options.timeout)
        except WaitTimeout:
            say("no decision in time; leaving the escalation open and stopping")
            return 3
        except KeyboardInterrupt:
            client.withdraw(escalation)
            say("interrupted: escalation withdrawn")
            return 130
        return resume(client, run, decided)


def resume(client: Handoff, run: Run, decided: Escalation) -> int:
    decision = decided.decision
    if decision is None:
        say(f"the escalation was {decided.status} without a decision; stopping")
        return 1
    who = decision.decided_by.name or decision.decided_by.type
    say(
        f"decision by {who}: {decision.kind}"
        + (f" -> {decision.option}" if decision.option else "")
    )
    try:
        client.ack(decided)
    except HandoffError as exc:  # the decision stands either way
        say(f"ack failed ({exc}); continuing")

    if decision.kind == "take_over":
        say("a human took this run over: stopping here and touching nothing")
        return 0
    if decision.kind == "halt":
        say("halted: abandoning the cleanup")
        return 0
    if decision.instruction:
        say(f"reviewer's instruction: {decision.instruction}")
    if decision.kind == "option" and decision.option == "delete":
        args = decision.args or {}
        branches = list(args.get("branches", []))
        kept = sorted(set(STALE) - set(branches))
        delete_branches(branches, str(args.get("remote", "origin")))
        run.step(
            f"Deleted {len(branches)} branches", "ok", f"kept: {', '.join(kept)}" if kept else ""
        )
    elif decision.kind == "option":
        run.step("Deleted nothing; reported the list", "skipped", ", ".join(STALE))
    else:
        run.step(
            "Followed the reviewer's instruction instead of the options",
            "info",
            decision.instruction or "",
        )
    run.step("Posted a summary to #eng-housekeeping (simulated)")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
