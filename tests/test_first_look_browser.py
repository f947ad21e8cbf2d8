"""A machine reviewer's first look in the browser (Playwright driving Debian's chromium against
the ASGI server): while the machine looks, the queue says "machine looking (n s left)"; when
it leaves a recommendation (through the reviewer API, told by a signed webhook to a real HTTP
server on 127.0.0.1), or when its look runs out, the row turns into an ordinary queued one
live; the person who opens the escalation sees the machine's recommendation, note and
confidence beside the agent's."""

import json
import re
import time

import httpx
import pytest

from escalations import services
from escalations.models import Escalation
from tests.test_browser import post_escalation as post
from tests.test_machine_reviewers import first_look_policy, machine_token
from tests.test_review_browser import LIVE_MS, Reviewer, chromium  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOOKING = re.compile(r"machine looking \((\d+) s left\)")


def open_queue(chromium, base: str) -> Reviewer:  # noqa: F811
    alice = Reviewer(chromium, base, "alice")
    alice.open(f"{base}/")
    # the re-render every (re)connect makes has landed
    alice.page.wait_for_function("!document.querySelector('#queue.htmx-request')", timeout=LIVE_MS)
    return alice


def row_claim(alice: Reviewer, escalation_id: str) -> str:
    row = alice.page.locator(f"#escalation-{escalation_id}")
    row.wait_for(timeout=LIVE_MS)
    return row.locator("[data-claim-cell]").text_content() or ""


def test_the_queue_shows_the_look_and_the_person_sees_the_machines_advice_beside_the_agents(
    live_server_asgi, chromium, agent_with_token, reviewer, receiver, capsys, settings  # noqa: F811
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the server thread sends the offer after commit
    base, token = live_server_asgi, agent_with_token[1]
    machine, _ = machine_token(capsys, url=receiver.url)
    first_look_policy("claude-reviewer", seconds=60)
    alice = open_queue(chromium, base)

    escalation = post(base, token, title="Retire the legacy billing export")
    assert escalation["status"] == "claimed"
    # the new row arrives live, the machine's for now: no Claim button
    claim = row_claim(alice, escalation["id"])
    left = LOOKING.search(claim)
    assert left, claim
    assert 50 <= int(left.group(1)) <= 60, claim
    assert alice.page.locator(f"#escalation-{escalation['id']} [data-claim]").count() == 0
    # it counts down on the page, a second at a time
    alice.page.wait_for_function(
        "([id, n]) => Number(document.querySelector(`#escalation-${id} [data-look-left]`).textContent) < n",
        arg=[escalation["id"], int(left.group(1))],
        timeout=LIVE_MS,
    )

    # the machine, told by its webhook, leaves its advice through the reviewer API
    (offer,) = receiver.wait_for(1)
    review_url = offer.json()["review_url"]
    advice = httpx.post(
        f"{review_url}/recommendation",
        headers={"Authorization": f"Bearer {machine}"},
        json={
            "option": "shim",
            "args": {"keep_old_export": True, "until": "2027-01-01"},
            "note": "The nightly report still reads the old export; keep a shim until it moves.",
            "confidence": 0.74,
        },
        timeout=10,
    )
    assert advice.status_code == 201, advice.text

    # the row becomes an ordinary queued one without a reload
    alice.sees(f"#escalation-{escalation['id']} [data-claim-cell]", "unclaimed")
    assert "machine looking" not in row_claim(alice, escalation["id"])
    alice.page.locator(f"#escalation-{escalation['id']} [data-claim] button").wait_for(timeout=LIVE_MS)

    # the person who opens it sees the machine's recommendation beside the agent's
    alice.page.click(f"#escalation-{escalation['id']} .row-title")
    alice.page.wait_for_url(f"{base}/escalations/{escalation['id']}")
    advice_box = alice.page.locator("section.recommendations")
    text = " ".join((advice_box.text_content() or "").split())
    assert "claude-reviewer machine recommends Add a compatibility shim shim, 74% confident" in text
    assert "The nightly report still reads the old export; keep a shim until it moves." in text
    advice_box.locator("summary:has-text('Args it would act with')").click()
    shown = advice_box.locator("pre.code").text_content() or ""
    assert json.loads(shown) == {"keep_old_export": True, "until": "2027-01-01"}
    # the agent's own view beside it: its recommended option and its stated confidence
    recommended = alice.page.locator(".options .option.is-recommended")
    assert "Update all 14 callers" in (recommended.text_content() or "")
    assert "★ Recommended" in (recommended.text_content() or "")
    assert "The agent is 62% confident in its recommended option." in alice.text(".uncertainty-foot")
    # in reading order: the agent's uncertainty, the machine's advice, the agent's options
    order = alice.page.eval_on_selector_all(
        "section.uncertainty, section.recommendations, section.options-section",
        "nodes => nodes.map(n => n.classList.contains('uncertainty') ? 'agent' : n.classList.contains('recommendations') ? 'machine' : 'options')",
    )
    assert order == ["agent", "machine", "options"]
    assert alice.errors == []


def test_a_look_that_runs_out_turns_into_an_ordinary_row_live(
    live_server_asgi, chromium, agent_with_token, reviewer, capsys  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    machine_token(capsys)  # a machine with no webhook: it never answers
    first_look_policy("claude-reviewer", seconds=4)
    alice = open_queue(chromium, base)

    escalation = post(base, token, title="Nobody answers for the machine")
    claim = row_claim(alice, escalation["id"])
    assert LOOKING.search(claim), claim

    # the periodic sweep (celery beat's claims_expire) once the look's time is up
    until = Escalation.objects.get(pk=escalation["id"]).first_look_until
    time.sleep(max(0.0, (until - Escalation.objects.get(pk=escalation["id"]).created_at).total_seconds()) + 0.5)
    assert services.claims_expire() == 1

    alice.sees(f"#escalation-{escalation['id']} [data-claim-cell]", "unclaimed")
    assert "machine looking" not in row_claim(alice, escalation["id"])
    alice.page.locator(f"#escalation-{escalation['id']} [data-claim] button").click()
    alice.sees(f"#escalation-{escalation['id']} [data-claim-cell]", "you")
    assert alice.errors == []
