"""Two reviewers on one escalation, in two browser contexts (Playwright driving Debian's
Chromium) against the real ASGI application: presence, a claim, a decision that closes the
other's controls, the agent's long-poll answered, and hostile package text kept as text."""

import os
import threading
import time

import httpx
import pytest

from tests.conftest import make_package, need
from tests.test_browser import CHROMIUM, PASSWORD
from tests.test_browser import post_escalation as post

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE_MS = 5000
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def chromium(monkeypatch):
    need(os.path.exists(CHROMIUM), "Debian chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's ORM calls between
    # browser steps stay plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            yield browser
        finally:
            browser.close()


class Reviewer:
    """One person's browser context: the page, its script errors and any dialog that opened."""

    def __init__(self, browser, base: str, username: str) -> None:
        self.name = username
        self.page = browser.new_context(viewport={"width": 1360, "height": 900}, bypass_csp=True).new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", self._dialog)
        # Counts the live re-fetches (live.js: one on every socket (re)connect, one per notice)
        # that have been swapped in: open() waits for the first, the catch-up after connecting.
        self.page.add_init_script(
            "document.addEventListener('htmx:afterOnLoad', (e) => {"
            " if (e.detail.elt && e.detail.elt.matches && e.detail.elt.matches('[data-live-sync]')) {"
            " const d = document.documentElement.dataset; d.liveSynced = String(Number(d.liveSynced || 0) + 1); } });"
        )
        self.page.goto(f"{base}/accounts/login/")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(f"{base}/")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str) -> None:
        """The page, live, with the re-fetch its socket's connect starts swapped in: a click
        before that lands could be undone by it (an opened <details> closed again)."""
        self.page.goto(url)
        self.page.wait_for_function("document.body.dataset.live === 'live'", timeout=LIVE_MS)
        self.page.wait_for_function(
            "!document.querySelector('[data-live-sync]') || Number(document.documentElement.dataset.liveSynced || 0) >= 1",
            timeout=LIVE_MS,
        )

    def sees(self, selector: str, words: str) -> None:
        """Until the element's text holds `words` (live, without a reload)."""
        self.page.wait_for_function(
            "([s, w]) => (document.querySelector(s)?.textContent || '').includes(w)",
            arg=[selector, words],
            timeout=LIVE_MS,
        )

    def text(self, selector: str) -> str:
        return self.page.text_content(selector) or ""


def long_poll(base: str, token: str, escalation_id: str) -> dict:
    """GET ...?wait=30 in a thread, as a waiting agent does; the result lands in the dict."""
    result: dict = {}

    def wait() -> None:
        response = httpx.get(
            f"{base}/api/v1/escalations/{escalation_id}",
            params={"wait": 30},
            headers={"Authorization": f"Bearer {token}"},
            timeout=40,
        )
        result.update(status=response.status_code, body=response.json(), at=time.monotonic())

    result["thread"] = threading.Thread(target=wait, daemon=True)
    result["thread"].start()
    return result


def test_two_reviewers_see_each_other_a_claim_and_the_decision_live(
    live_server_asgi, chromium, agent_with_token, reviewer, other_reviewer
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post(base, token)
    url = f"{base}/escalations/{escalation['id']}"
    alice, bob = Reviewer(chromium, base, "alice"), Reviewer(chromium, base, "bob")

    # both open it: each sees the other is there
    alice.open(url)
    bob.open(url)
    alice.sees("#presence", "bob")
    bob.sees("#presence", "alice")
    assert "alice" not in alice.text("#presence .presence-list")  # never yourself
    bob.page.evaluate("window.__sameDocument = true")

    # the agent waits for its decision meanwhile
    agent = long_poll(base, token, escalation["id"])
    time.sleep(0.3)
    assert "status" not in agent

    # alice claims: bob sees it at once
    alice.page.click("#claim-box button:has-text('Claim')")
    alice.sees("#claim-box", "have claimed this")
    bob.sees("#claim-box", "alice is on this")
    assert bob.text("#escalation-status").strip() == "Claimed"

    # alice decides: bob's controls close and say who decided what
    decided_at = time.monotonic()
    alice.page.click("text=Decide: proceed with this option")
    bob.page.locator("#decision-panel .decided").wait_for(timeout=LIVE_MS)
    panel = " ".join(bob.text("#decision-panel").split())
    assert "Decided by alice" in panel
    assert "Update all 14 callers" in panel
    assert bob.page.locator("#decision-panel input[name=option]").count() == 0
    assert bob.page.evaluate("window.__sameDocument") is True  # no reload

    # and the agent's long-poll returns that decision
    agent["thread"].join(timeout=10)
    assert agent["status"] == 200
    decision = agent["body"]["decision"]
    assert decision["kind"] == "option"
    assert decision["option"] == "update-callers"
    assert decision["decided_by"] == {"type": "human", "name": "alice"}
    assert agent["at"] - decided_at < 5

    # bob leaves: alice's page says so
    bob.page.close()
    alice.page.wait_for_function(
        "!document.querySelector('#presence .presence-list').textContent.includes('bob')",
        timeout=LIVE_MS,
    )
    assert alice.errors == []
    assert bob.errors == []


def test_html_in_a_package_stays_text_on_the_page_and_in_live_updates(
    live_server_asgi, chromium, agent_with_token, reviewer, other_reviewer
):
    base, token = live_server_asgi, agent_with_token[1]
    package = make_package()
    package["history"][1]["detail"] = f"stderr: {HOSTILE}"
    escalation = post(
        base,
        token,
        title=f"Ship it? {HOSTILE}",
        uncertainty=f"Unsure: {HOSTILE}",
        history=[{**step, "action": f"{step['action']} {HOSTILE}"} for step in package["history"]],
        options=[
            {"key": "go", "label": f"Go {HOSTILE}", "recommended": True},
            {"key": "stop", "label": f"Stop {HOSTILE}"},
        ],
    )
    url = f"{base}/escalations/{escalation['id']}"
    alice, bob = Reviewer(chromium, base, "alice"), Reviewer(chromium, base, "bob")
    alice.open(url)
    bob.open(url)

    assert HOSTILE in alice.text("h1")
    assert HOSTILE in alice.text(".uncertainty-text")
    assert HOSTILE in alice.text(".steps")
    assert f"Go {HOSTILE}" in alice.text("#decision-panel")

    # live: bob's comment and bob's decision reach alice as text
    bob.page.click("#tab-team")  # the team's timeline and comments: a tab beside the history
    bob.page.fill("#comment-form textarea[name=body]", f"Careful: {HOSTILE}")
    bob.page.press("#comment-form textarea[name=body]", "Control+Enter")
    alice.sees("#activity", f"Careful: {HOSTILE}")
    bob.page.click("text=Decide: proceed with this option")
    alice.page.locator("#decision-panel .decided").wait_for(timeout=LIVE_MS)
    assert f"Go {HOSTILE}" in alice.text("#decision-panel .decided")

    for person in (alice, bob):
        assert person.page.locator("img[src=x]").count() == 0
        inline = person.page.evaluate("[...document.scripts].map(s => s.textContent).join()")
        assert "alert" not in inline
        assert person.dialogs == [], person.dialogs
        assert person.errors == []


def test_an_args_edit_that_is_not_a_json_object_is_stopped_before_it_is_sent(
    live_server_asgi, chromium, agent_with_token, reviewer
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post(base, token)
    alice = Reviewer(chromium, base, "alice")
    alice.open(f"{base}/escalations/{escalation['id']}")
    posts: list[str] = []
    alice.page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    args = alice.page.locator("textarea[name='args-update-callers']")
    args.fill('["billing/"]')
    alice.sees("#decision-panel", "must be a JSON object {…}, not an array.")
    args.fill('{"paths": ["billing/"')
    alice.sees("#decision-panel", "args of “Update all 14 callers” is not valid JSON")
    alice.page.click("text=Decide: proceed with this option")
    time.sleep(0.3)
    assert not [u for u in posts if u.endswith("/decide")]
    assert alice.page.evaluate("document.activeElement.name") == "args-update-callers"
    assert args.get_attribute("aria-invalid") == "true"

    args.fill('{"paths": ["billing/"], "dry_run": true}')
    assert alice.page.locator("#decision-panel .field-error").count() == 0
    alice.page.click("text=Decide: proceed with this option")
    alice.page.locator("#decision-panel .decided").wait_for(timeout=LIVE_MS)
    assert alice.errors == []
