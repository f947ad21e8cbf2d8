"""The served OpenAPI document says what the server does, and /api/v1/docs renders it from
the server's own static files (air-gapped: no third-party request)."""

import os
import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

from escalations.problems import CONTENT_TYPE as PROBLEM_TYPE
from reviews.filters import QueueFilter
from tests.conftest import need

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def document(db) -> dict:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_every_error_is_problem_json_and_the_common_ones_are_everywhere(document):
    for name, operation in operations(document):
        responses = operation["responses"]
        assert {"400", "401", "413", "429"} <= set(responses), name
        if "requestBody" in operation:
            assert {"415", "422"} <= set(responses), name
        for status, response in responses.items():
            if int(status) >= 400:
                assert list(response["content"]) == [PROBLEM_TYPE], (name, status)
        assert responses["429"]["headers"]["Retry-After"]["required"] is True, name
        assert "WWW-Authenticate" in responses["401"]["headers"], name
    assert "Allow" in document["components"]["responses"]["MethodNotAllowed"]["headers"]


def test_every_answer_to_an_agent_documents_its_budget_headers(document):
    budget = {"Handoff-Budget-Limit", "Handoff-Budget-Used", "Handoff-Budget-Remaining"}
    agent_operations = [
        (name, operation) for name, operation in operations(document) if "/review/" not in name
    ]
    assert len(agent_operations) == 7
    for name, operation in agent_operations:
        for status, response in operation["responses"].items():
            if status[0] == "2" or status in ("304", "404", "409", "422"):
                assert budget <= set(response.get("headers", {})), (name, status)
    for name, operation in operations(document):
        if "/review/" in name:
            assert not any(
                budget & set(response.get("headers", {})) for response in operation["responses"].values()
            ), name


def test_etags_cursors_and_the_escalation_object_are_described(document):
    paths = document["paths"]
    get = paths["/api/v1/escalations/{escalation_id}"]["get"]["responses"]
    assert "ETag" in get["200"]["headers"]
    assert "ETag" in get["304"]["headers"]
    created = paths["/api/v1/escalations"]["post"]["responses"]["201"]
    assert {"ETag", "Location"} <= set(created["headers"])
    assert created["links"]["GetEscalation"]["parameters"] == {"escalation_id": "$response.body#/id"}
    schemas = document["components"]["schemas"]
    assert "tier_reasons" in schemas["EscalationOut"]["required"]
    assert schemas["DecisionsPageOut"]["properties"]["next_cursor"]["pattern"] == "^[0-9]{0,18}$"
    after = next(p for p in paths["/api/v1/decisions"]["get"]["parameters"] if p["name"] == "after")
    assert "^[0-9]{0,18}$" in str(after["schema"])


def test_the_queue_documents_the_dashboards_filters(document):
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/review/queue"]["get"]["parameters"]}
    assert set(QueueFilter.base_filters) | {"tab", "sort", "limit", "cursor"} == set(parameters)
    assert "" in parameters["reason"]["schema"]["enum"]
    assert "novelty" in parameters["reason"]["schema"]["enum"]


def test_the_webhook_events_are_openapi_webhooks(document):
    decided = document["webhooks"]["escalation.decided"]["post"]
    headers = {p["name"] for p in decided["parameters"] if p["in"] == "header"}
    assert headers == {"Handoff-Event", "Handoff-Delivery", "Handoff-Signature"}
    body = decided["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    event = document["components"]["schemas"][body]
    assert set(event["required"]) == {"event", "delivery_id", "escalation"}


def test_the_docs_page_loads_only_the_servers_own_files(db):
    page = Client().get("/api/v1/docs").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any("swagger-ui-bundle.js" in s for s in sources), sources
    assert all(s.startswith("/") and not s.startswith("//") for s in sources), sources


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_docs_render_air_gapped_in_a_browser(live_server_asgi, monkeypatch):
    """Every request to anywhere but this server is refused; the page still renders every
    operation and the webhook."""
    need(os.path.exists(CHROMIUM), "Debian chromium")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    own = urlsplit(live_server_asgi).netloc
    refused: list[str] = []
    errors: list[str] = []

    def only_own(route):
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.route("**/*", only_own)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server_asgi}/api/v1/docs")
            page.wait_for_selector(".opblock", timeout=15000)
            page.wait_for_load_state("networkidle")
            text = page.text_content("#swagger-ui")
            blocks = page.locator(".opblock").count()
        finally:
            browser.close()
    assert not refused, refused
    assert not errors, errors
    assert blocks >= 11
    for path in ("/api/v1/escalations", "/api/v1/decisions", "/api/v1/gate", "/api/v1/review/queue"):
        assert path in text
    assert "escalation.decided" in text  # the webhooks section
