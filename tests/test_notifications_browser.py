"""Levels and notifications in a real browser (Playwright driving Debian's chromium): a
reviewer sets up Slack with the keyboard and sends a test that reaches a real receiver;
a manager adds a level from the policy page."""

import pytest

from escalations.models import EscalationLevel
from notifications.models import NotificationPreference
from tests.test_browser import browser, sign_in  # noqa: F401 - the fixture is used by name

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_sets_up_slack_with_the_keyboard_and_a_test_arrives(
    browser, live_server_asgi, reviewer, receiver, settings  # noqa: F811
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the server thread sends at once after commit
    page = sign_in(browser, live_server_asgi, "alice")
    page.get_by_role("link", name="Notifications").click()
    page.wait_for_url(f"{live_server_asgi}/settings/notifications")

    box = page.get_by_label("A new tier-4 halt by Slack")
    box.focus()
    page.keyboard.press("Space")
    assert box.is_checked()
    page.get_by_label("Slack incoming webhook URL").fill(receiver.url)
    page.get_by_role("button", name="Save notification settings").click()
    page.get_by_text("Notification settings saved.").wait_for()
    assert page.get_by_label("A new tier-4 halt by Slack").is_checked()
    assert NotificationPreference.objects.get(user=reviewer).choices["halt_created"] == ["slack"]

    page.get_by_role("button", name="Send a test").click()
    (request,) = receiver.wait_for(1)
    assert "Test notification from Handoff" in request.json()["text"]
    # The list refreshes itself until the messages settle.
    page.locator("#recent .dstatus-sent").first.wait_for(timeout=10_000)
    assert page.js_errors == []


def test_a_manager_adds_a_level_from_the_policy_page(browser, live_server_asgi, manager, reviewer, agent):  # noqa: F811
    page = sign_in(browser, live_server_asgi, "maya")
    page.goto(f"{live_server_asgi}/policies/default")
    page.get_by_role("link", name="Escalation levels →").click()
    page.get_by_text("No levels yet").wait_for()

    page.get_by_label("After (minutes)").fill("45")
    page.get_by_label("Priority boost").fill("15")
    page.get_by_label("alice").check()
    page.get_by_role("button", name="Save levels").click()

    page.get_by_text("Saved 1 level for default.").wait_for()
    ladder = " ".join(page.locator(".ladder li").nth(1).inner_text().split())
    assert ladder == "Level 2 after 45 min +15 priority 0 open alice"
    row = EscalationLevel.objects.get()
    assert (row.level, row.after_minutes, row.priority_boost) == (2, 45, 15)
    assert list(row.notify.all()) == [reviewer]
    assert page.js_errors == []
