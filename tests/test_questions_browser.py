"""Questions to the agent in the browser (Playwright driving Debian's chromium against the
ASGI server): a reviewer asks from the escalation page, the agent's long-poll returns the
question, the escalation leaves the open tab for "Waiting for agent", and the agent's answer
comes back on the page live, with the escalation back in the queue."""

import time

import httpx
import pytest

from tests.test_browser import post_escalation as post
from tests.test_review_browser import LIVE_MS, Reviewer, chromium, long_poll  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_asks_the_agent_answers_and_the_page_follows_live(
    live_server_asgi, chromium, agent_with_token, reviewer  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post(base, token)
    url = f"{base}/escalations/{escalation['id']}"
    alice = Reviewer(chromium, base, "alice")
    alice.open(url)
    agent = long_poll(base, token, escalation["id"])
    time.sleep(0.3)

    # An empty question is refused beside the field; nothing is sent.
    alice.page.click("#claim-box summary:has-text('Ask the agent a question')")
    alice.page.click("#claim-box button:has-text('Send the question')")
    alice.sees("#claim-box", "Write the question first.")
    assert "status" not in agent

    alice.page.fill("#claim-box textarea[name=text]", "Which callers live outside billing/?")
    asked_at = time.monotonic()
    alice.page.click("#claim-box button:has-text('Send the question')")
    alice.sees("#claim-box", "Waiting for the agent's answer.")
    alice.sees("#claim-box", "Which callers live outside billing/?")
    alice.sees("#escalation-status", "Waiting for agent")
    alice.sees("#activity", "Question Asked")

    # The agent's long-poll returns at once with the question.
    agent["thread"].join(timeout=10)
    assert agent["status"] == 200
    assert agent["body"]["status"] == "awaiting_agent"
    assert agent["body"]["question"]["text"] == "Which callers live outside billing/?"
    assert agent["at"] - asked_at < 5

    # The queue: gone from Open, listed under Waiting for agent with the question.
    queue = alice.page.context.new_page()
    queue.goto(f"{base}/")
    assert queue.locator(f"#escalation-{escalation['id']}").count() == 0
    queue.goto(f"{base}/?tab=waiting")
    row = queue.locator(f"#escalation-{escalation['id']}")
    assert "Which callers live outside billing/?" in row.text_content()
    assert "alice asked" in row.text_content()
    queue.close()

    # The agent answers: alice's page shows it live, and the escalation is back in the queue.
    answered = httpx.post(
        f"{url.replace('/escalations/', '/api/v1/escalations/')}/answer",
        headers={"Authorization": f"Bearer {token}"},
        json={"text": "Only billing/legacy/report.py, called nightly."},
        timeout=10,
    )
    assert answered.status_code == 200, answered.text
    alice.sees("#claim-box", "The agent answered")
    alice.sees("#claim-box", "Only billing/legacy/report.py, called nightly.")
    alice.sees("#escalation-status", "Pending")
    alice.sees("#activity", "Question Answered")
    alice.page.click("#claim-box button:has-text('Claim')")  # claimable again
    alice.sees("#claim-box", "have claimed this")
    assert alice.errors == []
