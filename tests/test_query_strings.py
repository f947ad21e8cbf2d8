"""Query strings: nothing a client puts there gives a 500 (PostgreSQL refuses NUL in text)."""

import base64

import pytest
from django.test import Client

from reviews.services import reviewer_token_issue

pytestmark = pytest.mark.django_db

FORGED_CURSOR = base64.urlsafe_b64encode(b"5|2026-11-21T00:00:00+00:00|not-a-uuid").decode().rstrip("=")


@pytest.mark.parametrize("query", ["agent=%00", "reason=%00", "domain=a%00b", "a%00=1", f"cursor={FORGED_CURSOR}"])
def test_the_reviewer_queue_refuses_bad_queries_with_400(reviewer, query):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {reviewer_token_issue(user=reviewer)}")
    response = client.get(f"/api/v1/review/queue?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("query", ["after=%00", f"after={FORGED_CURSOR}"])
def test_the_queue_page_survives_bad_queries(reviewer_client, query):
    assert reviewer_client.get(f"/?{query}").status_code in (302, 400)


def test_agent_endpoints_refuse_nul_in_queries(api):
    assert api.get("/api/v1/decisions?after=%00").status_code == 400
    assert api.get("/api/v1/escalations/x?wait=%00").status_code == 400
