"""The reviewer queue: filters, tabs and counts, sorts, keyset cursors, the live row view,
query counts, escaping, and the live notices it follows (actor and priority)."""

import html
import re
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from escalations import services
from escalations.models import Escalation
from reviews import queue, queue_views
from reviews.routing import websocket_urlpatterns
from tests.conftest import ensure_default_policies, make_user, post_package
from tests.test_pages import XSS, create

HX = {"HTTP_HX_REQUEST": "true"}
QUEUE = reverse("reviews:queue")


def get(client, **params):
    response = client.get(QUEUE + ("?" + urlencode(params) if params else ""))
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def titles(page: str) -> list[str]:
    """The row titles of a queue page, in order."""
    return [html.unescape(t) for t in re.findall(r'class="row-title"[^>]*>([^<]*)</a>', page)]


def row_url(escalation, **params) -> str:
    url = reverse("reviews:queue_row", args=[escalation.pk])
    return url + ("?" + urlencode(params) if params else "")


def create_overdue(agent, *, title: str, impact: str = "low") -> Escalation:
    """Posted two hours ago, due five minutes ago."""
    now = timezone.now()
    return create(
        agent,
        run_id="late",
        title=title,
        now=now - timedelta(hours=2),
        history=[{"at": (now - timedelta(hours=3)).isoformat(), "action": "tried", "outcome": "failed"}],
        cost_of_delay={"blocking": False, "impact": impact, "respond_by": now - timedelta(minutes=5)},
    )


@pytest.fixture
def other_agent(db):
    ensure_default_policies()
    return services.agent_create(name="researcher", domain="research").agent


# ---------------------------------------------------------------- filters


def test_each_filter_narrows_the_queue(agent, other_agent, reviewer, other_reviewer, reviewer_client):
    plain = create(agent, run_id="plain", title="Plain one", cost_of_delay={"blocking": False, "impact": "low"})
    halt = create(
        agent,
        run_id="halt",
        title="Halt one",
        confidence=0.2,
        reason="missing_access",
        cost_of_delay={"blocking": True, "impact": "critical", "blocked_tasks": 2},
    )
    late = create_overdue(agent, title="Late one", impact="medium")
    risky = create(
        agent,
        run_id="risky",
        title="Risky one",
        uncertainty="Dropping the orders table cannot be undone; the backup is two days old.",
        options=[{"key": "drop", "label": "Drop it", "recommended": True, "irreversible": True}],
    )
    research = create(other_agent, run_id="paper", title="Research one", domain="research", confidence=0.45)
    services.escalation_claim(escalation_id=halt.pk, user=reviewer)
    services.escalation_claim(escalation_id=late.pk, user=other_reviewer)
    everything = {"Plain one", "Halt one", "Late one", "Risky one", "Research one"}

    def shown(**params) -> set[str]:
        return set(titles(get(reviewer_client, **params)))

    assert shown() == everything
    assert shown(status="claimed") == {"Halt one", "Late one"}
    assert research.tier == 3
    assert shown(tier="4") == {"Halt one"}
    assert shown(reason="missing_access") == {"Halt one"}
    assert shown(agent="researcher") == {"Research one"}
    assert shown(domain="research") == {"Research one"}
    assert shown(impact="critical") == {"Halt one"}
    assert shown(blocking="false") == {"Plain one", "Late one"}
    assert "Plain one" not in shown(blocking="true")
    assert shown(overdue="true") == {"Late one"}
    assert shown(overdue="false") == everything - {"Late one"}
    assert shown(claimed="me") == {"Halt one"}
    assert shown(claimed="others") == {"Late one"}
    assert shown(claimed="unclaimed") == {"Plain one", "Risky one", "Research one"}
    assert shown(irreversible="true") == {"Risky one"}
    assert shown(q="backup orders") == {"Risky one"}  # every word, title or uncertainty
    assert shown(q="RISKY") == {"Risky one"}
    assert shown(q="one", agent="agent-007", impact="critical") == {"Halt one"}
    assert plain.pk
    assert risky.pk


def test_a_lapsed_claim_counts_as_unclaimed(agent, reviewer, reviewer_client):
    e = create(agent, run_id="lapsed", title="Lapsed claim")
    services.escalation_claim(
        escalation_id=e.pk, user=reviewer, now=timezone.now() - timedelta(hours=1)
    )
    assert titles(get(reviewer_client, claimed="unclaimed")) == ["Lapsed claim"]
    assert titles(get(reviewer_client, claimed="me")) == []
    page = get(reviewer_client)
    assert "unclaimed" in page
    assert "claimer" not in page


def test_invalid_filters_name_the_field_and_never_widen_the_list(agent, reviewer_client):
    create(agent, run_id="one", title="Open one")
    decided = create(agent, run_id="two", title="Decided one", confidence=0.99)
    assert decided.status == Escalation.Status.DECIDED

    page = get(reviewer_client, tier="9", tab="nonsense", sort="sideways", agent="nobody", blocking="maybe")

    assert "Tier: Select a valid choice" in page
    assert "Agent: Select a valid choice" in page
    assert "Tab: Select a valid choice" in page
    assert "Sort by: Select a valid choice" in page
    assert "Blocking: must be true or false" in page  # was read as "Any" without a word
    # an unknown tab falls back to the open tab, not to every escalation
    assert titles(page) == ["Open one"]


@pytest.mark.parametrize("q", ["x" * 500, "%", "_", "'; DROP TABLE x; --", "ünïcode ✓"])
def test_odd_searches_answer_without_an_error(agent, reviewer_client, q):
    create(agent, run_id="odd", title="Something 100% odd_name")
    response = reviewer_client.get(QUEUE, {"q": q})
    assert response.status_code == 200


def test_search_treats_like_wildcards_as_text(agent, reviewer_client):
    create(agent, run_id="pct", title="Raise the limit to 100%")
    create(agent, run_id="plain", title="Raise the limit to 100")
    assert titles(get(reviewer_client, q="100%")) == ["Raise the limit to 100%"]


def test_search_finds_substrings_in_any_case_in_every_tab(agent, reviewer, reviewer_client):
    """What the search means, on SQLite and PostgreSQL alike (with PostgreSQL's trigram
    indexes over every status, migration 0010): every word a case-insensitive substring of
    the title or the uncertainty, in the open tab and in the tabs of closed escalations."""
    create(agent, run_id="open", title="Rollback the Ledger migration?", uncertainty="Nightly jobs read the table; a rollback loses the rows they wrote since.")
    create(agent, run_id="other", title="Rotate the keys", uncertainty="The vault is sealed; unsealing it needs two operators and one is on leave.")
    flagged = create(agent, run_id="flag", title="Archive cold ledgers", confidence=0.8)
    done = create(agent, run_id="done", title="Rename the column", uncertainty="Ledger readers break when the column is renamed without a view over it.")
    services.escalation_decide(escalation_id=done.pk, request=services.DecisionRequest(kind="halt"), user=reviewer)
    assert flagged.tier == 2  # decided by the policy, awaiting a look

    def shown(**params) -> set[str]:
        return set(titles(get(reviewer_client, **params)))

    for q in ("ledger", "LEDGER", "eDgE", "ledg"):
        assert shown(q=q) == {"Rollback the Ledger migration?"}
        assert shown(q=q, tab="closed") == {"Archive cold ledgers", "Rename the column"}  # title, uncertainty
        assert shown(q=q, tab="flagged") == {"Archive cold ledgers"}
        assert shown(q=q, tab="decided") == {"Archive cold ledgers", "Rename the column"}
    assert shown(q="the vault") == {"Rotate the keys"}  # every word, in either text
    assert shown(q="sealed ledger") == set()
    assert shown(q="lb") == {"Rollback the Ledger migration?"}  # under three letters: no trigram
    assert shown(q="readers", tab="closed") == {"Rename the column"}
    assert shown(q="nightly", tab="closed") == set()
    page = get(reviewer_client, q="ledger")
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', page))
    assert counts == {"open": "1", "mine": "0", "waiting": "0", "flagged": "1", "overdue": "0", "decided": "2"}


def test_search_is_exact_about_accents(agent, reviewer_client):
    """No accent folding on either database (`icontains`): a word with accents finds itself."""
    create(agent, run_id="cafe", title="Close the café's tab")
    create(agent, run_id="plain", title="Close the cafe's tab")
    assert titles(get(reviewer_client, q="café")) == ["Close the café's tab"]
    assert titles(get(reviewer_client, q="cafe")) == ["Close the cafe's tab"]


def test_on_postgresql_the_closed_tabs_search_reads_the_trigram_indexes(reviewer):
    """The closed tab's statement can read the indexes over every status (migration 0010):
    their expressions are the ones Django's icontains writes. With scans and plain index
    scans off, a bitmap over them is the planner's only way short of a disabled path, once the
    tab's own sort indexes (migration 0011, which a bitmap could read for the tab's condition
    alone) are dropped in the test's transaction."""
    if connection.vendor != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's")
    from reviews.filters import QueueFilter

    request = type("Request", (), {"user": reviewer})()
    rows = QueueFilter({"q": "ledger", "tab": "closed"}, request=request).qs
    sql, params = rows.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        for index in ("esc_closed_priority_idx", "esc_closed_deadline_idx", "esc_closed_age_idx"):
            cursor.execute(f"DROP INDEX {index}")
        for path in ("seqscan", "indexscan", "indexonlyscan"):
            cursor.execute(f"SET LOCAL enable_{path} = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "esc_title_trgm_idx" in plan, plan
    assert "esc_uncertainty_trgm_idx" in plan, plan


CURSOR_VALUES = {"priority": 50, "respond_by": timezone.now(), "created_at": timezone.now(), "id": uuid.UUID(int=0)}
CLOSED_TAB_INDEX = {"priority": "esc_closed_priority_idx", "time_left": "esc_closed_deadline_idx", "age": "esc_closed_age_idx"}


@pytest.mark.parametrize(
    ("sort", "deadline"),
    [("priority", True), ("time_left", True), ("time_left", False), ("age", True)],
)
def test_on_postgresql_each_closed_tab_sort_reads_its_index(reviewer, sort, deadline):
    """Each order of the closed tab, first page, the next and the previous row (the escalation
    page's `p`), is a range of its own partial index (migration 0011: the tab's condition word
    for word), not a sort of every closed escalation. With sequential scans and sorts off, an index in the sort's order is the
    planner's only way short of a disabled path. Each range after a cursor starts at it: an
    Index Cond on the sort's leading column (and, in time left's NULL group, on the next)."""
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    from reviews.filters import QueueFilter

    request = type("Request", (), {"user": reviewer})()
    rows = queue.for_rows(QueueFilter({"tab": "closed", "sort": sort}, request=request).qs)
    ordered = rows.order_by(*queue.SORTS[sort].order_by())
    values = {**CURSOR_VALUES, **({} if deadline else {"respond_by": None})}
    cursor = queue.Cursor(sort, tuple(values[name] for name, _ in queue.SORTS[sort].fields))
    forward = [ordered.filter(condition)[:51] for condition in queue.ranges(cursor)]
    backwards = [
        rows.filter(condition).order_by(*queue._reversed(sort))[:1]
        for condition in queue.ranges(cursor, forward=False)
    ]
    lead = queue.SORTS[sort].fields[0][0]
    statements = [(ordered[:51], "")] + [
        (statement, "in the group" if not deadline and n == 0 else "bounded")
        for reads in (forward, backwards)
        for n, statement in enumerate(reads)
    ]
    for statement, start in statements:
        sql, params = statement.query.sql_with_params()
        with connection.cursor() as cursor_:
            for path in ("seqscan", "sort", "bitmapscan"):
                cursor_.execute(f"SET LOCAL enable_{path} = off")
            cursor_.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor_.fetchall())
        assert re.search(rf"Index Scan (Backward )?using {CLOSED_TAB_INDEX[sort]} on escalations_escalation", plan), plan
        assert "Sort" not in plan, plan
        if start:
            assert re.search(rf"Index Cond: .*\b{lead}\b", plan), plan
        if start == "in the group":
            assert re.search(r"Index Cond: .*respond_by IS NULL.*created_at", plan), plan


def test_next_and_previous_are_the_rows_beside_it_in_each_sort(agent, reviewer):
    """queue.neighbour, both ways, in every sort: ties on the leading fields (the same
    priority, the same created_at, no deadline) are broken as the page breaks them."""
    now = timezone.now()
    for n, (impact, due, age) in enumerate(
        [("low", None, 3), ("low", None, 3), ("high", 30, 3), ("high", 30, 2), ("low", 10, 1), ("critical", None, 5)]
    ):
        delay = {"blocking": False, "impact": impact, **({"respond_by": now + timedelta(minutes=due)} if due else {})}
        create(agent, run_id=f"n{n}", title=f"n{n}", now=now - timedelta(minutes=age), cost_of_delay=delay)
    rows = Escalation.objects.open()
    for sort in queue.SORTS:
        order, _ = queue.page(rows, sort, None, 10)
        assert len(order) == 6
        for at, escalation in enumerate(order):
            after = queue.neighbour(rows, escalation, sort, forward=True)
            before = queue.neighbour(rows, escalation, sort, forward=False)
            assert after == (order[at + 1] if at + 1 < len(order) else None), (sort, at)
            assert before == (order[at - 1] if at else None), (sort, at)


# ---------------------------------------------------------------- tabs and counts


def test_tabs_list_their_rows_and_count_them(agent, reviewer, other_reviewer, reviewer_client):
    mine = create(agent, run_id="mine", title="Mine")
    theirs = create(agent, run_id="theirs", title="Theirs")
    create_overdue(agent, title="Late")
    flagged = create(agent, run_id="flag", title="Flagged by policy", confidence=0.8)
    looked_at = create(agent, run_id="seen", title="Flag already reviewed", confidence=0.8)
    services.flag_review_record(escalation_id=looked_at.pk, user=other_reviewer, verdict="fine")
    autonomous = create(agent, run_id="auto", title="Autonomous", confidence=0.99)
    decided_by_me = create(agent, run_id="halted", title="Halted by me")
    services.escalation_decide(
        escalation_id=decided_by_me.pk, request=services.DecisionRequest(kind="halt"), user=reviewer
    )
    services.escalation_claim(escalation_id=mine.pk, user=reviewer)
    services.escalation_claim(escalation_id=theirs.pk, user=other_reviewer)
    assert (flagged.tier, autonomous.tier) == (2, 1)

    page = get(reviewer_client)
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', page))
    assert counts == {"open": "3", "mine": "1", "waiting": "0", "flagged": "1", "overdue": "1", "decided": "4"}
    assert set(titles(page)) == {"Mine", "Theirs", "Late"}
    assert titles(get(reviewer_client, tab="mine")) == ["Mine"]
    assert titles(get(reviewer_client, tab="flagged")) == ["Flagged by policy"]
    assert titles(get(reviewer_client, tab="overdue")) == ["Late"]
    assert set(titles(get(reviewer_client, tab="decided"))) == {
        "Flagged by policy", "Flag already reviewed", "Autonomous", "Halted by me"
    }
    flagged_page = get(reviewer_client, tab="flagged")
    assert "by policy:default" in flagged_page  # who decided, in place of a claim
    assert "asked " in flagged_page
    assert "waiting " not in flagged_page  # decided: no longer waiting
    assert 'aria-current="page">Flagged' in flagged_page


def test_tab_links_keep_the_filters_and_drop_the_cursor(agent, reviewer_client):
    create(agent, run_id="a", title="Anything")
    page = get(reviewer_client, impact="high", q="", after="")
    assert 'href="/?impact=high&amp;tab=mine"' in page
    assert 'href="/?impact=high"' in page  # the open tab, and "clear" keeps nothing else


def test_counts_stop_at_the_cap(agent, reviewer_client, monkeypatch):
    monkeypatch.setattr(queue, "COUNT_CAP", 2)
    for n in range(3):
        create(agent, run_id=f"f{n}", title=f"Flag {n}", confidence=0.8)
    create(agent, run_id="open", title="Open one")
    page = get(reviewer_client)
    assert 'data-count="flagged">2+<' in page
    assert 'data-count="decided">2+<' in page
    assert 'data-count="open">1<' in page
    for n in range(3):
        create(agent, run_id=f"more-{n}", title=f"More {n}")
    assert 'data-count="open">2+<' in get(reviewer_client)
    assert len(titles(get(reviewer_client, tab="flagged"))) == 3  # the list itself is whole


def test_decided_today_counts_only_today(agent, reviewer, reviewer_client):
    old = create(agent, run_id="old", title="Decided long ago")
    services.escalation_decide(
        escalation_id=old.pk,
        request=services.DecisionRequest(kind="halt"),
        user=reviewer,
        now=timezone.now() - timedelta(days=2),
    )
    counts = queue.tab_counts(reviewer, now=timezone.now())
    assert counts["decided"] == 0
    assert titles(get(reviewer_client, tab="decided")) == []
    assert "Nothing decided yet today" in get(reviewer_client, tab="decided")


def test_empty_states_say_what_is_empty(agent, reviewer_client):
    assert "Nothing waits for a human" in get(reviewer_client)
    assert "You have claimed nothing" in get(reviewer_client, tab="mine")
    assert "No flagged decisions to look at" in get(reviewer_client, tab="flagged")
    create(agent, run_id="one", title="Only one")
    page = get(reviewer_client, impact="critical")
    assert "Nothing matches these filters" in page
    assert "<table" not in page


# ---------------------------------------------------------------- sorts and cursors


@pytest.fixture
def spread(agent):
    """Five open escalations with distinct priorities, ages and deadlines (one without)."""
    now = timezone.now()
    made = []
    for n, (confidence, impact, minutes_left, age_minutes) in enumerate(
        [(0.6, "low", 300, 50), (0.3, "critical", 120, 10), (0.6, "high", None, 40), (0.55, "medium", 30, 30), (0.4, "high", 600, 20)]
    ):
        stamp = now - timedelta(minutes=age_minutes)
        cost = {"blocking": n % 2 == 0, "impact": impact}
        if minutes_left is not None:
            cost["respond_by"] = now + timedelta(minutes=minutes_left)
        made.append(
            create(
                agent,
                run_id=f"s{n}",
                title=f"Spread {n}",
                confidence=confidence,
                now=stamp,
                history=[{"at": (stamp - timedelta(minutes=1)).isoformat(), "action": "looked", "outcome": "ok"}],
                cost_of_delay=cost,
            )
        )
    return made


def expected(rows, sort: str) -> list[str]:
    if sort == "priority":
        rows = sorted(rows, key=lambda e: (-e.priority, e.created_at, str(e.pk)))
    elif sort == "time_left":
        far = timezone.now() + timedelta(days=3650)
        rows = sorted(rows, key=lambda e: (e.respond_by or far, e.created_at, str(e.pk)))
    else:
        rows = sorted(rows, key=lambda e: (e.created_at, str(e.pk)))
    return [e.title for e in rows]


@pytest.mark.parametrize("sort", ["priority", "time_left", "age"])
def test_each_sort_orders_the_queue(spread, reviewer_client, sort):
    params = {} if sort == "priority" else {"sort": sort}
    assert titles(get(reviewer_client, **params)) == expected(spread, sort)


@pytest.mark.parametrize("sort", ["priority", "time_left", "age"])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_each_sort_pages_with_a_keyset_cursor(spread, reviewer_client, monkeypatch, sort, size):
    monkeypatch.setattr(queue_views, "QUEUE_PAGE_SIZE", size)
    seen, url = [], f"{QUEUE}?sort={sort}"
    for _ in range(10):
        response = reviewer_client.get(url)
        page = response.content.decode()
        seen += titles(page)
        found = re.search(r'rel="next" href="([^"]+)"', page)
        if not found:
            break
        url = html.unescape(found.group(1))
        assert "sort=" + sort in url
        assert "after=" in url
    assert seen == expected(spread, sort)


def test_rows_with_equal_priority_page_by_age_then_id(agent, reviewer_client, monkeypatch):
    monkeypatch.setattr(queue_views, "QUEUE_PAGE_SIZE", 2)
    stamp = timezone.now() - timedelta(minutes=5)
    made = [
        create(agent, run_id=f"same-{n}", title=f"Same {n}", now=stamp,
               history=[{"at": (stamp - timedelta(minutes=1)).isoformat(), "action": "x", "outcome": "ok"}])
        for n in range(5)
    ]
    assert len({e.priority for e in made}) == 1
    seen, url = [], QUEUE
    while url:
        page = reviewer_client.get(url).content.decode()
        seen += titles(page)
        found = re.search(r'rel="next" href="([^"]+)"', page)
        url = html.unescape(found.group(1)) if found else None
    assert seen == [e.title for e in sorted(made, key=lambda e: str(e.pk))]


def test_a_cursor_of_another_sort_or_a_forged_one_goes_back_to_the_first_page(spread, reviewer_client):
    cursor = queue.Cursor.of(spread[0], "age").encode()
    response = reviewer_client.get(QUEUE, {"sort": "priority", "after": cursor, "impact": "high"})
    assert response.status_code == 302
    assert response["Location"] == "/?sort=priority&impact=high"
    for forged in ["bm9wZQ", "WyJhZ2UiLDEsMl0", "WyJwcmlvcml0eSIsIngiLCJ5IiwieiJd", "%%%"]:
        response = reviewer_client.get(QUEUE, {"after": forged})
        assert response.status_code == 302, forged


def test_cursors_round_trip_with_and_without_a_deadline(spread):
    for e in spread:
        for sort in queue.SORTS:
            cursor = queue.Cursor.of(e, sort)
            assert queue.Cursor.decode(cursor.encode(), sort) == cursor
    with pytest.raises(ValueError, match="a cursor of another sort"):
        queue.Cursor.decode(queue.Cursor.of(spread[0], "age").encode(), "time_left")


def test_sort_keys_order_rows_as_the_sort_does(spread):
    for sort in queue.SORTS:
        by_key = sorted(spread, key=lambda e: queue.sort_key(e, sort))
        assert [e.title for e in by_key] == expected(spread, sort)


# ---------------------------------------------------------------- the live row view


def test_the_row_view_renders_a_matching_row_with_its_place_and_the_counts(spread, reviewer_client):
    e = spread[1]
    page = reviewer_client.get(row_url(e), **HX).content.decode()
    assert re.match(r'\s*<template id="live-row">\s*<tr id="escalation-', page)
    assert f'data-key="{queue.sort_key(e, "priority")}"' in page
    assert e.title in page
    assert '<li data-count="open">5</li>' in page
    assert "<html" not in page


def test_the_row_view_answers_empty_when_the_filters_do_not_match(spread, reviewer, reviewer_client):
    e = spread[1]
    assert "<tr" not in reviewer_client.get(row_url(e, impact="low")).content.decode()
    assert "<tr" not in reviewer_client.get(row_url(e, tab="mine")).content.decode()
    services.escalation_claim(escalation_id=e.pk, user=reviewer)
    assert "<tr" in reviewer_client.get(row_url(e, tab="mine")).content.decode()
    services.escalation_decide(escalation_id=e.pk, request=services.DecisionRequest(kind="halt"), user=reviewer)
    page = reviewer_client.get(row_url(e)).content.decode()
    assert "<tr" not in page
    assert '<li data-count="open">4</li>' in page
    assert '<li data-count="mine">0</li>' in page
    assert "<tr" in reviewer_client.get(row_url(e, tab="decided")).content.decode()


def test_the_row_view_key_follows_the_page_sort(spread, reviewer_client):
    e = spread[2]  # no deadline: last by time left
    page = reviewer_client.get(row_url(e, sort="time_left")).content.decode()
    assert f'data-key="{queue.sort_key(e, "time_left")}"' in page
    assert 'data-key="~|' in page


def test_the_row_view_needs_a_reviewer(spread, client):
    response = client.get(row_url(spread[0]))
    assert response.status_code == 302
    client.force_login(make_user("nobody"))
    assert client.get(row_url(spread[0])).status_code == 403


# ---------------------------------------------------------------- queries


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "params",
    ["", "?sort=time_left", "?sort=age&impact=high", "?tab=mine&claimed=me", "?tab=flagged", "?tab=decided&q=shim"],
)
def test_query_count_does_not_grow_with_the_page(api, reviewer, other_reviewer, reviewer_client, params):
    first = post_package(api, run_id="r0")
    services.escalation_claim(escalation_id=first.pk, user=reviewer)
    post_package(api, run_id="f0", confidence=0.8)
    few = count_queries(reviewer_client, QUEUE + params)
    for n in range(1, 15):
        e = post_package(api, run_id=f"r{n}", cost_of_delay={"blocking": True, "impact": "high", "blocked_tasks": n})
        post_package(api, run_id=f"f{n}", confidence=0.8)
        if n % 2:
            services.escalation_claim(escalation_id=e.pk, user=reviewer if n % 3 else other_reviewer)
    assert count_queries(reviewer_client, QUEUE + params) == few == 12
    # the row view draws no filter form: no agent and domain choices to read
    assert count_queries(reviewer_client, row_url(first) + params) == 10


# ---------------------------------------------------------------- escaping


def test_package_html_is_text_in_the_queue_and_in_live_rows(reviewer_client):
    ensure_default_policies()
    agent = services.agent_create(name="evil<b>agent</b>", domain="default").agent
    e = create(
        agent,
        run_id="xss",
        title=XSS,
        uncertainty=f"{XSS} is what the agent is unsure about, with enough words.",
        options=[{"key": "go", "label": XSS, "recommended": True}],
    )
    for page in (get(reviewer_client), reviewer_client.get(row_url(e)).content.decode(), get(reviewer_client, q="script")):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
        assert "evil&lt;b&gt;agent&lt;/b&gt;" in page
    assert titles(get(reviewer_client, agent="evil<b>agent</b>")) == [XSS]


# ---------------------------------------------------------------- live notices

application = URLRouter(websocket_urlpatterns)


@sync_to_async
def _setup_agent():
    ensure_default_policies()
    return services.agent_create(name="notice-agent").agent


@sync_to_async
def _create(agent, **overrides):
    return create(agent, **overrides)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_notices_name_the_actor_and_carry_the_priority(reviewer):
    agent = await _setup_agent()
    socket = WebsocketCommunicator(application, "/ws/queue/")
    socket.scope["user"] = reviewer
    assert (await socket.connect(timeout=5))[0]

    e = await _create(agent, run_id="n1")
    created = await socket.receive_json_from(timeout=3)
    await sync_to_async(services.escalation_claim)(escalation_id=e.pk, user=reviewer)
    claimed = await socket.receive_json_from(timeout=3)
    await sync_to_async(services.escalation_release)(escalation_id=e.pk, user=reviewer)
    released = await socket.receive_json_from(timeout=3)
    await sync_to_async(services.escalation_withdraw)(escalation=e)
    withdrawn = await socket.receive_json_from(timeout=3)
    auto = await _create(agent, run_id="n2", confidence=0.99)
    by_policy = await socket.receive_json_from(timeout=3)
    await socket.disconnect()

    assert created == {"id": str(e.pk), "kind": "created", "status": "pending", "actor": "notice-agent", "priority": e.priority}
    assert (claimed["kind"], claimed["actor"], claimed["status"]) == ("claimed", "alice", "claimed")
    assert (released["kind"], released["actor"], released["status"]) == ("released", "alice", "pending")
    assert (withdrawn["kind"], withdrawn["actor"]) == ("withdrawn", "notice-agent")
    assert (by_policy["id"], by_policy["kind"], by_policy["actor"]) == (str(auto.pk), "decided", "policy")
    assert by_policy["priority"] == auto.priority


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_timeouts_and_lapsed_claims_are_announced_as_timeout(reviewer):
    agent = await _setup_agent()
    now = timezone.now()
    e = await _create(
        agent,
        run_id="t1",
        timeout_option="shim",
        cost_of_delay={"blocking": False, "impact": "low", "respond_by": now + timedelta(minutes=1)},
    )
    held = await _create(agent, run_id="t2")
    await sync_to_async(services.escalation_claim)(escalation_id=held.pk, user=reviewer, now=now - timedelta(hours=1))
    socket = WebsocketCommunicator(application, "/ws/queue/")
    socket.scope["user"] = reviewer
    assert (await socket.connect(timeout=5))[0]

    await sync_to_async(services.claims_expire)(now=now)
    expired = await socket.receive_json_from(timeout=3)
    await sync_to_async(services.timeouts_apply)(now=now + timedelta(minutes=2))
    timed_out = await socket.receive_json_from(timeout=3)
    await socket.disconnect()

    assert (expired["id"], expired["kind"], expired["actor"]) == (str(held.pk), "released", "timeout")
    assert (timed_out["id"], timed_out["kind"], timed_out["actor"]) == (str(e.pk), "decided", "timeout")


@pytest.mark.parametrize("after", ["garbage", "WwoK", "W1tbW1tbW1tb" * 500])
def test_a_bad_cursor_starts_the_list_again(reviewer_client, after):
    """A cursor nested too deeply (a JSON array 1500 levels down) was a 500."""
    response = reviewer_client.get(QUEUE, {"after": after, "sort": "age"})
    assert response.status_code == 302
    assert "after" not in response["Location"]
