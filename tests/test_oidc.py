"""Sign-in through an OpenID Connect provider: a small real one on 127.0.0.1
(tests/oidc_provider.py), RS256-signed ID tokens, roles from the groups claim."""

import re

import httpx
import pytest
from django.contrib.auth.models import User

from people.roles import is_manager, is_reviewer
from tests.oidc_provider import running
from tests.test_browser import browser  # noqa: F401 - the fixture

RIA = {"sub": "u-1", "email": "ria@example.com", "preferred_username": "ria", "groups": ["staff", "reviewer"]}


@pytest.fixture
def provider(settings):
    with running(dict(RIA)) as provider:
        for name, value in provider.settings().items():
            setattr(settings, name, value)
        settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "people.oidc.HandoffOIDCBackend"]
        yield provider


def sign_in_through(client, provider, **extra):
    """The browser's hops, by hand: Handoff -> provider -> Handoff's callback."""
    start = client.get("/accounts/oidc/start")
    assert start.status_code == 302
    assert start["Location"].startswith(provider.base + "/authorize?")
    back = httpx.get(start["Location"], follow_redirects=False)
    assert back.status_code == 302
    callback = back.headers["location"].split("://", 1)[1].split("/", 1)[1]
    return client.get("/" + callback)


@pytest.mark.django_db
def test_a_sign_in_through_the_provider_creates_a_reviewer_from_the_groups_claim(client, provider):
    done = sign_in_through(client, provider)
    assert done.status_code == 302
    assert done["Location"] == "/"
    ria = User.objects.get(email="ria@example.com")
    assert ria.username == "ria"
    assert is_reviewer(ria)
    assert not is_manager(ria)
    assert client.get("/").status_code == 200
    assert provider.requests == ["/authorize", "/token", "/jwks", "/userinfo"]


@pytest.mark.django_db
def test_the_groups_claim_is_the_truth_on_every_sign_in(client, provider, reviewer):
    provider.user = {**RIA, "groups": ["manager"]}
    sign_in_through(client, provider)
    assert is_manager(User.objects.get(email="ria@example.com"))
    provider.user = {**RIA, "groups": ["staff"]}
    again = sign_in_through(client.__class__(), provider)
    assert again.status_code == 302
    ria = User.objects.get(email="ria@example.com")
    assert not is_reviewer(ria)  # signed in, with no role: the page that says so
    assert User.objects.filter(email="ria@example.com").count() == 1


@pytest.mark.django_db
def test_a_token_signed_by_another_key_is_refused(client, provider):
    from cryptography.hazmat.primitives.asymmetric import rsa

    start = client.get("/accounts/oidc/start")
    back = httpx.get(start["Location"], follow_redirects=False)
    published = provider.jwks()
    provider.jwks = lambda: published  # the JWKS keeps the old key...
    provider.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # ...tokens get another
    callback = back.headers["location"].split("://", 1)[1].split("/", 1)[1]
    refused = client.get("/" + callback)
    assert refused.status_code == 302
    assert refused["Location"] == "/accounts/login/?sso=failed"
    assert "did not work" in client.get(refused["Location"]).content.decode()
    assert not User.objects.filter(email="ria@example.com").exists()
    assert client.get("/").status_code == 302  # not signed in


@pytest.mark.django_db
def test_without_a_provider_there_is_no_sso(client):
    assert client.get("/accounts/oidc/start").status_code == 404
    assert "data-sso" not in client.get("/accounts/login/").content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_oidc_sign_in_lands_as_a_reviewer(live_server_asgi, browser, provider):  # noqa: F811
    base = live_server_asgi
    page = browser.new_context(bypass_csp=True).new_page()
    page.goto(f"{base}/accounts/login/")
    page.click("text=Sign in with Test SSO")
    page.wait_for_url(f"{base}/")
    assert page.locator("#queue-table").count() == 1
    assert re.search(r"\bria\b", page.text_content(".who"))
    assert is_reviewer(User.objects.get(username="ria"))
