"""A policy page's suggestion, in a real browser (Debian chromium): loaded after the page (a
loading state meanwhile, an error with "Try again" if it fails), followed by keyboard into
the prefilled backtest, whose numbers are the suggestion's, on a desktop and at phone width;
nothing is saved until Save."""

import re

import pytest

from escalations import services
from escalations.models import Policy
from tests.conftest import ensure_default_policies, make_user
from tests.test_browser import browser, sign_in  # noqa: F401 - browser: the fixture
from tests.test_policy_suggestions import judged_history_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def cells(backtest, row: str) -> list[int]:
    """A backtest row's numbers: saved, these settings, these on the other confidence."""
    return [int(text) for text in backtest.locator("tr", has_text=row).locator("td").all_text_contents()]


@pytest.mark.parametrize("width", [1360, 390])
def test_a_suggestion_opens_its_backtest_by_keyboard(live_server_asgi, browser, width):  # noqa: F811
    ensure_default_policies()
    make_user("maya", "manager")
    reviewer = make_user("alice", "reviewer")
    agent = services.agent_create(name="refactor-bot", domain="default").agent
    # 24 judged at 0.62 (tier 3), 23 took the recommended option; 3 at 0.56, 2 did not.
    judged_history_of(agent, reviewer, n=24, agreed=23, confidence=0.62)
    judged_history_of(agent, reviewer, n=3, agreed=1, confidence=0.56, start=50, reason="missing_information")

    page = sign_in(browser, live_server_asgi, "maya")
    page.set_viewport_size({"width": width, "height": 900})
    # The page comes first; the section says it is looking, then fails once: the server's
    # error and a way to ask again.
    held = []
    page.route("**/policies/default/suggestions", lambda route: held.append(route))
    page.goto(f"{live_server_asgi}/policies/default")
    section = page.locator("#suggestions")
    loading = section.get_by_text("Looking through the last 30 days…")
    loading.wait_for()
    assert section.get_attribute("aria-busy") == "true"
    assert page.locator("input[name=flag_threshold]").is_editable()
    busy_height = section.bounding_box()["height"]
    for _ in range(100):  # the request is on its way (held until answered)
        if held:
            break
        page.wait_for_timeout(50)
    held.pop().fulfill(status=500, body="boom")
    alert = section.get_by_role("alert")
    alert.wait_for()
    assert alert.text_content() == "The suggestions could not be loaded (the server answered 500)."
    assert section.get_attribute("aria-busy") == "false"
    assert not loading.is_visible()
    assert section.bounding_box()["height"] == busy_height  # no jump between the two
    page.unroute("**/policies/default/suggestions")
    section.get_by_role("button", name="Try again").click()

    suggestion = page.locator(".suggestion", has_text="refactor-bot")
    assert "23 of refactor-bot's last 24 judged approach_choice escalations" in suggestion.text_content()
    assert "would have changed 1 decision of the 24" in suggestion.text_content()
    assert section.get_attribute("aria-busy") is None
    # the keyboard is still in the section it asked again for
    assert page.evaluate("document.activeElement.textContent") == "Suggestions from history"
    # its name says which suggestion it opens (the agent and reason after the visible words)
    link = suggestion.get_by_role("link", name=re.compile(r"^Open in backtest\s*: approach_choice, refactor-bot$"))
    link.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/policies/default?flag_threshold=0.6&backtest=1#backtest")
    assert page.locator("input[name=flag_threshold]").input_value() == "0.6"
    backtest = page.locator("#backtest")
    saved, typed, _ = cells(backtest, "Decided at once (tiers 1-2), yet a person chose another option")
    assert typed - saved == 1
    saved, typed, _ = cells(backtest, "Reach a person")
    assert saved - typed == 24
    # the page fits the width: nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    # Nothing changed until Save; then the new version holds the suggested threshold.
    assert Policy.objects.get(domain="default").flag_threshold == 0.7
    page.get_by_role("button", name="Save as version 2").click()
    page.wait_for_url("**/policies/default")
    assert "flag threshold: 0.7 → 0.6" in page.locator("body").text_content()
    assert Policy.objects.get(domain="default").flag_threshold == 0.6
    assert page.js_errors == []
