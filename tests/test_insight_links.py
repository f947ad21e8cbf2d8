"""Insights that lead somewhere: agents, domains and reasons in the tables link to the queue
filtered to them (a past range: its closed escalations), and each link lists exactly the
escalations its row counted; a drift alert links to the agent, its policy and a prefilled
backtest. The queue's created_from / created_to filters and closed tab are tested here too."""

import csv
import html
import io
import re
from datetime import UTC, timedelta

import pytest
import time_machine
from django.utils import timezone

from escalations import services as escalation_services
from insights import services
from insights.links import QueueLinks
from insights.selectors import Filters
from tests.insights_data import DAY, NEXT_DAY, at, build_day, create, decide, gate

RANGE = {"start": DAY.isoformat(), "end": DAY.isoformat()}


@pytest.fixture
def day(agent, reviewer):
    """build_day's four escalations of agent-007 on DAY, all closed by now; another agent's
    one on DAY, decided; agent-007's one on the next day (outside the range), left open."""
    built = build_day(agent, reviewer)
    other = escalation_services.agent_create(name="other-agent", domain="default").agent
    built["other"] = create(other, "o1", 0.62, at(15))
    decide(built["other"], reviewer, at(16), "shim")
    built["later"] = create(agent, "r9", 0.62, at(9, day=NEXT_DAY))
    services.rollups_rebuild(days=[DAY, NEXT_DAY])
    return built


def links_to(page: str, text: str) -> list[str]:
    """The hrefs of the page's links whose text is `text`."""
    return [
        html.unescape(href)
        for href, inner in re.findall(r'<a href="([^"]+)">([^<]*)</a>', page)
        if html.unescape(inner) == text
    ]


def listed(client, url: str) -> set:
    response = client.get(url)
    assert response.status_code == 200
    return {row.pk for row in response.context["rows"]}


def test_a_past_rows_agent_lists_exactly_the_escalations_the_row_counted(manager_client, day):
    page = manager_client.get("/insights/", RANGE).content.decode()
    # The rate table's row for (DAY, agent-007, default) counts 4 escalations.
    assert re.search(r">agent-007</a></td><td>default|>agent-007</a></td><td><a[^>]*>default", page)
    [first, *_] = links_to(page, "agent-007")
    assert "tab=closed" in first
    assert f"created_from={DAY}&created_to={DAY}" in first
    assert listed(manager_client, first) == {day[k].pk for k in ("e1", "e2", "e3", "e4")}
    # The domain lists both agents' escalations of the day, not the next day's.
    [domain, *_] = links_to(page, "default")
    expected = {day[k].pk for k in ("e1", "e2", "e3", "e4", "other")}
    assert listed(manager_client, domain) == expected


def test_a_reasons_header_and_counts_lead_to_that_reasons_escalations(manager_client, day):
    page = manager_client.get("/insights/", RANGE).content.decode()
    [header] = links_to(page, "Missing information")
    assert listed(manager_client, header) == {day["e2"].pk}
    # The count cell "1" under missing_information, in the day's row, leads there too.
    hrefs = [h for h in links_to(page, "1") if "reason=missing_information" in h]
    assert hrefs
    assert listed(manager_client, hrefs[0]) == {day["e2"].pk}
    [approach] = links_to(page, "Approach choice")
    assert listed(manager_client, approach) == {day[k].pk for k in ("e1", "e3", "e4", "other")}


def test_the_page_filters_carry_into_the_links(manager_client, day):
    page = manager_client.get("/insights/", {**RANGE, "agent": "agent-007"}).content.decode()
    [header] = links_to(page, "Approach choice")
    assert "agent=agent-007" in header
    assert listed(manager_client, header) == {day[k].pk for k in ("e1", "e3", "e4")}


def test_a_range_that_reaches_today_leads_to_what_is_open(manager_client, agent, reviewer):
    now = timezone.now()
    open_one = create(agent, "n1", 0.62, now - timedelta(minutes=5))
    # its own day (five minutes ago is yesterday just after midnight UTC)
    services.rollups_rebuild(days=[open_one.created_at.astimezone(UTC).date()])
    page = manager_client.get("/insights/").content.decode()
    hrefs = links_to(page, "agent-007")
    assert hrefs
    assert all("tab=" not in h and "created_" not in h for h in hrefs)
    assert listed(manager_client, hrefs[0]) == {open_one.pk}


def test_links_span_a_weeks_days_within_the_range():
    links = QueueLinks(Filters(DAY, DAY + timedelta(days=40)), today=DAY + timedelta(days=100))
    assert links.period((DAY - timedelta(days=0)).isoformat()) == (DAY, DAY + timedelta(days=6))
    last_monday = DAY + timedelta(days=35)
    assert links.period(last_monday.isoformat()) == (last_monday, DAY + timedelta(days=40))


def test_csv_exports_keep_plain_values(manager_client, day):
    response = manager_client.get("/insights/export/escalation-rate.csv", RANGE)
    text = response.content.decode()
    assert "<a" not in text
    assert "agent-007,default" in text


# ---------------------------------------------------------------- the queue's filters


def test_the_queue_filters_by_created_days_and_lists_closed_ones(manager_client, day):
    base = "/?tab=closed&created_from=2026-03-02&created_to=2026-03-02"
    assert listed(manager_client, base) == {day[k].pk for k in ("e1", "e2", "e3", "e4", "other")}
    # The next day's escalation is open: in the open tab, not the closed one.
    assert listed(manager_client, "/?tab=closed&created_from=2026-03-03") == set()
    assert listed(manager_client, "/?created_from=2026-03-03&created_to=2026-03-03") == {
        day["later"].pk
    }
    assert listed(manager_client, "/?tab=closed&created_to=2026-03-01") == set()


def test_a_bad_created_day_is_named(manager_client, db):
    response = manager_client.get("/?created_from=yesterday")
    assert "created_from" in response.context["filterset"].errors


def test_the_reviewer_api_takes_the_created_days(client, reviewer, day):
    from reviews.services import reviewer_token_issue

    token = reviewer_token_issue(user=reviewer, label="t")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    ok = client.get("/api/v1/review/queue?created_from=2026-03-03", **auth)
    assert ok.status_code == 200
    assert [item["id"] for item in ok.json()["items"]] == [str(day["later"].pk)]
    assert client.get("/api/v1/review/queue?created_to=March", **auth).status_code == 400


# ---------------------------------------------------------------- drift alerts


@pytest.fixture
def drifting(agent):
    """agent-007 drifting this week: four quiet weeks of rollups, then a busy one."""
    from tests.test_drift import NOW, _weeks

    _weeks(agent, daily_gates=100, base_rate=0.02, week_rate=0.3)
    with time_machine.travel(NOW, tick=False):
        yield agent


def test_a_drift_alert_links_to_the_agent_its_policy_and_a_prefilled_backtest(
    manager_client, drifting
):
    page = manager_client.get("/insights/").content.decode()
    item = re.search(r'<li class="drift-item".*?</li>', page, re.S)
    assert item, page
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', item.group(0))]
    assert hrefs[0] == "/?agent=agent-007"
    assert f"/agents/{drifting.pk}" in hrefs
    assert "/policies/default" in hrefs
    [backtest] = [h for h in hrefs if "backtest=1" in h]
    # default: flag threshold 0.70, escalate 0.50: the proposal is 0.65.
    assert backtest == "/policies/default?flag_threshold=0.65&backtest=1#backtest"
    response = manager_client.get(backtest.split("#")[0])
    assert response.status_code == 200
    assert response.context["form"]["flag_threshold"].value() == "0.65"
    saved, typed, _flipped = response.context["results"]
    assert (saved.rules.flag_threshold, typed.rules.flag_threshold) == (0.7, 0.65)
    assert "Prefilled from a link" in response.content.decode()


def test_a_prefilled_value_the_form_refuses_is_shown_not_backtested(manager_client, db):
    from tests.conftest import ensure_default_policies

    ensure_default_policies()
    response = manager_client.get("/policies/default?flag_threshold=2&backtest=1")
    assert response.status_code == 200
    assert response.context["results"] is None
    assert response.context["form"].errors["flag_threshold"]


def test_the_drift_table_links_agents_to_this_weeks_queue(manager_client, drifting):
    page = manager_client.get("/insights/").content.decode()
    assert "/?agent=agent-007" in [*links_to(page, "agent-007")]



def test_the_rate_chart_marks_where_a_drift_alert_was_sent(manager_client, drifting):
    from tests.test_drift import MONDAY, NOW, TODAY

    assert len(services.drift_check(now=NOW)) == 1
    page = manager_client.get("/insights/", {"start": MONDAY - timedelta(days=7), "end": TODAY})
    [figure, per_run] = page.context["charts"][0].figures
    [line] = figure["layout"]["shapes"]
    assert (line["x0"], line["x1"], line["yref"]) == (TODAY.isoformat(), TODAY.isoformat(), "paper")
    [label] = figure["layout"]["annotations"]
    assert (label["x"], label["text"]) == (TODAY.isoformat(), "drift: agent-007")
    assert per_run["layout"]["shapes"] == figure["layout"]["shapes"]
    assert "drift alerts sent (agent-007 on 12 Mar)" in page.content.decode()
    # Another agent's filter, or a range before the alert: no mark.
    for params in ({"end": MONDAY}, {"domain": "code"}):
        query = {"start": MONDAY - timedelta(days=7), "end": TODAY, **params}
        [figure, _] = manager_client.get("/insights/", query).context["charts"][0].figures
        assert figure["layout"]["shapes"] == []


# ---------------------------------------------------------------- escalations per gate check


def test_escalations_without_a_gate_call_are_counted_apart(manager_client, agent, reviewer):
    build_day(agent, reviewer)  # 4 escalations, each after a gate call of its run; 10 calls
    create(agent, "no-gate", 0.62, at(16))  # no gate call in its run
    gate(agent, at(8, day=DAY - timedelta(days=2)), 1, run_ids=("stale",))
    create(agent, "stale", 0.62, at(17))  # its run's call was 57 h before
    gate(agent, at(18), 1, run_ids=("after",))
    create(agent, "after", 0.62, at(17, 59))  # the call came after it
    services.rollups_rebuild(days=[DAY])
    exported = manager_client.get("/insights/export/escalation-rate.csv", RANGE)
    [row] = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert (row["escalations"], row["without_gate_call"], row["gate_checks"]) == ("7", "3", "11")
    assert float(row["rate_per_gate_check"]) == pytest.approx(4 / 11)
    assert float(row["rate_per_run"]) == pytest.approx(7 / 7)
    page = manager_client.get("/insights/", RANGE).content.decode()
    assert "3 escalations in this range had no gate call" in page


def test_the_gated_rate_never_exceeds_one_per_escalation_with_a_call(manager_client, agent):
    """Many escalations and few gate calls: without the ungated ones apart the rate was 5."""
    gate(agent, at(9), 1, run_ids=("only",))
    for n in range(5):
        create(agent, f"loose-{n}", 0.62, at(10, n))
    services.rollups_rebuild(days=[DAY])
    [figure, _] = manager_client.get("/insights/", RANGE).context["charts"][0].figures
    assert figure["data"][0]["y"] == [0.0]
