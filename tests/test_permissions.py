"""Roles: reviewers triage and decide, managers also manage; anyone else gets a clear 403."""

import pytest
from django.test import Client
from django.urls import reverse

from reviews.services import reviewer_token_issue
from tests.conftest import make_user, post_package
from tests.test_consumers import communicator

pytestmark = pytest.mark.django_db


@pytest.fixture
def outsider_client(db) -> Client:
    client = Client()
    client.force_login(make_user("olga"))  # signed in, in no group
    return client


def test_a_user_without_a_role_gets_a_403_page_that_names_the_role(outsider_client, api):
    escalation = post_package(api)
    for url in (
        reverse("reviews:queue"),
        reverse("reviews:detail", kwargs={"escalation_id": escalation.pk}),
    ):
        response = outsider_client.get(url)
        assert response.status_code == 403
        assert b"reviewer" in response.content
    response = outsider_client.post(
        reverse("reviews:decide", kwargs={"escalation_id": escalation.pk}), {"kind": "halt"}
    )
    assert response.status_code == 403
    escalation.refresh_from_db()
    assert escalation.is_open


def test_reviewers_and_managers_and_superusers_may_triage(reviewer_client, manager_client, django_user_model):
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    for client in (reviewer_client, manager_client, admin):
        assert client.get(reverse("reviews:queue")).status_code == 200


def test_reviewer_tokens_of_users_without_a_role_are_refused(db):
    token = reviewer_token_issue(user=make_user("olga"))
    response = Client().get("/api/v1/review/queue", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert "reviewer" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_sockets_of_users_without_a_role_are_refused():
    from asgiref.sync import sync_to_async

    user = await sync_to_async(make_user)("olga")
    socket = communicator("/ws/queue/", user)
    connected, code = await socket.connect(timeout=5)
    assert not connected
    assert code == 4403
    await socket.disconnect()  # as a server does after a close: the consumer stops listening
