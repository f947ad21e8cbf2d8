"""Every dashboard page under the Content-Security-Policy, in Chromium: the header is there
and the browser reports no violation (inline script, eval, injected style, other origins),
while the pages still work (the insights charts draw, the live socket opens, the API docs
render). Only the insights page allows inline styles (plotly.js writes its stylesheet)."""

import io
import os

import pytest
from django.core.management import call_command

from escalations.models import Agent, Escalation, Policy
from tests.conftest import ensure_default_policies, need
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LISTEN = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(
  `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`));
"""


def pages() -> list[tuple[str, str]]:
    """(path, a selector that shows the page has done its work)."""
    escalation = Escalation.objects.filter(status="pending").order_by("created_at").first()
    decided = Escalation.objects.exclude(decision=None).order_by("created_at").first()
    agent = Agent.objects.order_by("pk").first()
    domain = Policy.objects.order_by("domain").values_list("domain", flat=True)[0]
    assert escalation is not None
    assert decided is not None
    assert agent is not None
    return [
        ("/", "body[data-live=live]"),
        (f"/escalations/{escalation.pk}", "body[data-live=live]"),
        (f"/escalations/{decided.pk}", "main"),
        ("/runs/mine", "main"),
        ("/settings/notifications", "main"),
        ("/agents/", "main"),
        ("/agents/new", "main"),
        (f"/agents/{agent.pk}", "main"),
        ("/policies/", "main"),
        ("/policies/new", "main"),
        (f"/policies/{domain}", "#suggestions:not([aria-busy])"),  # its suggestions loaded
        (f"/policies/{domain}/suggestions", "main"),  # the suggestions without JavaScript
        (f"/policies/{domain}/levels", "main"),
        ("/insights/", "[data-figure] .main-svg"),
    ]


def docs_served_locally(base: str) -> bool:
    """/api/v1/docs from the server's own static files (air-gapped), not from a CDN."""
    import httpx

    return "/static/" in httpx.get(f"{base}/api/v1/docs", timeout=10).text


def test_every_page_runs_under_the_policy_without_a_violation(live_server_asgi, monkeypatch):
    need(os.path.exists(CHROMIUM), "Debian chromium")
    from playwright.sync_api import sync_playwright

    ensure_default_policies()
    call_command("seed_demo", stdout=io.StringIO())
    targets = pages()
    if docs_served_locally(live_server_asgi):
        targets.append(("/api/v1/docs", "#swagger-ui .information-container"))
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    base = live_server_asgi
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.add_init_script(LISTEN)
            reported: list[str] = []
            page.on("console", lambda m: "Content Security Policy" in m.text and reported.append(m.text))
            page.on("pageerror", lambda exc: reported.append(f"page error: {exc}"))

            login = page.goto(f"{base}/accounts/login/")
            assert "script-src 'self'" in login.headers["content-security-policy"]
            page.fill("input[name=username]", "demo")
            page.fill("input[name=password]", "handoff-demo")
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            for path, ready in targets:
                response = page.goto(f"{base}{path}")
                assert response.status == 200, path
                policy = response.headers.get("content-security-policy", "")
                # Directives in any order: script-src is exactly 'self'.
                directives = {
                    name: value.strip()
                    for name, _, value in (d.strip().partition(" ") for d in policy.split(";"))
                    if name
                }
                assert directives.get("default-src") == "'self'", (path, policy)
                assert directives.get("script-src") == "'self'", (path, policy)
                # plotly.js injects its stylesheet: inline styles on the insights page alone
                assert ("unsafe" in policy) == (path == "/insights/"), (path, policy)
                page.wait_for_selector(ready, timeout=15000)
                page.wait_for_timeout(300)  # late work: htmx settling, chart resizes
                violations = page.evaluate("window.__csp")
                assert violations == [], (path, violations)
            assert reported == []
        finally:
            browser.close()
