"""Policy suggestions mined from a domain's judged history, pure: no ORM, no clock.

A judged escalation is one a person decided, or a policy decision a person reviewed (its
flag review); it says whether the person took the agent's recommended option (the
backtest's rule, escalations.backtest.OVERRULED, is what the selector reads it by). Per
agent and reason, with at least MIN_JUDGED of them:

- people nearly always agree (AGREE_RATE): let the policy decide more. Where the reason's
  floor sends them to a person, propose flagging them instead (floor tier 2); otherwise
  the lowest flag threshold (in steps of STEP, not below the escalate threshold, nor below
  the step that last took in more judged escalations) at which the escalations it would
  newly decide were still AGREE_RATE agreed.
- people often disagree (DISAGREE_RATE) with the ones the policy decides at once: propose
  a floor of tier 3 for the reason (a person decides).

What a proposal "would have changed" is counted over every judged escalation given (all
agents: a policy's thresholds and floors are the domain's), re-tiered by
policy.verdict_for under the saved rules and the proposed ones, exactly as the backtest
re-tiers them in SQL: judged escalations that move between a person and the policy, and
of those, the ones where the outcome differs (the policy would take the recommended
option a person did not, or a person would have chosen where the policy got it wrong).
So a suggestion's count is the difference of the backtest's "decided at once, yet a
person chose another option" between the saved column and the proposed one, over the
judged escalations given: backtest.judged_history gives the latest PER_GROUP of each agent
and reason, where the backtest counts the whole window (it can count more).
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .policy import ESCALATE, FLAG, Rules, Situation, verdict_for

# Judged escalations of one agent with one reason before anything is proposed from them.
MIN_JUDGED = 20
# "Nearly always agree": at least this share took the recommended option.
AGREE_RATE = 0.95
# "Often disagree": at least this share of those decided at once, a person chose otherwise.
DISAGREE_RATE = 0.2
# Flag thresholds tried, in steps down from the saved one.
STEP = 0.05

LOWER_FLAG = "lower_flag_threshold"
FLAG_REASON = "flag_reason"  # a floor of tier 3 or 4 lowered to tier 2
FLOOR_REASON = "floor_reason"  # a floor of tier 3 added (or raised to it)


@dataclass(frozen=True)
class Judged:
    """One judged escalation: its agent, what the policy looks at, and whether the person
    took the recommended option."""

    agent: str
    situation: Situation
    agreed: bool

    @property
    def reason(self) -> str:
        return self.situation.reason


@dataclass(frozen=True)
class Effect:
    """A proposal's effect on the judged escalations, all agents."""

    moved: int  # judged escalations that would move between a person and the policy
    changed: int  # of those, where the decision would have been another


@dataclass(frozen=True)
class Suggestion:
    kind: str
    agent: str
    reason: str
    based_on: int  # the agent's judged escalations with the reason the rate is taken on
    agreed: int  # of those, how many took the recommended option
    saved: Rules
    rules: Rules  # the saved rules with the proposal applied
    effect: Effect

    @property
    def disagreed(self) -> int:
        return self.based_on - self.agreed

    @property
    def evidence(self) -> str:
        """What history says: "58 of refactor-bot's last 60 judged approach_choice
        escalations took the recommended option"."""
        if self.kind == FLOOR_REASON:
            return (
                f"People chose another option in {self.disagreed} of the last {self.based_on} judged "
                f"{self.reason} escalations of {self.agent} that the policy decides at once"
            )
        return (
            f"{self.agreed} of {self.agent}'s last {self.based_on} judged {self.reason} "
            "escalations took the recommended option"
        )

    @property
    def proposal(self) -> str:
        """What to change and what it would have changed, all agents counted."""
        changed = f"{self.effect.changed} decision{'' if self.effect.changed == 1 else 's'}"
        moved = f"{self.effect.moved} judged escalation{'' if self.effect.moved == 1 else 's'}"
        if self.kind == LOWER_FLAG:
            said = "calibrated confidence" if self.saved.tier_by_calibrated else "confidence"
            return (
                f"auto-deciding (with a flag) from {said} {self.rules.flag_threshold:.2f} instead of "
                f"{self.saved.flag_threshold:.2f} would have changed {changed} of the {moved} "
                "it takes from people (all agents)"
            )
        if self.kind == FLAG_REASON:
            floor = self.saved.reason_floors[self.reason]
            return (
                f"flagging {self.reason} escalations instead of holding them at tier {floor} would have "
                f"changed {changed} of the {moved} it takes from people (all agents)"
            )
        return (
            f"a floor of tier 3 for {self.reason} (a person decides) would have changed {changed}: "
            f"{moved} go to people instead (all agents)"
        )


@dataclass(frozen=True)
class Suggestions:
    items: list[Suggestion]
    # The largest agent-and-reason group (its judged count, agent, reason), for the empty
    # state: how far the history is from MIN_JUDGED.
    largest: tuple[int, str, str] | None


def decided_at_once(rules: Rules, situation: Situation) -> bool:
    """The policy decides it without a person (tiers 1-2, auto-decide on)."""
    return rules.auto_decide and verdict_for(rules, situation).decided_by_policy


def effect(saved: Rules, proposed: Rules, judged: Sequence[Judged]) -> Effect:
    """What `proposed` would have changed of the `judged` escalations, beside `saved`."""
    return _History(saved, judged).effect(proposed)


Row = tuple[Judged, bool]  # a judged escalation, and whether the saved rules decide it at once


def _moved(proposed: Rules, rows: Sequence[Row]) -> Effect:
    moved = [one for one, before in rows if before != decided_at_once(proposed, one.situation)]
    return Effect(len(moved), sum(not one.agreed for one in moved))


def _nearly_all_agreed(found: Effect) -> bool:
    return found.moved - found.changed >= AGREE_RATE * found.moved


class _History:
    """The judged escalations with the saved rules' tiering taken once, and each proposal's
    effect counted once (every group tries the same flag thresholds)."""

    def __init__(self, saved: Rules, judged: Sequence[Judged]) -> None:
        self.saved = saved
        self.rows = [(one, decided_at_once(saved, one.situation)) for one in judged]
        self.groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        self.reasons: dict[str, list[Row]] = defaultdict(list)
        for row in self.rows:
            self.groups[(row[0].agent, row[0].reason)].append(row)
            self.reasons[row[0].reason].append(row)
        self.effects: dict[str, Effect] = {}

    def effect(self, proposed: Rules) -> Effect:
        """Over every agent. A proposal that changes only floors re-tiers only the rows of
        the reasons whose floor it changes (a floor applies to its own reason alone)."""
        key = repr(proposed)
        if key not in self.effects:
            rows: Sequence[Row] = self.rows
            old, new = self.saved.reason_floors, proposed.reason_floors
            if replace(proposed, reason_floors=old) == self.saved:
                changed = sorted(r for r in old.keys() | new.keys() if old.get(r) != new.get(r))
                rows = [row for reason in changed for row in self.reasons[reason]]
            self.effects[key] = _moved(proposed, rows)
        return self.effects[key]

    def lower_flag(self, group: list[Row]) -> Rules | None:
        """The lowest flag threshold whose newly decided escalations people nearly always
        agreed with (and that decides some of this group's), or None."""
        rules = self.saved
        best, moved = None, 0
        steps = math.ceil((rules.flag_threshold - rules.escalate_threshold) / STEP - 1e-9)
        for step in range(1, steps + 1):
            threshold = max(rules.escalate_threshold, round(rules.flag_threshold - step * STEP, 2))
            proposed = replace(rules, flag_threshold=threshold)
            found = self.effect(proposed)
            if not _nearly_all_agreed(found):
                break
            # No lower than the history reaches: a step that decides no more judged
            # escalations than the one above has no evidence for it.
            if found.moved > moved and _moved(proposed, group).moved:
                best, moved = proposed, found.moved
        return best

    def suggestion(self, group: list[Row]) -> Suggestion | None:
        rules, first = self.saved, group[0][0]
        agreed = sum(one.agreed for one, _ in group)
        floor = rules.reason_floors.get(first.reason, 0)
        proposed: Rules | None = None
        kind = ""
        based_on = len(group)
        if agreed >= AGREE_RATE * len(group) and rules.auto_decide:
            if floor >= ESCALATE:
                kind = FLAG_REASON
                proposed = replace(rules, reason_floors={**rules.reason_floors, first.reason: FLAG})
                if not _nearly_all_agreed(self.effect(proposed)):
                    proposed = None
            else:
                kind, proposed = LOWER_FLAG, self.lower_flag(group)
        elif floor < ESCALATE:
            at_once = [one for one, before in group if before]
            agreed = sum(one.agreed for one in at_once)
            based_on = len(at_once)
            if based_on >= MIN_JUDGED and based_on - agreed >= DISAGREE_RATE * based_on:
                kind = FLOOR_REASON
                proposed = replace(rules, reason_floors={**rules.reason_floors, first.reason: ESCALATE})
        if proposed is None:
            return None
        found = self.effect(proposed)
        if not found.moved:
            return None
        return Suggestion(kind, first.agent, first.reason, based_on, agreed, rules, proposed, found)


def suggest(rules: Rules, judged: Sequence[Judged]) -> Suggestions:
    """The proposals the domain's `judged` escalations support under its saved `rules`,
    one per distinct proposal (the largest group its evidence), floors first, then by how
    much history each rests on."""
    history = _History(rules, judged)
    groups = history.groups
    found: dict[str, Suggestion] = {}
    for _key, group in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        if len(group) < MIN_JUDGED:
            continue
        suggestion = history.suggestion(group)
        if suggestion is None:
            continue
        key = repr(suggestion.rules)
        if key not in found:
            found[key] = suggestion
    items = sorted(
        found.values(), key=lambda s: (s.kind != FLOOR_REASON, -s.based_on, s.agent, s.reason)
    )
    largest = max(
        ((len(g), a, r) for (a, r), g in groups.items()), key=lambda t: t[0], default=None
    )
    return Suggestions(items, largest)
