"""People in a real browser: a manager invites a reviewer, who sets a password from the
e-mailed link, signs in and decides."""

import re

import pytest
from django.core import mail

from escalations.models import Decision
from tests.test_browser import browser, post_escalation, sign_in  # noqa: F401 - browser: the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_invites_a_reviewer_who_signs_in_and_decides(live_server_asgi, browser, agent_with_token, manager):  # noqa: F811
    base, token = live_server_asgi, agent_with_token[1]
    maya = sign_in(browser, base, "maya")
    maya.click("nav >> text=Members")
    maya.fill("input[name=email]", "rui@example.com")
    maya.select_option("select[name=role]", "reviewer")
    maya.click("text=Send the invitation")
    maya.wait_for_selector("[data-invitation]")
    assert maya.locator('[data-member="rui"]').count() == 1
    assert "invited" in maya.text_content('[data-member="rui"]')

    # the e-mail's one-time link
    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+/accounts/set-password/\S+/", mail.outbox[0].body).group(0)
    assert link.startswith(base)

    escalation = post_escalation(base, token, title="Drop the legacy billing table?")

    context = browser.new_context(viewport={"width": 1360, "height": 900}, bypass_csp=True)
    rui = context.new_page()
    rui.goto(link)
    rui.fill("input[name=new_password1]", "a-long-new-secret-42")
    rui.fill("input[name=new_password2]", "a-long-new-secret-42")
    rui.click("text=Set my password")
    rui.wait_for_url(f"{base}/accounts/login/")
    assert "Your password is set" in rui.text_content("main")
    rui.fill("input[name=username]", "rui")
    rui.fill("input[name=password]", "a-long-new-secret-42")
    rui.click("button[type=submit]")
    rui.wait_for_url(f"{base}/")

    rui.locator(f"#escalation-{escalation['id']} a.row-title").click()
    rui.wait_for_selector("#decision-panel")
    rui.click("text=Decide: proceed with this option")
    rui.locator("#decision-panel .decided").wait_for(timeout=5000)
    assert Decision.objects.get(escalation_id=escalation["id"]).decided_by_name == "rui"

    # the link does not work twice
    again = browser.new_context(bypass_csp=True).new_page()
    again.goto(link)
    assert "has been used already or has expired" in again.text_content("main")
