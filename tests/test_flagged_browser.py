"""The flagged backlog in a real browser: cleared from the keyboard."""

import pytest

from escalations.models import FlagReview
from tests.test_browser import browser, post_escalation, sign_in  # noqa: F401 - browser: the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_flagged_list_is_cleared_with_the_keyboard(live_server_asgi, browser, agent_with_token, reviewer):  # noqa: F811
    base, token = live_server_asgi, agent_with_token[1]
    for n, confidence in enumerate((0.88, 0.72, 0.80)):
        created = post_escalation(base, token, title=f"Flagged {n}", confidence=confidence)
        assert created["tier"] == 2
    page = sign_in(browser, base, "alice")
    page.goto(f"{base}/flagged/?sort=uncertain")
    count = page.locator("[data-flagged-count]")
    assert count.text_content() == "3"
    assert page.locator("[data-flagged-row]").first.text_content().count("Flagged 1") == 1

    # `?` lists this page's own keys in the shared dialog, as on every other page
    page.keyboard.press("?")
    dialog = page.locator("#shortcuts")
    assert dialog.is_visible()
    keys = [" ".join(t.split()) for t in dialog.locator("dt").all_text_contents()]
    assert keys == ["j / k", "f", "x", "Enter", "?"], keys
    assert "Fine: mark the selected one fine" in dialog.text_content()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    # x selects the first row, j moves on, f marks the second fine: only the second goes
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("f")
    page.wait_for_function("document.querySelector('[data-flagged-count]').textContent === '2'")
    assert FlagReview.objects.get().escalation.title == "Flagged 2"

    # f, f: straight on to the next each time, until nothing is left
    page.keyboard.press("f")
    page.wait_for_function("document.querySelector('[data-flagged-count]').textContent === '1'")
    page.keyboard.press("f")
    page.wait_for_selector("[data-flagged-empty]")
    assert page.locator("[data-flagged-count]").text_content() == "0"
    assert FlagReview.objects.filter(verdict="fine").count() == 3
    assert page.js_errors == []
