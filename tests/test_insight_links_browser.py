"""A drift alert leads to a prefilled backtest, in a real browser (Debian chromium)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from escalations import services
from insights.models import ActivityRollup
from tests.conftest import ensure_default_policies, make_user
from tests.insights_data import create
from tests.test_browser import browser, sign_in  # noqa: F401 - browser: the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_drift_alert_leads_to_the_prefilled_backtest(live_server_asgi, browser):  # noqa: F811
    ensure_default_policies()
    make_user("maya", "manager")
    agent = services.agent_create(name="drifty", domain="default").agent
    today = timezone.now().date()
    monday = today - timedelta(days=today.weekday())
    days = [monday - timedelta(weeks=4) + timedelta(days=i) for i in range((today - monday).days + 29)]
    ActivityRollup.objects.bulk_create(
        ActivityRollup(
            day=day, agent=agent, domain="default", gate_checks=100, escalations=30 if day >= monday else 2
        )
        for day in days
    )

    # Tier 3 under the saved flag threshold (0.70), tier 2 under the proposed one (0.65).
    create(agent, "r1", 0.68, timezone.now() - timedelta(hours=1))

    page = sign_in(browser, live_server_asgi, "maya")
    page.goto(f"{live_server_asgi}/insights/")
    alert = page.locator(".drift-item", has_text="drifty")
    alert.get_by_role("link", name="Backtest a lower flag threshold").click()
    page.wait_for_url("**/policies/default?flag_threshold=0.65&backtest=1#backtest")
    assert page.locator("input[name=flag_threshold]").input_value() == "0.65"
    assert page.locator("input[name=escalate_threshold]").input_value() == "0.5"
    backtest = page.locator("#backtest")
    assert "Prefilled from a link" in page.locator(".prefilled").text_content()
    flagged = backtest.locator("tr", has_text="Flagged (tier 2)").locator("td")
    # saved, these settings, these settings on calibrated confidence (no judged history
    # yet: calibrated = stated, so the same as these settings)
    assert flagged.all_text_contents() == ["0", "1", "1"]
    page.go_back()
    page.locator(".drift-item", has_text="drifty").get_by_role("link", name="Agent page").click()
    page.wait_for_url(f"**/agents/{agent.pk}")
    assert page.js_errors == []
