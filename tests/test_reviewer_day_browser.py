"""The reviewer's day in a real browser (Playwright driving Debian's Chromium against the
real ASGI application): a decision that fails says so, the phone layout, long histories,
the keyboard, truthful labels and the dark theme."""

import pytest

from tests.test_browser import PASSWORD, browser, post_escalation, wait_live  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def sign_in(chromium, base: str, username: str = "alice", *, viewport=DESKTOP, dark: bool = False):
    """A signed-in page (bypass_csp: wait_for_function evaluates with eval)."""
    context = chromium.new_context(
        viewport=viewport,
        bypass_csp=True,
        color_scheme="dark" if dark else "light",
        is_mobile=viewport["width"] < 500,
        has_touch=viewport["width"] < 500,
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.js_errors = errors
    return page


# ---------------------------------------------------------------- a decision that fails says so


def test_a_server_error_and_a_lost_connection_on_decide_keep_the_form_and_say_so(
    live_server_asgi,
    browser,  # noqa: F811
    agent_with_token,
    reviewer,
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post_escalation(base, token)
    page = sign_in(browser, base)
    page.goto(f"{base}/escalations/{escalation['id']}")
    wait_live(page)
    instruction = "Keep the shim for one release, then remove it."
    page.check("input[name=option][value=shim]")
    page.fill(".decide-form textarea[name=instruction]", instruction)
    decide = page.locator(".decide-form button[type=submit]")

    # a 500: the form stays as typed, a message with a retry appears beside the button
    seen: list[bool] = []

    def server_error(route):
        seen.append(decide.is_disabled())  # disabled while the request is on its way
        route.fulfill(status=500, body="Internal Server Error", content_type="text/plain")

    page.route("**/decide", server_error)
    decide.click()
    alert = page.locator(".decide-form [data-write-error]")
    alert.wait_for(timeout=5000)
    assert "server had a problem (500)" in alert.text_content()
    assert seen == [True]
    assert page.input_value(".decide-form textarea[name=instruction]") == instruction
    assert page.is_checked("input[name=option][value=shim]")
    assert decide.is_enabled()
    assert "Internal Server Error" not in page.text_content("body")

    # the connection drops: the same, with its own words
    page.unroute("**/decide")
    page.route("**/decide", lambda route: route.abort("connectionreset"))
    page.click(".decide-form [data-write-error] button:has-text('Try again')")
    page.wait_for_function(
        "(document.querySelector('.decide-form [data-write-error]')?.textContent || '').includes('connection')"
    )
    assert page.locator(".decide-form [data-write-error]").count() == 1
    assert page.input_value(".decide-form textarea[name=instruction]") == instruction

    # back online: "Try again" decides, with what was typed
    page.unroute("**/decide")
    page.click(".decide-form [data-write-error] button:has-text('Try again')")
    page.locator("#decision-panel .decided").wait_for(timeout=5000)
    assert instruction in page.text_content("#decision-panel")
    assert page.js_errors == []


def test_the_offline_banner_shows_while_the_socket_is_down(
    live_server_asgi,
    browser,  # noqa: F811
    agent_with_token,
    reviewer,
):
    base = live_server_asgi
    page = sign_in(browser, base)
    wait_live(page)
    assert page.locator("#offline-banner").is_hidden()
    assert page.locator("[data-live-indicator]").is_visible()
    page.context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    page.locator("#offline-banner").wait_for(state="visible", timeout=5000)
    assert "offline" in page.text_content("#offline-banner")
    page.context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    # pages without a socket carry no "Live" indicator at all
    page.goto(f"{base}/runs/mine")
    assert page.locator("[data-live-indicator]").is_hidden()


# ---------------------------------------------------------------- on a phone


def no_sideways_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] == widths[1] == PHONE["width"], (page.url, widths)


def test_at_390_px_no_page_scrolls_sideways_and_the_uncertainty_comes_before_decide(
    live_server_asgi,
    browser,  # noqa: F811
    agent_with_token,
    reviewer,
    manager,
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post_escalation(
        base,
        token,
        title="A long title that wraps " * 6,
        run_id="run-with-a-very-long-identifier-" * 3,
    )
    page = sign_in(browser, base, viewport=PHONE)
    wait_live(page)
    no_sideways_scroll(page)
    # the queue: cards, the filters folded behind one button, the menu collapsed
    assert page.locator("#filter-grid").is_hidden()
    page.click("[data-fold-toggle]")
    assert page.locator("#filter-grid select[name=tier]").is_visible()
    assert page.locator("#topbar-menu").is_hidden()
    page.click("[data-menu-toggle]")
    assert page.locator("#topbar-menu nav a:has-text('My runs')").is_visible()
    card = page.locator(f"#escalation-{escalation['id']}")
    for cell in (
        ".col-priority .priority",
        ".row-title",
        ".col-tier .tier",
        ".col-deadline",
        ".col-claim button",
    ):
        assert card.locator(cell).is_visible(), cell
    assert card.bounding_box()["width"] <= PHONE["width"]

    page.goto(f"{base}/escalations/{escalation['id']}")
    wait_live(page)
    no_sideways_scroll(page)
    uncertainty = page.locator(".uncertainty").bounding_box()
    options = page.locator(".options-section").bounding_box()
    decide = page.locator("#decide-form [data-decide]").bounding_box()
    assert uncertainty["y"] < options["y"] < decide["y"]
    # the action bar keeps Decide in reach from the top of the page, naming the choice
    bar = page.locator("[data-action-bar]")
    assert bar.is_visible()
    assert bar.bounding_box()["y"] + bar.bounding_box()["height"] <= PHONE["height"]
    assert "Update all 14 callers" in bar.text_content()
    page.check("input[name=option][value=shim]")
    assert "Add a compatibility shim" in bar.text_content()
    bar.locator("button:has-text('Decide')").click()
    page.locator("#decision-panel .decided").wait_for(timeout=5000)
    assert "Add a compatibility shim" in page.text_content("#decision-panel")
    assert page.locator("[data-action-bar]").count() == 0

    manager_page = sign_in(browser, base, "maya", viewport=PHONE)
    for path in ("/insights/", "/policies/", "/policies/default", "/agents/", "/members/", "/account/", "/flagged/"):
        manager_page.goto(base + path)
        no_sideways_scroll(manager_page)
    assert page.js_errors == manager_page.js_errors == []


def test_the_app_is_installable(live_server_asgi, browser, reviewer):  # noqa: F811
    page = sign_in(browser, live_server_asgi)
    href = page.get_attribute("link[rel=manifest]", "href")
    manifest = page.evaluate("href => fetch(href).then(r => r.json())", href)
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/"
    sizes = {icon["sizes"] for icon in manifest["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for icon in manifest["icons"]:
        url = page.evaluate(
            "([src, base]) => new URL(src, new URL(base, location.href)).href", [icon["src"], href]
        )
        assert page.request.get(url).status == 200, url


# ---------------------------------------------------------------- a long history


def long_history(steps: int = 200, failed: tuple[int, ...] = (40, 41, 150)) -> list[dict]:
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC) - timedelta(hours=4)
    return [
        {
            "at": (start + timedelta(seconds=50 * n)).isoformat(),
            "action": f"step {n + 1}: checked shard {n + 1}",
            "outcome": "failed" if n in failed else "ok",
            **({"detail": f"shard {n + 1}: lock timeout"} if n in failed else {}),
        }
        for n in range(steps)
    ]


def test_a_200_step_history_renders_short_and_its_last_steps_are_one_jump_away(
    live_server_asgi,
    browser,  # noqa: F811
    agent_with_token,
    reviewer,
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post_escalation(base, token, history=long_history())
    page = sign_in(browser, base)
    page.goto(f"{base}/escalations/{escalation['id']}")
    wait_live(page)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 5000, height
    # runs of ok steps fold; the failures and the last steps before the pause are open
    runs = page.locator("[data-step-run] > summary")
    assert [" ".join(t.split()) for t in runs.all_text_contents()] == [
        "40 steps ok (steps 1–40)",
        "108 steps ok (steps 43–150)",
        "44 steps ok (steps 152–195)",
    ]
    assert page.locator("[data-step][data-outcome=failed]").evaluate_all(
        "steps => steps.every(s => s.offsetParent !== null)"
    )
    # "jump to the last steps": step 200 is on screen after one click
    page.click("[data-jump-last]")
    page.wait_for_function(
        "document.getElementById('last-steps').getBoundingClientRect().top < innerHeight"
    )
    last = page.locator("[data-step]:has-text('step 200:')")
    box = last.bounding_box()
    assert box["y"] >= 0
    assert box["y"] + box["height"] <= DESKTOP["height"]
    # search and outcome filter
    page.select_option("[data-history-outcome]", "failed")
    assert page.locator("[data-step]:visible").count() == 3
    page.select_option("[data-history-outcome]", "")
    page.fill("[data-history-q]", "shard 77")
    assert page.locator("[data-step]:visible").all_text_contents()[0].count("shard 77") == 1
    assert "1 step matches" in page.text_content("[data-history-count]")
    # the team's timeline is a tab away, not 200 steps down
    page.click("[role=tab]#tab-team")
    assert page.locator("#comment-form textarea").is_visible()
    assert page.locator("#comment-form").bounding_box()["y"] < 2000
    assert page.js_errors == []


# ---------------------------------------------------------------- from the keyboard


def test_2_then_d_decides_option_2_and_n_lands_on_the_next_escalation(
    live_server_asgi,
    browser,  # noqa: F811
    agent_with_token,
    reviewer,
):
    base, token = live_server_asgi, agent_with_token[1]
    first = post_escalation(
        base, token, title="First in the queue", confidence=0.51, run_id="run-1"
    )
    second = post_escalation(
        base, token, title="Second in the queue", confidence=0.69, run_id="run-2"
    )
    third = post_escalation(
        base, token, title="Third in the queue", confidence=0.69, run_id="run-3"
    )
    page = sign_in(browser, base)
    wait_live(page)
    rows = page.locator("tr[data-row] .row-title").all_text_contents()
    assert rows.index("First in the queue") < rows.index("Second in the queue")
    page.click("text=First in the queue")
    page.wait_for_url(f"{base}/escalations/{first['id']}")
    wait_live(page)
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()
    assert "Next / previous escalation" in page.text_content("#shortcuts")
    page.keyboard.press("Escape")
    page.locator("#shortcuts").wait_for(state="hidden")
    page.keyboard.press("c")
    page.wait_for_function(
        "(document.querySelector('#claim-box')?.textContent || '').includes('have claimed')"
    )
    page.keyboard.press("2")
    assert page.is_checked("input[name=option][value=shim]")
    page.keyboard.press("i")
    page.keyboard.type("Shim it for now.")
    page.keyboard.press("Escape")
    page.keyboard.press("d")
    page.locator("#decision-panel .decided").wait_for(timeout=5000)
    assert "Add a compatibility shim" in page.text_content("#decision-panel")
    assert page.locator("#decision-panel [data-queue-step=next]").is_visible()
    page.keyboard.press("n")
    page.wait_for_url(f"{base}/escalations/{second['id']}")
    page.keyboard.press("n")
    page.wait_for_url(f"{base}/escalations/{third['id']}")
    page.keyboard.press("p")
    page.wait_for_url(f"{base}/escalations/{second['id']}")
    # the decided one has left the open list: before the second, nothing is left
    page.keyboard.press("p")
    page.wait_for_url(f"{base}/")
    assert "No previous escalation" in page.text_content(".messages")
    assert page.js_errors == []


# ---------------------------------------------------------------- truthful labels, the dark theme


def test_the_dark_theme_follows_the_system_and_times_show_in_the_readers_zone(
    live_server_asgi,
    browser,  # noqa: F811
    agent_with_token,
    reviewer,
):
    base, token = live_server_asgi, agent_with_token[1]
    escalation = post_escalation(base, token)
    page = sign_in(browser, base, dark=True)
    page.goto(f"{base}/escalations/{escalation['id']}")
    wait_live(page)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in background[background.index("(") + 1 : -1].split(",")[:3])
    assert max(red, green, blue) < 60, background
    text = page.evaluate("getComputedStyle(document.body).color")
    assert min(int(v) for v in text[text.index("(") + 1 : -1].split(",")[:3]) > 180, text
    # times: the reader's zone on the page, UTC on hover
    stamp = page.locator(".facts time").first
    assert stamp.get_attribute("title").endswith(" UTC")
    assert (
        page.locator(".step-time").first.text_content().strip()[-3:].isalpha()
    )  # carries its zone
    assert page.js_errors == []
