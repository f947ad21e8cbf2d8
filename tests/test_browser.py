"""Reviewer flows in a real browser: Playwright driving Debian's Chromium against the real
ASGI application (uvicorn, websockets included)."""

import os
import re

import httpx
import pytest

from escalations.models import Decision
from tests.conftest import make_package, need

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery"  # the conftest reviewers' password
LIVE_TIMEOUT_MS = 5000


@pytest.fixture
def browser(monkeypatch):
    need(os.path.exists(CHROMIUM), "Debian chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test makes
    # between browser steps are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser, base: str, username: str):
    # bypass_csp: Playwright's wait_for_function evaluates its predicate with eval, which the
    # pages' policy forbids; tests/test_csp_browser.py loads every page under the policy.
    context = browser.new_context(viewport={"width": 1360, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.js_errors = errors
    return page


def wait_live(page) -> None:
    """Until the page's websocket is open (the live indicator says so)."""
    page.wait_for_function("document.body.dataset.live === 'live'", timeout=LIVE_TIMEOUT_MS)


def post_escalation(base: str, token: str, **overrides) -> dict:
    response = httpx.post(
        f"{base}/api/v1/escalations",
        json=make_package(**overrides),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_reviewer_signs_in_sees_the_package_live_and_decides_with_edited_args(
    live_server_asgi, browser, agent_with_token, reviewer
):
    base, token = live_server_asgi, agent_with_token[1]
    page = sign_in(browser, base, "alice")
    assert "Nothing waits for a human" in page.text_content("#queue-table")
    wait_live(page)

    # given a package posted through the API while the queue is open
    escalation = post_escalation(base, token, title="Update callers of charge() <b>now</b>?")

    # then its row appears without a reload, as text
    row = page.locator(f"#escalation-{escalation['id']}")
    row.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "Update callers of charge() <b>now</b>?" in row.text_content()
    assert "agent-007" in row.text_content()

    # open it: uncertainty first, the recommended option pre-selected with its args
    row.locator("a.row-title").click()
    page.wait_for_selector("#decision-panel")
    assert "charge() changed signature" in page.text_content(".uncertainty")
    assert page.is_checked("input[name=option][value=update-callers]")
    args = page.locator("textarea[name='args-update-callers']")
    assert '"billing/"' in args.input_value()

    # a broken edit is refused next to the field, then fixed
    args.fill('{"paths": ["billing/"')
    page.click("text=Decide: proceed with this option")
    page.wait_for_selector("#decision-panel .field-error")
    assert "is not valid JSON" in page.text_content("#decision-panel")
    page.locator("textarea[name='args-update-callers']").fill(
        '{"paths": ["billing/"], "skip": ["billing/legacy"]}'
    )
    page.fill("#decision-panel .decide-form textarea[name=instruction]", "Leave legacy alone.")
    page.click("text=Decide: proceed with this option")

    decided = page.locator("#decision-panel .decided")
    decided.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert "Decided by alice" in decided.text_content()
    assert "Leave legacy alone." in decided.text_content()
    assert page.locator("#decision-panel input[name=option]").count() == 0
    assert page.text_content("#escalation-status").strip() == "Decided"

    decision = Decision.objects.get(escalation_id=escalation["id"])
    assert decision.args == {"paths": ["billing/"], "skip": ["billing/legacy"]}
    assert decision.decided_by_name == "alice"
    assert page.js_errors == []

    # and the queue no longer lists it
    page.click("nav >> text=Queue")
    page.wait_for_selector("#queue-table")
    assert page.locator(f"#escalation-{escalation['id']}").count() == 0


def test_a_decision_elsewhere_closes_the_other_reviewers_controls_live(
    live_server_asgi, browser, agent_with_token, reviewer, other_reviewer
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post_escalation(base, token)
    url = f"{base}/escalations/{escalation['id']}"

    alice, bob = sign_in(browser, base, "alice"), sign_in(browser, base, "bob")
    for page in (alice, bob):
        page.goto(url)
        wait_live(page)
    bob.evaluate("window.__sameDocument = true")
    assert bob.locator("#decision-panel input[name=option]").count() == 2

    # alice claims: bob sees it at once
    alice.click("#claim-box button")
    bob.wait_for_function(
        "document.querySelector('#claim-box').textContent.includes('alice is on this')",
        timeout=LIVE_TIMEOUT_MS,
    )

    # bob starts typing an instruction; alice decides
    bob.fill("#decision-panel .decide-form textarea[name=instruction]", "half-written thought")
    alice.click("text=Decide: proceed with this option")
    alice.locator("#decision-panel .decided").wait_for(timeout=LIVE_TIMEOUT_MS)

    # bob's page closes its controls and says who decided what, without a reload
    bob.locator("#decision-panel .decided").wait_for(timeout=LIVE_TIMEOUT_MS)
    panel = bob.text_content("#decision-panel")
    assert re.search(r"Decided by\s+alice", panel)
    assert "Update all 14 callers" in panel
    assert bob.locator("#decision-panel input[name=option]").count() == 0
    assert bob.text_content("#escalation-status").strip() == "Decided"
    assert bob.evaluate("window.__sameDocument") is True
    assert alice.js_errors == []
    assert bob.js_errors == []
    assert Decision.objects.filter(escalation_id=escalation["id"]).count() == 1
