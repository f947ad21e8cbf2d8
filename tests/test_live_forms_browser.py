"""What a reviewer has open or typed on the escalation page survives the live updates that
someone else's activity brings (Playwright driving Debian's chromium against the ASGI
server): the live re-fetch swaps the claim box in again, and the whole panel once the
escalation is closed, but an open form stays open with its text, and text whose form is
gone (claimed or decided by someone else meanwhile, the reviewer's claim lost) is shown
as not sent, to copy, saying what happened."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from escalations import services
from escalations.models import Escalation
from tests.conftest import make_user
from tests.test_browser import post_escalation as post
from tests.test_review_browser import LIVE_MS, Reviewer, chromium  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

QUESTION = "Which callers live outside billing/?\nAnd does the shim need tests?"
SHOTS = os.environ.get("HANDOFF_SHOTS")  # a folder: the states below as PNGs, desktop and phone


def shoot(page, name: str) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/{name}-desktop.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("(document.querySelector('.unsent') || document.querySelector('#claim-box')).scrollIntoView({block: 'center'})")
    page.screenshot(path=f"{SHOTS}/{name}-phone.png")
    page.set_viewport_size({"width": 1360, "height": 900})


def mark_swappable(page, selector: str) -> None:
    """Tag the element now there, to tell afterwards that it was swapped for a new one."""
    page.evaluate("(s) => { document.querySelector(s).dataset.before = 'yes'; }", selector)


def swapped(page, selector: str) -> bool:
    return page.evaluate("(s) => document.querySelector(s).dataset.before !== 'yes'", selector)


def unsent(page) -> list[str]:
    return page.eval_on_selector_all("[data-unsent] .unsent textarea", "els => els.map(e => e.value)")


def alice_on_a_new_escalation(base: str, chromium, token: str) -> tuple[dict, Reviewer]:  # noqa: F811
    escalation = post(base, token)
    alice = Reviewer(chromium, base, "alice")
    alice.open(f"{base}/escalations/{escalation['id']}")
    return escalation, alice


def decide_shim(escalation: dict, user) -> None:
    services.escalation_decide(
        escalation_id=escalation["id"], request=services.DecisionRequest(kind="option", option="shim"), user=user
    )


def test_an_open_question_keeps_its_text_through_live_updates_and_is_kept_when_its_form_goes(
    live_server_asgi, chromium, agent_with_token, reviewer, other_reviewer  # noqa: F811
):
    make_user("carol", "reviewer")  # someone to hand it to
    escalation, alice = alice_on_a_new_escalation(live_server_asgi, chromium, agent_with_token[1])
    page = alice.page

    # alice opens the question form and types, and picks someone in "Assign to a reviewer".
    page.click("#claim-box summary:has-text('Assign to a reviewer')")
    page.select_option("#claim-box select[name=assignee]", "carol")
    page.click("#claim-box summary:has-text('Ask the agent a question')")
    page.fill("#claim-box textarea[name=text]", QUESTION)
    mark_swappable(page, "#claim-box")

    # bob comments meanwhile: alice's page re-fetches and swaps the claim box in again ...
    services.escalation_comment(escalation_id=escalation["id"], user=other_reviewer, body="Looking at the shim.")
    alice.sees("#activity", "Looking at the shim.")
    assert swapped(page, "#claim-box")
    # ... with her forms as she left them: open, her text, her caret, her choice.
    assert page.locator("#claim-box details.ask").evaluate("d => d.open")
    assert page.input_value("#claim-box textarea[name=text]") == QUESTION
    assert page.evaluate("document.activeElement.name") == "text"
    page.keyboard.type(" Thanks.")
    assert page.input_value("#claim-box textarea[name=text]") == QUESTION + " Thanks."
    assert page.locator("#claim-box details.reassign").evaluate("d => d.open")
    assert page.input_value("#claim-box select[name=assignee]") == "carol"
    assert unsent(page) == []
    shoot(page, "question-kept")

    # Her own claim re-renders the claim box too: the forms she did not send stay as they are.
    page.click("#claim-box button:has-text('Claim')")
    alice.sees("#claim-box", "have claimed this")
    assert page.locator("#claim-box details.ask").evaluate("d => d.open")
    assert page.input_value("#claim-box textarea[name=text]") == QUESTION + " Thanks."
    assert page.input_value("#claim-box select[name=assignee]") == "carol"
    page.click("#claim-box button:has-text('Release')")
    alice.sees("#claim-box", "Nobody has claimed this yet.")
    assert page.input_value("#claim-box textarea[name=text]") == QUESTION + " Thanks."
    page.focus("#claim-box textarea[name=text]")

    # bob claims it: only the holder may ask, so alice's form goes, and her text is kept
    # above, marked not sent, with the claim box saying who has it.
    services.escalation_claim(escalation_id=escalation["id"], user=other_reviewer)
    alice.sees("#claim-box", "bob is on this")
    assert page.locator("#claim-box form[action$='/ask']").count() == 0
    alice.sees(
        "[data-unsent]",
        "Not sent. bob claimed this escalation while you were writing: only they can ask the agent now."
        " What you typed is kept below to copy.",
    )
    assert "Ask the agent a question" in alice.text("[data-unsent] label")
    assert unsent(page) == [QUESTION + " Thanks."]
    assert page.locator("[data-unsent] textarea").evaluate("t => t.readOnly && !t.form")
    assert page.evaluate("document.activeElement.closest('.unsent') !== null")  # she was typing there
    shoot(page, "question-unsent")

    # Later updates leave the kept text where it is; Dismiss removes it.
    services.escalation_comment(escalation_id=escalation["id"], user=other_reviewer, body="Mine now.")
    alice.sees("#activity", "Mine now.")
    assert unsent(page) == [QUESTION + " Thanks."]
    page.click("[data-unsent] button:has-text('Dismiss')")
    assert unsent(page) == []
    assert alice.errors == []


def test_decided_meanwhile_the_panel_says_so_and_what_was_typed_is_kept_not_sent(
    live_server_asgi, chromium, agent_with_token, reviewer, other_reviewer  # noqa: F811
):
    escalation, alice = alice_on_a_new_escalation(live_server_asgi, chromium, agent_with_token[1])
    page = alice.page

    # alice writes an instruction, edits the args and starts a take-over note.
    page.fill("#decide-form textarea[name=instruction]", "Leave billing/legacy alone.")
    page.fill("#decide-form textarea[name='args-update-callers']", '{"paths": ["billing/api/"]}')
    page.click("#decision-panel summary:has-text('Take the run over')")
    take_over = "#decision-panel details:has(summary:has-text('Take the run over')) textarea"
    page.fill(take_over, "I will finish the migration myself")

    # bob decides: her panel says so, and nothing in it can be sent any more ...
    decide_shim(escalation, other_reviewer)
    page.locator("#decision-panel .decided").wait_for(timeout=LIVE_MS)
    panel = " ".join(alice.text("#decision-panel").split())
    assert "Decided by bob" in panel
    assert "Add a compatibility shim" in panel
    assert page.locator("#decision-panel :is(form, textarea:not([readonly]), [data-action-bar])").count() == 0
    # ... and what she typed is kept in it, below the decision, not sent.
    alice.sees("[data-unsent]", "Not sent. bob decided this escalation while you were writing. What you typed")
    assert sorted(unsent(page)) == sorted(
        ["Leave billing/legacy alone.", '{"paths": ["billing/api/"]}', "I will finish the migration myself"]
    )
    text = " ".join(alice.text("[data-unsent]").split())
    assert "Proceed with an option: Instruction" in text
    assert "Proceed with an option: Args" in text
    assert "Take the run over: Note to the agent" in text
    assert page.locator("[data-unsent] .unsent").count() == 1  # one box for one update
    assert page.evaluate("document.activeElement.closest('.unsent') !== null")
    shoot(page, "decided-unsent")
    assert alice.errors == []


def test_a_decision_refused_because_someone_decided_first_keeps_its_text(
    live_server_asgi, chromium, agent_with_token, reviewer, other_reviewer  # noqa: F811
):
    escalation, alice = alice_on_a_new_escalation(live_server_asgi, chromium, agent_with_token[1])
    page = alice.page
    # The race: bob's decision lands before its notice reaches alice's page.
    page.evaluate("document.querySelector('[data-live-sync]').remove()")
    decide_shim(escalation, other_reviewer)
    page.fill("#decide-form textarea[name=instruction]", "Only billing/api/, not legacy.")
    page.click("text=Decide: proceed with this option")
    alice.sees("#decision-panel", "Not recorded: bob decided first.")
    alice.sees("#decision-panel", "Decided by bob")
    assert unsent(page) == ["Only billing/api/, not legacy."]
    alice.sees("[data-unsent]", "Not sent. Refused: bob decided this escalation first. What you typed")
    assert "Proceed with an option: Instruction" in alice.text("[data-unsent]")
    assert alice.errors == []


def test_a_lost_claim_keeps_the_question_being_typed_not_sent_and_the_decision_form_as_it_was(
    live_server_asgi, chromium, agent_with_token, reviewer, other_reviewer  # noqa: F811
):
    escalation, alice = alice_on_a_new_escalation(live_server_asgi, chromium, agent_with_token[1])
    page = alice.page
    page.click("#claim-box button:has-text('Claim')")
    alice.sees("#claim-box", "have claimed this")
    # alice writes an instruction in the decision form, then types a question to the agent.
    page.fill("#decide-form textarea[name=instruction]", "Only billing/api/, not legacy.")
    page.click("#claim-box summary:has-text('Ask the agent a question')")
    page.fill("#claim-box textarea[name=text]", QUESTION)

    # Her lease runs out unrenewed (her laptop slept), bob claims it, and her page hears
    # nothing live (its socket missed it): the claim's next renewal is what tells her.
    page.evaluate("document.querySelector('[data-live-sync]').remove()")
    Escalation.objects.filter(pk=escalation["id"]).update(claimed_until=timezone.now() - timedelta(seconds=1))
    services.escalation_claim(escalation_id=escalation["id"], user=other_reviewer)
    page.evaluate(  # the renewal the page sends every 60 s, now
        "const r = document.querySelector('[data-claim-renew]');"
        "htmx.ajax('POST', r.getAttribute('hx-post'), {source: r, target: '#claim-box', swap: 'outerHTML'})"
    )
    alice.sees("#claim-box", "bob is on this")
    # Only the holder may ask: her question's form is gone, and its text is kept, not sent,
    # saying why, with the focus on it (she was typing there).
    alice.sees("[data-unsent]", "Not sent. Your claim has passed to bob. What you typed is kept below to copy.")
    assert "Your claim has passed" not in alice.text("#claim-box")  # said once, in the box
    assert unsent(page) == [QUESTION]
    assert "Ask the agent a question" in alice.text("[data-unsent] label")
    assert page.evaluate("document.activeElement.closest('.unsent') !== null")
    # The decision form is not the claim box's: it stays as she left it.
    assert page.input_value("#decide-form textarea[name=instruction]") == "Only billing/api/, not legacy."
    shoot(page, "claim-lost-unsent")

    # The keyboard: Tab from the kept text reaches Dismiss; Enter dismisses the box and
    # leaves the focus at the panel's heading.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.matches('[data-unsent-dismiss]')")
    page.keyboard.press("Enter")
    assert unsent(page) == []
    assert page.evaluate("document.activeElement.id") == "decision-heading"
    # Deciding now asks her to decide over bob's claim, her instruction kept.
    page.click("text=Decide: proceed with this option")
    alice.sees("#decision-panel", "bob has claimed this: tick the box")
    assert page.input_value("#decide-form textarea[name=instruction]") == "Only billing/api/, not legacy."
    assert alice.errors == []
