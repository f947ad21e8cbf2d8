"""The queue, live, in a real browser: two reviewers in two browser contexts against the
real ASGI application (uvicorn, websockets included)."""

import pytest

from escalations import services
from escalations.models import Escalation
from tests.test_browser import (  # noqa: F401 (browser is a fixture)
    LIVE_TIMEOUT_MS,
    browser,
    post_escalation,
    sign_in,
    wait_live,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS = '<script>alert("t")</script><img src=x onerror="alert(1)">'


def row_ids(page) -> list[str]:
    return page.eval_on_selector_all("#queue-table tr[data-row]", "rows => rows.map(r => r.dataset.id)")


def in_priority_order(ids: list[str]) -> list[str]:
    rows = Escalation.objects.filter(pk__in=ids)
    return [str(e.pk) for e in sorted(rows, key=lambda e: (-e.priority, e.created_at, str(e.pk)))]


def open_queue(browser, base: str, username: str, path: str = "/"):  # noqa: F811
    page = sign_in(browser, base, username)
    if path != "/":
        page.goto(base + path)
    page.mouse.move(2, 2)  # the pointer rests outside the list
    dialogs: list[str] = []
    def dismiss(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.dialogs = dialogs
    wait_live(page)
    # the re-render every (re)connect makes has landed
    page.wait_for_function("!document.querySelector('#queue.htmx-request')", timeout=LIVE_TIMEOUT_MS)
    return page


def test_two_reviewers_see_a_new_package_live_in_its_place_and_each_others_claims(
    live_server_asgi, browser, agent_with_token, reviewer, other_reviewer  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    top = post_escalation(base, token, run_id="top", title="Top: halt", confidence=0.3,
                          cost_of_delay={"blocking": True, "impact": "critical", "blocked_tasks": 9})
    bottom = post_escalation(base, token, run_id="bottom", title="Bottom: low",
                             cost_of_delay={"blocking": False, "impact": "low"})
    alice = open_queue(browser, base, "alice")
    bob = open_queue(browser, base, "bob")
    lows = open_queue(browser, base, "bob", "/?impact=low")
    assert row_ids(alice) == [top["id"], bottom["id"]]

    # when an agent posts a package whose priority lies between the two
    middle = post_escalation(base, token, run_id="middle", title="Middle " + XSS)
    assert top["priority"] > middle["priority"] > bottom["priority"]

    # then it appears on both queues without a reload, in its place, highlighted, as text
    for page in (alice, bob):
        row = page.locator(f"#escalation-{middle['id']}")
        row.wait_for(timeout=LIVE_TIMEOUT_MS)
        assert row_ids(page) == [top["id"], middle["id"], bottom["id"]]
        assert "is-new" in row.get_attribute("class")
        assert row.locator(".row-title").text_content() == "Middle " + XSS
        page.wait_for_function(
            "document.querySelector('[data-count=open]').textContent === '3'", timeout=LIVE_TIMEOUT_MS
        )
    # a queue whose filters it does not match keeps its rows; only the counts follow
    lows.wait_for_function(
        "document.querySelector('[data-count=open]').textContent === '3'", timeout=LIVE_TIMEOUT_MS
    )
    assert row_ids(lows) == [bottom["id"]]

    # when alice moves to it with j and claims it with c
    alice.keyboard.press("j")
    alice.keyboard.press("j")
    assert alice.evaluate("document.activeElement.closest('tr').dataset.id") == middle["id"]
    alice.keyboard.press("c")

    # then her row says "you", and bob's row says alice, in place
    alice.locator(f"#escalation-{middle['id']} .claimer.is-me").wait_for(timeout=LIVE_TIMEOUT_MS)
    claimer = bob.locator(f"#escalation-{middle['id']} .claimer")
    claimer.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert claimer.text_content().strip().endswith("alice")
    assert row_ids(bob) == [top["id"], middle["id"], bottom["id"]]
    bob.wait_for_function("document.querySelector('[data-count=mine]').textContent === '0'")
    alice.wait_for_function("document.querySelector('[data-count=mine]').textContent === '1'")

    # and Enter opens it
    alice.keyboard.press("Enter")
    alice.wait_for_url(f"{base}/escalations/{middle['id']}")

    for page in (alice, bob, lows):
        assert page.dialogs == [], "a package's script ran"
        assert page.js_errors == []


def test_rows_hold_still_under_the_pointer_and_arrive_when_it_leaves(
    live_server_asgi, browser, agent_with_token, reviewer  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    first = post_escalation(base, token, run_id="first", title="First one")
    page = open_queue(browser, base, "alice")

    # while the pointer rests on the list, a more urgent package arrives
    page.hover(f"#escalation-{first['id']} .row-title")
    urgent = post_escalation(base, token, run_id="urgent", title="Urgent one", confidence=0.2,
                             cost_of_delay={"blocking": True, "impact": "critical", "blocked_tasks": 4})
    hint = page.locator("[data-queue-updates]")
    hint.wait_for(state="visible", timeout=LIVE_TIMEOUT_MS)
    assert "1 update" in hint.text_content()
    assert row_ids(page) == [first["id"]]  # nothing moved under the pointer

    # when the pointer leaves the list, the row lands in its place
    page.mouse.move(2, 2)
    page.locator(f"#escalation-{urgent['id']}").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert row_ids(page) == in_priority_order([first["id"], urgent["id"]]) == [urgent["id"], first["id"]]
    assert hint.is_hidden()

    # a withdrawn row leaves the list
    services.escalation_withdraw(escalation=Escalation.objects.get(pk=first["id"]))
    page.locator(f"#escalation-{first['id']}").wait_for(state="detached", timeout=LIVE_TIMEOUT_MS)
    assert row_ids(page) == [urgent["id"]]
    assert page.js_errors == []


def test_a_first_row_replaces_the_empty_state_highlighted(
    live_server_asgi, browser, agent_with_token, reviewer  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    page = open_queue(browser, base, "alice")
    assert "Nothing waits for a human" in page.text_content("#queue-table")
    first = post_escalation(base, token, run_id="first", title="The first one")
    row = page.locator(f"#escalation-{first['id']}")
    row.wait_for(timeout=LIVE_TIMEOUT_MS)
    page.wait_for_function(
        f"document.getElementById('escalation-{first['id']}').classList.contains('is-new')",
        timeout=LIVE_TIMEOUT_MS,
    )
    assert page.text_content("[data-count=open]") == "1"
    assert page.js_errors == []


def test_after_a_dropped_socket_the_queue_catches_up(
    live_server_asgi, browser, agent_with_token, reviewer  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    page = open_queue(browser, base, "alice")

    # the socket drops (code 4000: live.js reconnects with backoff) ...
    page.evaluate("document.getElementById('queue')['htmx-internal-data'].webSocket.socket.close(4000)")
    page.wait_for_function("document.body.dataset.live === 'offline'", timeout=LIVE_TIMEOUT_MS)
    # ... and a package arrives while nobody can tell this page
    missed = post_escalation(base, token, run_id="missed", title="Posted while offline")

    # the page reconnects and re-renders: the row is there without a reload
    wait_live(page)
    page.locator(f"#escalation-{missed['id']}").wait_for(timeout=LIVE_TIMEOUT_MS)
    assert page.text_content("[data-count=open]") == "1"
    assert page.js_errors == []


def test_overlapping_re_renders_replace_each_other_without_errors(
    live_server_asgi, browser, agent_with_token, reviewer  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    only = post_escalation(base, token, run_id="only", title="Only one")
    page = open_queue(browser, base, "alice")
    # three reconnects at once: each re-render aborts the one before (one lane)
    page.evaluate("""() => { const q = document.getElementById('queue');
        for (let i = 0; i < 3; i++) q.dispatchEvent(new CustomEvent('htmx:wsOpen')); }""")
    page.wait_for_timeout(1000)
    assert row_ids(page) == [only["id"]]
    assert page.js_errors == []


def test_filters_change_the_url_and_the_list_without_a_reload(
    live_server_asgi, browser, agent_with_token, reviewer  # noqa: F811
):
    base, token = live_server_asgi, agent_with_token[1]
    post_escalation(base, token, run_id="hi", title="High impact", cost_of_delay={"blocking": True, "impact": "high"})
    post_escalation(base, token, run_id="lo", title="Low impact", cost_of_delay={"blocking": False, "impact": "low"})
    page = open_queue(browser, base, "alice")
    page.evaluate("window.__same_page = true")

    page.select_option("#id_impact", "low")
    page.wait_for_url(f"{base}/?impact=low")
    page.wait_for_function("document.querySelectorAll('#queue-table tr[data-row]').length === 1")
    assert "Low impact" in page.text_content("#queue-table")

    page.fill("#id_q", "nothing-like-this")
    page.wait_for_url(f"{base}/?q=nothing-like-this&impact=low")
    page.wait_for_selector("text=Nothing matches these filters")
    assert page.evaluate("window.__same_page") is True  # no reload

    # "?" shows the shortcuts; Escape closes them
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#shortcuts").is_visible()
    assert page.js_errors == []
