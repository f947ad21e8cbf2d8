"""axe-core on every page, light and dark, at 1,440 and 390 px: no violation of any rule
axe runs by default (WCAG 2 A and AA, and its best practices: landmarks, headings, labels,
contrast in both palettes).

axe-core comes from npm (tests/package.json and its lockfile; `make axe-install` runs
`npm ci`, `make test` and CI do it first) and is injected into each page from
tests/node_modules, never from a CDN. One browser, one server and one seeded database
(seed_demo) serve every case; afterwards the database is emptied back to what the migrations
wrote, for the tests that run after this module. No rule is disabled: a rule that had to be
would be named here, with why.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from tests.conftest import ensure_default_policies, flush_to_migrated, need, serve_asgi
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

Theme = Literal["light", "dark"]

# django_db: the test database is set up for this module (seeded once, by `site`); each
# case only reads through the browser, inside a transaction that is rolled back.
pytestmark = [pytest.mark.browser, pytest.mark.django_db]

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
DEMO = ("demo", "handoff-demo")  # seed_demo's reviewer and manager
NOBODY = ("nobody", "correct-horse-battery")  # signed in, in neither group
WIDTHS: dict[str, ViewportSize] = {"1440": {"width": 1440, "height": 900}, "390": {"width": 390, "height": 844}}
THEMES: tuple[Theme, ...] = ("light", "dark")

# (name, who is signed in: "demo", "nobody" or None, a selector that shows the page is done)
PAGES = [
    ("queue", "demo", "body[data-live=live]"),
    ("escalation-open", "demo", "body[data-live=live]"),
    ("escalation-decided", "demo", "#decision-panel"),
    ("flagged", "demo", "main"),
    ("insights", "demo", "[data-figure] .main-svg"),
    ("policies", "demo", "main"),
    ("policy", "demo", "#suggestions:not([aria-busy])"),  # its suggestions loaded after it
    ("agents", "demo", "main"),
    ("agent", "demo", "main"),
    ("members", "demo", "main"),
    ("account", "demo", "main"),
    ("notifications", "demo", "main"),
    ("not-found", "demo", "main"),
    ("sign-in", None, "input[name=username]"),
    ("set-password", None, "input[name=new_password1]"),
    ("no-role", "nobody", "main"),
]


def _paths() -> dict[str, str]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    from escalations.models import Agent, Escalation, Policy

    user_model = get_user_model()
    user_model.objects.create_user(NOBODY[0], f"{NOBODY[0]}@example.com", NOBODY[1])
    invited = user_model.objects.create_user("invited", "invited@example.com")  # no password yet
    pending = Escalation.objects.filter(status="pending").order_by("created_at").first()
    decided = Escalation.objects.exclude(decision=None).order_by("created_at").first()
    agent = Agent.objects.order_by("pk").first()
    domain = Policy.objects.order_by("domain").values_list("domain", flat=True)[0]
    assert pending is not None
    assert decided is not None
    assert agent is not None
    uid = urlsafe_base64_encode(force_bytes(invited.pk))
    return {
        "queue": "/",
        "escalation-open": f"/escalations/{pending.pk}",
        "escalation-decided": f"/escalations/{decided.pk}",
        "flagged": "/flagged/",
        "insights": "/insights/",
        "policies": "/policies/",
        "policy": f"/policies/{domain}",
        "agents": "/agents/",
        "agent": f"/agents/{agent.pk}",
        "members": "/members/",
        "account": "/account/",
        "notifications": "/settings/notifications",
        "not-found": "/no/such/page",
        "sign-in": "/accounts/login/",
        "set-password": f"/accounts/set-password/{uid}/{default_token_generator.make_token(invited)}/",
        "no-role": "/accounts/no-role",
    }


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker) -> Iterator[tuple[str, dict[str, str]]]:
    """The demo data in the test database, served by the real ASGI application (uvicorn in a
    thread of this process); afterwards the database is as migrated again."""
    from django.core.management import call_command

    with django_db_blocker.unblock():
        ensure_default_policies()
        call_command("seed_demo", stdout=io.StringIO())
        paths = _paths()
        try:
            with serve_asgi() as base:
                yield base, paths
        finally:
            # this module runs among the tests that roll back (django_db without
            # transaction): the ones after it find the database as migrated
            flush_to_migrated()


@pytest.fixture(scope="module")
def contexts(site) -> Iterator[Any]:
    """A browser context for (who, theme, width), made once: signed in once a person."""
    need(os.path.exists(CHROMIUM), "Debian chromium")
    assert AXE.exists(), "axe-core is not installed: make axe-install (npm ci in tests/)"
    from playwright.sync_api import sync_playwright

    base = site[0]
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    made: dict[tuple[str | None, Theme, str], Any] = {}
    states: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def context(who: str | None, theme: Theme, width: str):
            key = (who, theme, width)
            if key not in made:
                viewport = WIDTHS[width]
                phone = viewport["width"] < 500
                if who and who not in states:
                    signing = browser.new_context()
                    page = signing.new_page()
                    page.goto(f"{base}/accounts/login/")
                    page.fill("input[name=username]", who)
                    page.fill("input[name=password]", DEMO[1] if who == DEMO[0] else NOBODY[1])
                    page.click("button[type=submit]")
                    page.wait_for_load_state()
                    states[who] = signing.storage_state()
                    signing.close()
                made[key] = browser.new_context(
                    viewport=viewport,
                    color_scheme=theme,
                    reduced_motion="reduce",
                    is_mobile=phone,
                    has_touch=phone,
                    storage_state=states.get(who) if who else None,
                    bypass_csp=True,  # wait_for_function polls with eval (test_csp_browser checks CSP)
                )
                # axe in every page of the context, before the page's own scripts
                made[key].add_init_script(path=str(AXE))
            return made[key]

        try:
            yield context
        finally:
            browser.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:6]:
            summary = " ".join(node.get("failureSummary", "").split())[:300]
            lines.append(f"    {' '.join(node['target'])}: {summary}")
        if len(v["nodes"]) > 6:
            lines.append(f"    ... and {len(v['nodes']) - 6} more")
    return "\n".join(lines)


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize(("name", "who", "ready"), PAGES, ids=[p[0] for p in PAGES])
def test_axe_finds_no_violation(site, contexts, name, who, ready, theme, width):
    base, paths = site
    page = contexts(who, theme, width).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        response = page.goto(base + paths[name])
        assert response is not None
        assert response.status == {"not-found": 404, "no-role": 403}.get(name, 200), paths[name]
        page.wait_for_selector(ready, timeout=15000)
        # htmx's requests on arrival (the queue refreshes when its socket opens) have
        # finished: an in-flight submit is dimmed on purpose
        page.wait_for_function("!document.querySelector('.htmx-request')")
        dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        assert dark == (theme == "dark")
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        assert not result["violations"], f"{paths[name]} ({theme}, {width} px):\n" + describe(
            result["violations"]
        )
        # axe leaves duplicate ids to a person ("needs review"): a label names the first box
        # with its id, so every id on the page is one element's
        duplicates = page.evaluate(
            "(() => { const seen = new Set(), twice = new Set();"
            " document.querySelectorAll('[id]').forEach(e => seen.has(e.id) ? twice.add(e.id) : seen.add(e.id));"
            " return [...twice]; })()"
        )
        assert duplicates == [], f"{paths[name]}: ids used twice: {duplicates}"
        assert errors == []
    finally:
        page.close()
