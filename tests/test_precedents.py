"""Precedents: `similar` on the reviewer API's detail and the escalation page finds the
decided near-duplicate of an escalation (trigram similarity on PostgreSQL, difflib on
SQLite), with what was decided and by whom; and the page says the agent's calibration."""

from escalations import precedents, services
from reviews.services import reviewer_token_issue
from tests.conftest import post_package


def decide(escalation, user, **request):
    services.escalation_decide(escalation_id=escalation.pk, request=services.DecisionRequest(**request), user=user)


def test_similar_finds_the_decided_near_duplicate(api, agent, reviewer, client):
    twin = post_package(api, run_id="a", title="Rename the billing column amount_cents in invoices", confidence=0.6)
    decide(twin, reviewer, kind="option", option="shim")
    other = post_package(api, run_id="b", title="Upgrade the logging library to version 3", confidence=0.6)
    decide(other, reviewer, kind="halt")
    post_package(api, run_id="c", title="Rename the billing column amount_cents in orders", confidence=0.6)  # open: no
    new = post_package(api, run_id="d", title="Rename billing column amount_cents in invoices", confidence=0.6)

    found = precedents.similar(new)
    assert [e.pk for e in found] == [twin.pk]

    token = reviewer_token_issue(user=reviewer)
    detail = client.get(f"/api/v1/review/escalations/{new.pk}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    (one,) = detail["similar"]
    assert one["id"] == str(twin.pk)
    assert one["decision"]["option"] == "shim"
    assert one["decision"]["decided_by"] == {"type": "human", "name": "alice"}
    assert one["url"].endswith(f"/escalations/{twin.pk}")


def test_the_page_shows_precedents_and_the_calibration_sentence(api, agent, reviewer, reviewer_client):
    twin = post_package(api, run_id="a", title="Drop the stale sessions index", confidence=0.6)
    decide(twin, reviewer, kind="option", option="update-callers")
    new = post_package(api, run_id="b", title="Drop the stale sessions indexes", confidence=0.88)
    html = reviewer_client.get(f"/escalations/{new.pk}").content.decode()
    assert "Decided before" in html
    assert "Drop the stale sessions index</a>" in html
    assert "by alice" in " ".join(html.split())
    assert "agent-007 is not calibrated yet: fewer than 30" in html

    counts = {(agent.pk, "default", 8): (38, 23)}
    services.calibration_store(counts=counts)
    html = " ".join(reviewer_client.get(f"/escalations/{new.pk}").content.decode().split())
    assert "agent-007 states 0.88; when it said 0.8-0.9 in default, people agreed 61% of the time (23 of 38 judged)" in html


def test_nothing_alike_is_no_precedent(api, reviewer):
    decide(post_package(api, run_id="a", title="Upgrade the logging library"), reviewer, kind="halt")
    new = post_package(api, run_id="b", title="Rotate the TLS certificates")
    assert precedents.similar(new) == []
