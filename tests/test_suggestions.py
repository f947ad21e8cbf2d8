"""Policy suggestions, the pure function (escalations.suggestions): what judged history
supports a lower flag threshold, a reason flagged instead of waiting, or a reason's floor,
with what each would have changed; and nothing at small counts."""

from dataclasses import replace

from escalations.policy import ESCALATE, FLAG, Rules, Situation
from escalations.suggestions import (
    FLAG_REASON,
    FLOOR_REASON,
    LOWER_FLAG,
    MIN_JUDGED,
    Effect,
    Judged,
    effect,
    suggest,
)

SAVED = Rules()  # 0.90 / 0.70 / 0.50, auto-decide on


def judged(
    n: int,
    confidence: float,
    *,
    agreed: int | None = None,
    agent="refactor-bot",
    reason="approach_choice",
    **more,
):
    """n judged escalations at `confidence`, the first `agreed` (all by default) of them agreed."""
    agreed = n if agreed is None else agreed
    situation = Situation(confidence=confidence, reason=reason, **more)
    return [Judged(agent, situation, i < agreed) for i in range(n)]


def test_people_nearly_always_agreeing_lower_the_flag_threshold_as_far_as_they_agree():
    # 60 judged at 0.6 (tier 3 now), 58 agreed; 20 at 0.56 with 10 agreed.
    history = judged(60, 0.6, agreed=58) + judged(20, 0.56, agreed=10, agent="other-bot")
    [suggestion] = suggest(SAVED, history).items
    assert suggestion.kind == LOWER_FLAG
    assert (suggestion.agent, suggestion.reason) == ("refactor-bot", "approach_choice")
    assert (suggestion.based_on, suggestion.agreed) == (60, 58)
    # 0.55 would take in the 0.56s too (10 of 20 disagreed): it stops at 0.6.
    assert suggestion.rules == replace(SAVED, flag_threshold=0.6)
    assert suggestion.effect == Effect(moved=60, changed=2)


def test_the_count_covers_every_agent_the_domains_threshold_moves():
    history = judged(60, 0.65) + judged(5, 0.62, agreed=4, agent="tiny-bot", reason="other")
    [suggestion] = suggest(SAVED, history).items
    # tiny-bot's five (too few to propose anything) still move with the threshold, and
    # its one disagreement counts: 64 of 65 agreed is still nearly all.
    assert suggestion.rules.flag_threshold == 0.6
    assert suggestion.effect == Effect(moved=65, changed=1)


def test_too_few_judged_propose_nothing_and_say_how_many_there_are():
    history = judged(MIN_JUDGED - 1, 0.6) + judged(3, 0.8, reason="other")
    found = suggest(SAVED, history)
    assert found.items == []
    assert found.largest == (MIN_JUDGED - 1, "refactor-bot", "approach_choice")
    assert suggest(SAVED, []).largest is None


def test_agreement_short_of_nearly_always_proposes_no_lower_threshold():
    assert suggest(SAVED, judged(40, 0.6, agreed=37)).items == []  # 92.5%


def test_nothing_to_move_nothing_to_propose():
    # All above the autonomous threshold already: decided at once, and people agreed.
    assert suggest(SAVED, judged(30, 0.95)).items == []
    # Below the escalate threshold: no flag threshold reaches them.
    assert suggest(SAVED, judged(30, 0.4)).items == []
    # Irreversible: at least tier 3 whatever the threshold.
    assert suggest(SAVED, judged(30, 0.6, irreversible=True)).items == []
    # Auto-decide off: the policy decides nothing, lowering a threshold changes nothing.
    assert suggest(replace(SAVED, auto_decide=False), judged(30, 0.6)).items == []


def test_a_floored_reason_people_agree_with_is_flagged_instead():
    rules = replace(SAVED, reason_floors={"approach_choice": ESCALATE, "novelty": ESCALATE})
    history = judged(30, 0.92) + judged(30, 0.6, reason="missing_information", agreed=20)
    [suggestion] = suggest(rules, history).items
    assert suggestion.kind == FLAG_REASON
    assert suggestion.rules.reason_floors == {"approach_choice": FLAG, "novelty": ESCALATE}
    assert suggestion.effect == Effect(moved=30, changed=0)


def test_people_often_disagreeing_with_what_the_policy_decides_propose_a_floor():
    # 25 flagged (0.8) and reviewed, 7 "should have been another option"; 10 more at 0.6
    # reached a person anyway and do not count towards the rate.
    history = judged(25, 0.8, agreed=18) + judged(10, 0.6, agreed=2)
    history += judged(4, 0.85, agreed=3, agent="other-bot")
    [suggestion] = suggest(SAVED, history).items
    assert suggestion.kind == FLOOR_REASON
    assert (suggestion.based_on, suggestion.disagreed) == (25, 7)
    assert suggestion.rules.reason_floors == {"approach_choice": ESCALATE}
    # other-bot's approach_choice escalations go to a person too: 29 moved, 8 changed.
    assert suggestion.effect == Effect(moved=29, changed=8)


def test_a_floor_needs_enough_decided_at_once_to_rate():
    history = judged(MIN_JUDGED - 1, 0.8, agreed=5) + judged(30, 0.6, agreed=10)
    assert suggest(SAVED, history).items == []
    # A reason already floored at tier 3 is not proposed again.
    floored = replace(SAVED, reason_floors={"approach_choice": ESCALATE})
    assert suggest(floored, judged(30, 0.8, agreed=10)).items == []


def test_calibrated_rules_read_the_calibrated_confidence():
    # States 0.95 but calibrated 0.6: under calibrated tiering these wait for a person.
    history = judged(40, 0.95, calibrated_confidence=0.6)
    assert suggest(SAVED, history).items == []
    [suggestion] = suggest(replace(SAVED, tier_by_calibrated=True), history).items
    assert suggestion.rules.flag_threshold == 0.6


def test_one_proposal_once_with_the_largest_group_as_its_evidence_floors_first():
    history = judged(40, 0.62) + judged(25, 0.64, agent="b-bot", reason="other")
    history += judged(30, 0.8, agreed=20, agent="c-bot", reason="missing_access")
    items = suggest(SAVED, history).items
    assert [(s.kind, s.agent, s.based_on) for s in items] == [
        (FLOOR_REASON, "c-bot", 30),
        (LOWER_FLAG, "refactor-bot", 40),
    ]


def test_effect_counts_both_ways():
    history = judged(10, 0.8, agreed=7) + judged(10, 0.6, agreed=9)
    lower = replace(SAVED, flag_threshold=0.6)
    assert effect(SAVED, lower, history) == Effect(moved=10, changed=1)
    assert effect(lower, SAVED, history) == Effect(moved=10, changed=1)
    assert effect(SAVED, SAVED, history) == Effect(0, 0)


def test_each_suggestion_says_what_history_shows_and_what_it_would_change():
    [lower] = suggest(SAVED, judged(60, 0.6, agreed=58)).items
    assert (
        lower.evidence
        == "58 of refactor-bot's last 60 judged approach_choice escalations took the recommended option"
    )
    assert lower.proposal == (
        "auto-deciding (with a flag) from confidence 0.60 instead of 0.70 would have changed 2 decisions "
        "of the 60 judged escalations it takes from people (all agents)"
    )
    [floor] = suggest(SAVED, judged(25, 0.8, agreed=18)).items
    assert floor.evidence == (
        "People chose another option in 7 of the last 25 judged approach_choice escalations "
        "of refactor-bot that the policy decides at once"
    )
    assert floor.proposal == (
        "a floor of tier 3 for approach_choice (a person decides) would have changed 7 decisions: "
        "25 judged escalations go to people instead (all agents)"
    )
    rules = replace(SAVED, reason_floors={"approach_choice": ESCALATE})
    [flagged] = suggest(rules, judged(21, 0.8)).items
    assert flagged.proposal.startswith(
        "flagging approach_choice escalations instead of holding them at tier 3 "
    )


def test_a_floors_effect_is_its_own_reasons_alone():
    history = judged(10, 0.8, agreed=7) + judged(10, 0.8, agreed=5, reason="other")
    floored = replace(SAVED, reason_floors={"other": ESCALATE})
    assert effect(SAVED, floored, history) == Effect(moved=10, changed=5)
    both = replace(SAVED, flag_threshold=0.85, reason_floors={"other": ESCALATE})
    assert effect(SAVED, both, history) == Effect(moved=20, changed=8)
