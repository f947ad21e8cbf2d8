"""The managers' agents page: the list and its health numbers, registering an agent (its
token and secret shown once), settings, token rotation and revocation, rolling the signing
secret, and redelivering a failed webhook to a real receiver."""

import html
import re

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from escalations import services
from escalations.errors import Invalid
from escalations.models import Agent, AgentToken, Delivery, Escalation, GateCheck
from escalations.tasks import deliver_webhook_task
from escalations.transport import webhooks
from tests import test_browser
from tests.conftest import AgentClient, ensure_default_policies, make_package, make_user
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

GATE = {"confidence": 0.95}
XSS = '<script>alert("x")</script>'


def register(client: Client, **overrides):
    data = {"name": "deploy-bot", "domain": "code", "resume_url": "", "daily_budget": "20"}
    data.update(overrides)
    return client.post(reverse("reviews:agent_new"), data)


def revealed(response, field_id: str) -> str:
    """The value of a shown-once input (`new-token`, `new-secret`) on the page."""
    match = re.search(rf'id="{field_id}"[^>]*value="([^"]+)"', response.content.decode())
    assert match, f"no {field_id} on the page"
    return html.unescape(match.group(1))


def field_errors(response) -> dict[str, str]:
    """Each field's error text, by the field's name (data-field) on the form."""
    page = response.content.decode()
    errors = {}
    for name, block in re.findall(r'data-field="(\w+)">(.*?)</div>', page, flags=re.S):
        messages = re.findall(r'class="field-error"[^>]*>(.*?)</p>', block, flags=re.S)
        if messages:
            errors[name] = html.unescape(" ".join(messages))
    return errors


def text(response) -> str:
    return response.content.decode()


def gate(token: str) -> int:
    return AgentClient(token).post_json("/api/v1/gate", GATE).status_code


# ---------------------------------------------------------------- who may


def agent_urls(agent: Agent, token: AgentToken) -> tuple[list[str], list[str]]:
    gets = [reverse("reviews:agents"), reverse("reviews:agent_new"), reverse("reviews:agent", args=[agent.pk])]
    posts = [
        reverse("reviews:agent_new"),
        reverse("reviews:agent_settings", args=[agent.pk]),
        reverse("reviews:agent_token_rotate", args=[agent.pk]),
        reverse("reviews:agent_token_revoke", args=[agent.pk, token.pk]),
        reverse("reviews:agent_secret_roll", args=[agent.pk]),
        reverse("reviews:agent_redeliver", args=[agent.pk, "00000000-0000-0000-0000-000000000000"]),
    ]
    return gets, posts


def test_a_reviewer_gets_the_403_page_and_changes_nothing(agent_with_token, reviewer_client):
    agent, token = agent_with_token
    secret = agent.signing_secret
    gets, posts = agent_urls(agent, agent.tokens.get())
    for url in gets:
        response = reviewer_client.get(url)
        assert response.status_code == 403, url
        assert "This page is for managers." in text(response)
    for url in posts:
        assert reviewer_client.post(url, {"name": "x", "revoke_others": "on"}).status_code == 403, url
    agent.refresh_from_db()
    assert agent.signing_secret == secret
    assert agent.tokens.count() == 1
    assert gate(token) == 200


def test_anonymous_visitors_are_sent_to_sign_in(agent):
    gets, posts = agent_urls(agent, agent.tokens.get())
    for url in gets + posts:
        response = Client().post(url) if url in posts else Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_the_nav_shows_agents_to_managers_only(manager_client, reviewer_client):
    nav = re.compile(r'<nav aria-label="Main">.*?</nav>', flags=re.S)
    manager_nav = nav.search(text(manager_client.get(reverse("reviews:agents")))).group(0)
    assert 'href="/agents/" aria-current="page">Agents</a>' in manager_nav
    reviewer_nav = nav.search(text(reviewer_client.get(reverse("reviews:agents")))).group(0)
    assert "/agents/" not in reviewer_nav


# ---------------------------------------------------------------- the list


def test_with_no_agent_the_list_says_how_to_register_one(manager_client):
    response = manager_client.get(reverse("reviews:agents"))
    assert response.status_code == 200
    assert "No agent is registered yet" in text(response)
    assert f'href="{reverse("reviews:agent_new")}"' in text(response)


def test_the_list_shows_budget_open_escalations_health_and_last_seen(
    api, agent, hooked, reviewer, manager_client
):
    open_one = services_escalate(api, run_id="r1")
    decided = services_escalate(api, run_id="r2")
    services_escalate(api, run_id="r3")
    decide(decided, reviewer)
    delivery = Delivery.objects.get(escalation=decided)
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.DELIVERED, delivered_at=delivery.created_at)
    assert open_one.status == Escalation.Status.PENDING

    response = manager_client.get(reverse("reviews:agents"))
    row = re.search(rf'<tr id="agent-{agent.pk}".*?</tr>', text(response), flags=re.S).group(0)
    assert agent.name in row
    assert "3 / 50" in row  # three escalations today against a budget of 50
    assert "<strong>2</strong>" in row  # two still open
    assert "1 delivered" in row
    assert "0 failed" in row
    assert "never" not in row  # seen: it escalated a moment ago


def test_the_list_flags_an_agent_over_budget_and_counts_gate_checks_as_seen(agent, manager_client):
    quiet = services.agent_create(name="quiet").agent
    checker = services.agent_create(name="checker").agent
    GateCheck.objects.create(agent=checker, domain="default", verdict="proceed", tier=1)
    Agent.objects.filter(pk=agent.pk).update(
        daily_budget=2, budget_used=3, budget_day=timezone.now().date()
    )
    page = text(manager_client.get(reverse("reviews:agents")))

    def row(a: Agent) -> str:
        found = re.search(rf'<tr id="agent-{a.pk}".*?</tr>', page, flags=re.S)
        assert found is not None, f"no row for {a.name}"
        return found.group(0)

    assert "3 / 2" in row(agent)
    assert "over budget" in row(agent)
    assert "over budget" not in row(checker)
    assert "under a minute ago" in row(checker)
    assert "never" in row(quiet)
    assert "polls: no webhooks" in row(quiet)  # no resume_url: nothing to deliver


def test_the_list_answers_in_the_same_number_of_queries_for_one_agent_or_many(
    agent, manager_client
):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert manager_client.get(reverse("reviews:agents")).status_code == 200
        return len(captured)

    one = queries()
    for n in range(6):
        new = services.agent_create(name=f"agent-{n}")
        GateCheck.objects.create(agent=new.agent, domain="default", verdict="proceed", tier=1)
    assert queries() == one
    # session, user, groups, the agents with every health number
    assert one == 4


def test_the_agent_page_answers_in_a_fixed_number_of_queries(
    api, hooked, reviewer, manager_client, django_assert_num_queries
):
    for n in range(3):
        decide(services_escalate(api, run_id=f"r{n}"), reviewer)
    Delivery.objects.update(status=Delivery.Status.FAILED, last_error="HTTP 410")
    # session, user, groups, agent with health, tokens, escalations, failed deliveries,
    # the domains of the settings form
    with django_assert_num_queries(8):
        response = manager_client.get(reverse("reviews:agent", args=[hooked.pk]))
    assert text(response).count("Redeliver</button>") == 3


# ---------------------------------------------------------------- register


def test_register_shows_the_token_once_and_it_works_against_the_api(manager_client):
    response = register(manager_client, name="deploy-bot", resume_url="https://agent.example/resume")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "Shown once" in text(response)
    assert 'data-copy="#new-token"' in text(response)
    token, secret = revealed(response, "new-token"), revealed(response, "new-secret")
    agent = Agent.objects.get(name="deploy-bot")
    assert (agent.domain, agent.resume_url, agent.daily_budget) == ("code", "https://agent.example/resume", 20)
    assert agent.signing_secret == secret
    # stored hashed only
    assert not AgentToken.objects.filter(token_hash=token).exists()
    assert AgentToken.objects.get(agent=agent).prefix == token[:10]

    client = AgentClient(token)
    assert client.post_json("/api/v1/gate", GATE).status_code == 200
    created = client.escalate(make_package(run_id="first"))
    assert created.status_code == 201
    assert client.get(f"/api/v1/escalations/{created.json()['id']}").status_code == 200

    # never again: not on its page, not in the list
    for url in (reverse("reviews:agent", args=[agent.pk]), reverse("reviews:agents")):
        page = text(manager_client.get(url))
        assert token not in page
        assert secret not in page
        assert token[:10] in page or url == reverse("reviews:agents")


def test_the_register_form_offers_the_policies_domains(manager_client):
    page = text(manager_client.get(reverse("reviews:agent_new")))
    for domain in ("code", "default", "research"):
        assert f'<option value="{domain}"' in page


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"resume_url": "not a url"}, "resume_url", "Resume URL: Enter an http(s) URL"),
        ({"resume_url": "ftp://agent.example/x"}, "resume_url", "Resume URL: Enter an http(s) URL"),
        ({"domain": "nope"}, "domain", "Domain: Unknown domain nope; known: "),
        ({"daily_budget": "-1"}, "daily_budget", "Daily budget: The budget must be 0 or more."),
        ({"daily_budget": "lots"}, "daily_budget", "Daily budget: Enter a whole number."),
        ({"name": ""}, "name", "Name: This field is required."),
        ({"name": "bad\x00name"}, "name", "Name: Null characters are not allowed."),
        ({"name": "x" * 101}, "name", "Name: Ensure this value has at most 100 characters"),
    ],
)
def test_register_names_the_field_that_is_wrong(manager_client, overrides, field, message):
    response = register(manager_client, **overrides)
    assert response.status_code == 422
    errors = field_errors(response)
    assert list(errors) == [field]
    assert errors[field].startswith(message), errors
    assert not Agent.objects.exists()


def test_register_refuses_a_name_already_taken(agent, manager_client):
    response = register(manager_client, name=agent.name.upper())
    assert response.status_code == 422
    assert field_errors(response) == {"name": f"Name: An agent named “{agent.name.upper()}” already exists."}
    assert Agent.objects.count() == 1


def test_register_escapes_what_the_manager_typed(manager_client):
    response = register(manager_client, name=XSS, resume_url=XSS)
    assert response.status_code == 422
    assert XSS not in text(response)
    assert html.escape(XSS) in text(response)


def test_the_service_names_the_field_when_a_concurrent_registration_took_the_name(agent):
    with pytest.raises(Invalid) as refused:
        services.agent_create(name=agent.name)
    assert [e.field for e in refused.value.errors] == ["name"]


# ---------------------------------------------------------------- tokens


def test_rotate_issues_a_working_token_and_keeps_the_old_one_unless_asked(agent_with_token, manager_client):
    agent, old = agent_with_token
    response = manager_client.post(reverse("reviews:agent_token_rotate", args=[agent.pk]))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new = revealed(response, "new-token")
    assert new != old
    assert gate(new) == 200
    assert gate(old) == 200
    assert "still work until you revoke them" in text(response)
    assert new not in text(manager_client.get(reverse("reviews:agent", args=[agent.pk])))


def test_rotate_with_revoke_refuses_the_old_token_at_once(agent_with_token, manager_client):
    agent, old = agent_with_token
    escalation_id = AgentClient(old).escalate().json()["id"]
    response = manager_client.post(
        reverse("reviews:agent_token_rotate", args=[agent.pk]), {"revoke_others": "on"}
    )
    new = revealed(response, "new-token")
    assert AgentClient(old).get(f"/api/v1/escalations/{escalation_id}").status_code == 401
    assert gate(old) == 401
    assert AgentClient(new).get(f"/api/v1/escalations/{escalation_id}").status_code == 200
    assert agent.tokens.filter(revoked_at__isnull=True).count() == 1


def test_revoke_takes_effect_at_once_and_the_page_shows_it(agent_with_token, manager_client):
    agent, token = agent_with_token
    row = agent.tokens.get()
    response = manager_client.post(reverse("reviews:agent_token_revoke", args=[agent.pk, row.pk]))
    assert response.status_code == 302
    assert gate(token) == 401
    page = text(manager_client.get(response["Location"]))
    assert f"Revoked the token {row.prefix}" in page
    assert "revoked " in page
    # twice: no error, the first time stands
    first = AgentToken.objects.get(pk=row.pk).revoked_at
    manager_client.post(reverse("reviews:agent_token_revoke", args=[agent.pk, row.pk]))
    assert AgentToken.objects.get(pk=row.pk).revoked_at == first


def test_an_agent_whose_tokens_are_all_revoked_says_how_to_get_one(agent_with_token, manager_client):
    agent, token = agent_with_token
    services.token_revoke(token=agent.tokens.get())
    page = text(manager_client.get(reverse("reviews:agent", args=[agent.pk])))
    assert "Every token is revoked" in page
    assert gate(token) == 401


def test_a_token_of_another_agent_cannot_be_revoked_through_this_one(agent_with_token, manager_client):
    agent, _ = agent_with_token
    other = services.agent_create(name="other")
    other_row = other.agent.tokens.get()
    response = manager_client.post(reverse("reviews:agent_token_revoke", args=[agent.pk, other_row.pk]))
    assert response.status_code == 404
    assert gate(other.token) == 200


def test_roll_secret_shows_the_new_one_once_and_deliveries_are_signed_with_it(
    api, hooked, reviewer, receiver, manager_client
):
    old = hooked.signing_secret
    response = manager_client.post(reverse("reviews:agent_secret_roll", args=[hooked.pk]))
    assert response.status_code == 200
    secret = revealed(response, "new-secret")
    assert secret != old
    assert secret not in text(manager_client.get(reverse("reviews:agent", args=[hooked.pk])))
    decide(services_escalate(api), reviewer)
    deliver_webhook_task(str(Delivery.objects.get().id))
    (request,) = receiver.wait_for(1)
    header = request.header("handoff-signature")
    assert webhooks.verify(secret, request.body, header)
    assert not webhooks.verify(old, request.body, header)


# ---------------------------------------------------------------- settings


def test_settings_change_domain_budget_url_and_deactivate_at_once(agent_with_token, manager_client):
    agent, token = agent_with_token
    response = manager_client.post(
        reverse("reviews:agent_settings", args=[agent.pk]),
        {"domain": "research", "resume_url": "http://127.0.0.1:9/hook", "daily_budget": "0"},
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.domain, agent.resume_url, agent.daily_budget, agent.is_active) == (
        "research", "http://127.0.0.1:9/hook", 0, False
    )
    assert gate(token) == 401  # inactive
    assert "Saved the settings" in text(manager_client.get(response["Location"]))

    manager_client.post(
        reverse("reviews:agent_settings", args=[agent.pk]),
        {"domain": "research", "resume_url": "", "daily_budget": "5", "is_active": "on"},
    )
    assert gate(token) == 200


def test_settings_errors_name_the_field_and_keep_what_was_typed(agent, manager_client):
    response = manager_client.post(
        reverse("reviews:agent_settings", args=[agent.pk]),
        {"domain": "nope", "resume_url": "javascript:alert(1)", "daily_budget": "-5", "is_active": "on"},
    )
    assert response.status_code == 422
    errors = field_errors(response)
    assert set(errors) == {"domain", "resume_url", "daily_budget"}
    assert 'value="javascript:alert(1)"' in text(response)
    agent.refresh_from_db()
    assert (agent.domain, agent.resume_url, agent.daily_budget) == ("default", "", 50)


def test_the_service_refuses_what_the_form_would(agent):
    with pytest.raises(Invalid) as refused:
        services.agent_update(agent=agent, domain="nope", resume_url="", daily_budget=-1, is_active=True)
    assert [e.field for e in refused.value.errors] == ["domain", "daily_budget"]


def test_an_unknown_agent_is_a_404(manager_client):
    assert manager_client.get(reverse("reviews:agent", args=[999999])).status_code == 404


# ---------------------------------------------------------------- health and redelivery


def test_a_failed_delivery_is_listed_and_redeliver_resends_it_to_the_receiver(
    api, agent, reviewer, manager_client, settings, django_capture_on_commit_callbacks
):
    with Receiver(script=[410], default=200) as receiver:
        agent.resume_url = receiver.url
        agent.save(update_fields=["resume_url"])
        escalation = services_escalate(api)
        decide(escalation, reviewer)
        first = Delivery.objects.get(escalation=escalation)
        deliver_webhook_task(str(first.id))  # the agent answers 410: given up at once
        first.refresh_from_db()
        assert first.status == Delivery.Status.FAILED

        page = text(manager_client.get(reverse("reviews:agent", args=[agent.pk])))
        assert f'id="delivery-{first.id}"' in page
        assert "HTTP 410" in page
        assert re.search(r"Failed \(given up\)</dt><dd[^>]*>1</dd>", page)
        listed = text(manager_client.get(reverse("reviews:agents")))
        assert "1 failed" in listed
        assert "last failure" in listed

        # the button: a new delivery, sent at once to the real receiver (eager worker)
        settings.CELERY_TASK_ALWAYS_EAGER = True
        with django_capture_on_commit_callbacks(execute=True):
            response = manager_client.post(
                reverse("reviews:agent_redeliver", args=[agent.pk, first.id])
            )
        assert response.status_code == 302
        _, second = receiver.wait_for(2)
    assert second.answered == 200
    assert second.json()["escalation"]["id"] == str(escalation.pk)
    assert second.header("handoff-delivery") != str(first.id)
    assert webhooks.verify(agent.signing_secret, second.body, second.header("handoff-signature"))
    page = text(manager_client.get(response["Location"]))
    assert "Queued a new delivery" in page
    assert "redelivered since" in page
    assert "dstatus-delivered" in page
    assert Escalation.objects.get(pk=escalation.pk).status == Escalation.Status.RESUMED


def test_redeliver_without_a_resume_url_says_why(api, agent, reviewer, manager_client):
    escalation = services_escalate(api)
    decide(escalation, reviewer)
    delivery = Delivery.objects.create(
        escalation=escalation, url="http://127.0.0.1:9/gone", payload={}, status=Delivery.Status.FAILED
    )
    response = manager_client.post(reverse("reviews:agent_redeliver", args=[agent.pk, delivery.id]))
    assert response.status_code == 302
    assert "Not redelivered: The agent has no resume_url" in text(manager_client.get(response["Location"]))
    assert Delivery.objects.count() == 1


def test_redeliver_refuses_another_agents_delivery(api, agent, reviewer, manager_client):
    other = services.agent_create(name="other", resume_url="http://127.0.0.1:9/x").agent
    escalation = services_escalate(api)
    decide(escalation, reviewer)
    delivery = Delivery.objects.create(escalation=escalation, url="http://x.example", payload={})
    response = manager_client.post(reverse("reviews:agent_redeliver", args=[other.pk, delivery.id]))
    assert "No such delivery for this agent." in text(manager_client.get(response["Location"]))
    assert Delivery.objects.count() == 1


def test_the_agent_page_links_its_recent_escalations_as_text(api, agent, manager_client):
    escalation = services_escalate(api, title=XSS)
    page = text(manager_client.get(reverse("reviews:agent", args=[agent.pk])))
    assert reverse("reviews:detail", args=[escalation.pk]) in page
    assert XSS not in page
    assert "&lt;script&gt;" in page


def test_a_superuser_outside_the_groups_may_manage_agents(agent):
    ensure_default_policies()
    user = make_user("root")
    user.is_superuser = True
    user.save(update_fields=["is_superuser"])
    client = Client()
    client.force_login(user)
    assert client.get(reverse("reviews:agents")).status_code == 200


# ---------------------------------------------------------------- in a browser

browser = test_browser.browser  # Playwright driving Debian's chromium (a fixture)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_manager_registers_an_agent_in_the_browser_and_sees_its_token_once(
    live_server_asgi, browser
):
    base = live_server_asgi
    ensure_default_policies()
    make_user("maya", "manager")
    context = browser.new_context(viewport={"width": 1360, "height": 900}, bypass_csp=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/accounts/login/?next=/agents/")
    page.fill("input[name=username]", "maya")
    page.fill("input[name=password]", test_browser.PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/agents/")
    assert "No agent is registered yet" in page.text_content("main")

    # the empty state leads to the form; a wrong URL is refused next to its field
    page.click("main >> text=Register an agent")
    page.fill("input[name=name]", "deploy-bot")
    page.select_option("select[name=domain]", "code")
    page.fill("input[name=resume_url]", "agent.example/resume")
    page.click("button:has-text('Register')")
    error = page.locator("[data-field=resume_url] .field-error")
    assert "Resume URL: Enter an http(s) URL" in error.text_content()
    assert page.input_value("input[name=name]") == "deploy-bot"  # what was typed stays

    page.fill("input[name=resume_url]", "https://agent.example/resume")
    page.click("button:has-text('Register')")
    page.wait_for_selector("#new-token")
    assert "Shown once" in page.text_content(".reveal-warning")
    token = page.input_value("#new-token")
    secret = page.input_value("#new-secret")
    assert token.startswith("hnd_")
    assert secret.startswith("whsec_")

    # the copy button copies the token
    copy = page.locator("button[data-copy='#new-token']")
    assert copy.is_visible()
    copy.click()
    page.wait_for_function("document.querySelector(\"button[data-copy='#new-token']\").textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == token

    # the token works against the API at once
    gate = httpx.post(
        f"{base}/api/v1/gate", json=GATE, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert gate.status_code == 200, gate.text

    # and is never shown again
    page.click("text=I have stored them")
    page.wait_for_selector("#tokens-heading")
    content = page.content()
    assert token not in content
    assert secret not in content
    assert token[:10] in page.text_content(".tokens")
    # not even by going back: the answer was no-store, so the browser kept no copy
    from playwright.sync_api import Error as PlaywrightError

    with pytest.raises(PlaywrightError, match="ERR_CACHE_MISS"):
        page.go_back()
    assert errors == []


# ---------------------------------------------------------------- helpers


def services_escalate(api, **overrides) -> Escalation:
    response = api.escalate(make_package(**overrides))
    assert response.status_code == 201, response.content
    return Escalation.objects.get(pk=response.json()["id"])


def decide(escalation: Escalation, user) -> None:
    services.escalation_decide(
        escalation_id=escalation.pk,
        request=services.DecisionRequest(kind="option", option="shim"),
        user=user,
    )
