"""The insights page: every chart's numbers on a hand-computed day (through the CSV of its
table), the page itself, its filters and empty states, permissions, and a real browser."""

import csv
import io
import os
from datetime import date
from pathlib import Path

import pytest
from django.test import Client

from insights import services
from tests.conftest import make_user, need
from tests.insights_data import DAY, build_day

RANGE = {"start": DAY.isoformat(), "end": DAY.isoformat()}


@pytest.fixture
def day(agent, reviewer):
    built = build_day(agent, reviewer)
    services.rollups_rebuild(days=[DAY])
    return built


def export(client: Client, key: str, **params) -> list[dict]:
    response = client.get(f"/insights/export/{key}.csv", {**RANGE, **params})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def num(value: str) -> float | None:
    return None if value == "" else float(value)


# ---------------------------------------------------------------- each chart's numbers


def test_rate_per_gate_check_and_per_run(manager_client, day):
    [row] = export(manager_client, "escalation-rate")
    assert row["period"] == "2026-03-02"
    assert (row["agent"], row["domain"]) == ("agent-007", "default")
    assert (row["escalations"], row["gate_checks"], row["runs"]) == ("4", "10", "4")
    assert num(row["rate_per_gate_check"]) == pytest.approx(0.4)
    assert num(row["rate_per_run"]) == pytest.approx(1.0)


def test_escalations_by_reason_and_by_tier(manager_client, day):
    [reasons] = export(manager_client, "escalations-by-reason")
    assert reasons == {
        "period": "2026-03-02",
        "approach_choice": "3",
        "missing_information": "1",
        "total": "4",
    }
    [tiers] = export(manager_client, "escalations-by-tier")
    assert tiers == {"period": "2026-03-02", "1": "1", "2": "1", "3": "1", "4": "1", "total": "4"}


def test_time_to_claim_and_decision_per_tier(manager_client, day):
    rows = {row["tier"]: row for row in export(manager_client, "time-to-decision")}
    assert set(rows) == {"1", "2", "3", "4"}
    three, four = rows["3"], rows["4"]
    # tier 3: claimed after 4 min (bucket 60-300 s), decided after 20 min (900-1800 s)
    assert num(three["claim_p50_seconds"]) == pytest.approx(60 + 240 * 0.5)
    assert num(three["claim_p90_seconds"]) == pytest.approx(60 + 240 * 0.9)
    assert num(three["decision_p50_seconds"]) == pytest.approx(900 + 900 * 0.5)
    assert num(three["decision_p90_seconds"]) == pytest.approx(900 + 900 * 0.9)
    assert (three["with_respond_by"], three["decided_within_respond_by"]) == ("1", "1")
    assert num(three["share_within_respond_by"]) == 1.0
    # tier 4: claimed after 30 min (900-1800 s), decided after 2 h (3600-7200 s), no respond_by
    assert num(four["claim_p50_seconds"]) == pytest.approx(1350)
    assert num(four["decision_p90_seconds"]) == pytest.approx(3600 + 3600 * 0.9)
    assert four["share_within_respond_by"] == ""
    assert (rows["1"]["human_decisions"], rows["1"]["claim_p50_seconds"]) == ("0", "")


def test_recommended_option_share(manager_client, day):
    assert export(manager_client, "recommended-option") == [
        {"agent": "agent-007", "human_decisions": "2", "took_recommended": "1", "share": "0.5"}
    ]


def test_calibration_ece_and_brier(manager_client, day):
    [summary] = export(manager_client, "calibration-summary")
    # judged: 0.62 agreed, 0.40 not, 0.80 not (the flag review); one per bin
    assert summary["judged"] == "3"
    assert num(summary["ece"]) == pytest.approx((0.38 + 0.40 + 0.80) / 3)
    assert num(summary["brier"]) == pytest.approx((0.38**2 + 0.40**2 + 0.80**2) / 3)
    bins = {row["confidence_bin"]: row for row in export(manager_client, "calibration-bins")}
    assert set(bins) == {"0.4–0.5", "0.6–0.7", "0.8–0.9"}
    assert (bins["0.6–0.7"]["agreed"], num(bins["0.6–0.7"]["share_agreed"])) == ("1", 1.0)
    assert num(bins["0.8–0.9"]["mean_confidence"]) == pytest.approx(0.8)


def test_budget_use(manager_client, day):
    [row] = export(manager_client, "budget-use")
    assert (row["daily_budget"], row["active_days"], row["escalations"], row["peak_day"]) == (
        "50",
        "1",
        "4",
        "4",
    )
    assert num(row["mean_use"]) == pytest.approx(4 / 50)
    assert row["days_over_budget"] == "0"


def test_reviewer_load(manager_client, day):
    # alice: 16 min (900-1800 s bucket) and 90 min (3600-7200 s); the median is the 1st of 2
    assert export(manager_client, "reviewer-load") == [
        {"reviewer": "alice", "decisions": "2", "median_seconds": "1800.0"}
    ]


def test_long_ranges_have_a_point_per_week_starting_monday(manager_client, day, agent):
    from insights.models import ActivityRollup, EscalationRollup

    # a Wednesday of the same week, and a Sunday of the week before
    for when, n in ((date(2026, 3, 4), 6), (date(2026, 3, 1), 2)):
        ActivityRollup.objects.create(
            day=when, agent=agent, domain="default", escalations=n, gate_checks=10 * n
        )
        EscalationRollup.objects.create(
            day=when, agent=agent, domain="default", reason="novelty", escalations=n
        )
    weekly = {"start": "2026-02-01", "end": "2026-03-31"}  # 59 days: weekly points
    rows = {r["period"]: r for r in export(manager_client, "escalation-rate", **weekly)}
    assert set(rows) == {"2026-02-23", "2026-03-02"}
    assert (rows["2026-03-02"]["escalations"], rows["2026-03-02"]["gate_checks"]) == ("10", "70")
    reasons = {r["period"]: r for r in export(manager_client, "escalations-by-reason", **weekly)}
    assert reasons["2026-03-02"]["novelty"] == "6"
    assert reasons["2026-02-23"]["total"] == "2"
    assert len(reasons) == 10  # every week of the range, empty ones as zeros


def test_filters_narrow_every_table(manager_client, day):
    assert export(manager_client, "escalation-rate", domain="code") == []
    assert export(manager_client, "reviewer-load", start="2026-03-03", end="2026-03-09") == []
    other = make_user("other-manager", "manager")
    client = Client()
    client.force_login(other)
    assert len(export(client, "escalation-rate", agent="agent-007")) == 1


# ---------------------------------------------------------------- the page


def test_the_page_shows_numbers_in_tables_and_figures(
    manager_client, day, django_assert_max_num_queries
):
    with django_assert_max_num_queries(20):
        response = manager_client.get("/insights/", RANGE)
    assert response.status_code == 200
    html = response.content.decode()
    for title in (
        "Escalation rate over time",
        "Escalations by reason",
        "Escalations by tier",
        "Time to claim and to decision",
        "Recommended option chosen",
        "Calibration",
        "Budget use",
        "Reviewer load",
        "Drift alerts",
    ):
        assert title in html
    assert "0.527" in html  # the ECE, shown
    assert "0.315" in html  # the Brier score
    assert "30 min" in html  # alice's median
    assert 'id="figure-calibration-0"' in html  # the figure's JSON, for plotly
    assert "/static/plotly/plotly.min.js" in html
    assert "No data for this range" not in html


def test_names_in_tables_and_figures_are_escaped(manager_client, day):
    from escalations.models import Agent

    Agent.objects.filter(name="agent-007").update(name="<b>007</b>")
    html = manager_client.get("/insights/", RANGE).content.decode()
    assert "<b>007</b>" not in html
    assert "&lt;b&gt;007&lt;/b&gt;" in html  # in the tables
    assert "\\u003Cb\\u003E007" in html  # in the figures' JSON (json_script)


def test_the_htmx_request_gets_the_body_partial(manager_client, day):
    response = manager_client.get("/insights/", RANGE, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="insights-body"')
    assert "<form" not in html


def test_empty_ranges_say_so(manager_client, db):
    response = manager_client.get("/insights/")
    html = response.content.decode()
    assert html.count("No data for this range") == 8
    assert "nothing to test" in html
    assert export(manager_client, "escalation-rate") == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "Start: Enter a valid date."),
        ({"start": "2026-03-05", "end": "2026-03-01"}, "End: must be on or after the start date"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "End: the range can be at most 366 days"),
        ({"agent": "nobody"}, "Agent: Select a valid choice"),
        ({"domain": "<script>"}, "Domain: Select a valid choice"),
        ({"end": "9999-12-31"}, "End: must be between 2000-01-01 and"),
        ({"start": "0001-01-01", "end": "0001-01-02"}, "Start: must be between"),
    ],
)
def test_bad_filters_name_the_field_and_fall_back(manager_client, db, params, message):
    response = manager_client.get("/insights/", params)
    assert response.status_code == 200
    html = response.content.decode()
    if message:
        assert message in html
        assert "<script>" not in html.split("</header>", 1)[1].split("<script src")[0]
    csv_response = manager_client.get("/insights/export/budget-use.csv", params)
    assert csv_response.status_code == 200


def test_every_table_is_exported_by_its_chart(db):
    from insights import charts
    from insights.forms import default_range

    f = charts.Filters(*default_range(DAY))
    keys = {table.key: key for key, build in charts.CHARTS.items() for table in build(f).tables}
    assert keys == charts.TABLES


def test_an_unknown_table_is_a_404(manager_client, db):
    assert manager_client.get("/insights/export/nothing.csv").status_code == 404


def test_the_drift_table_exports(manager_client, db):
    response = manager_client.get("/insights/export/drift.csv")
    assert response.content.decode().splitlines()[0].startswith("agent,escalations,gate_checks")


@pytest.mark.parametrize("url", ["/insights/", "/insights/export/budget-use.csv"])
def test_only_managers_see_insights(client, reviewer_client, manager_client, url):
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    denied = reviewer_client.get(url)
    assert denied.status_code == 403
    assert "manager" in denied.content.decode()
    assert manager_client.get(url).status_code == 200


def test_managers_have_a_nav_link(manager_client, reviewer_client, db):
    assert 'href="/insights/"' in manager_client.get("/insights/").content.decode()
    assert 'href="/insights/"' not in reviewer_client.get("/").content.decode()


def test_plotly_js_is_served_from_the_installed_package(db):
    from django.contrib.staticfiles import finders

    found = finders.find("plotly/plotly.min.js")
    assert found
    assert Path(found).stat().st_size > 1_000_000
    assert "site-packages" in found or "dist-packages" in found
    assert finders.find("plotly/templates/plotly.json") is None  # only that one file


# ---------------------------------------------------------------- in a browser


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_page_draws_every_chart_from_the_demo_data(live_server_asgi, monkeypatch):
    """Demo data (seed_demo, which ends with seed_history); every figure is drawn by
    plotly.js without errors. (`make screenshots` refreshes docs/screenshots/insights.png.)"""
    chromium = "/usr/bin/chromium"
    need(os.path.exists(chromium), "Debian chromium")
    from django.core.management import call_command
    from playwright.sync_api import sync_playwright

    from tests.conftest import ensure_default_policies

    ensure_default_policies()
    call_command("seed_demo", stdout=io.StringIO())
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server_asgi}/accounts/login/")
            page.fill("input[name=username]", "demo")
            page.fill("input[name=password]", "handoff-demo")
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server_asgi}/")
            page.click("nav >> text=Insights")
            page.wait_for_selector("[data-figure] .main-svg")
            page.wait_for_function(
                "[...document.querySelectorAll('[data-figure]')].every(e => e.querySelector('.main-svg'))"
            )
            figures = page.locator("[data-figure]").count()
            # rate (2), reasons, tiers, timing, recommended, calibration, machine, budget, reviewers
            assert figures == 10
            # the machine reviewer's agreement: advice people decided after, a decision reviewed
            assert "claude-reviewer" in page.text_content("#chart-machine")
            assert "schema-pilot" in page.text_content(".drift-list")
            assert errors == []
            # the filters work without reloading the page (htmx), and the charts are redrawn
            page.select_option("#id_agent", "refactor-bot")
            page.wait_for_url("**agent=refactor-bot**")
            page.wait_for_function(
                "document.querySelector('.insights-scope').textContent.includes('refactor-bot')"
                " && document.querySelector('[data-figure] .main-svg')"
            )
            assert errors == []
        finally:
            browser.close()
