"""People and their tokens: the Members page (invite by e-mail with a one-time link, roles,
machine reviewers, removal), everyone's token page, and the page a user without a role sees."""

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from people.models import Profile, is_machine
from people.roles import is_manager, is_reviewer
from reviews.models import ReviewerToken
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def invite(client, **fields):
    data = {"email": "rui@example.com", "role": "reviewer", **fields}
    with_commit = client.post("/members/invite", data)
    return with_commit


def link_in(message) -> str:
    found = re.search(r"http://\S+/accounts/set-password/\S+/", message.body)
    assert found, message.body
    return found.group(0)


def test_a_manager_invites_a_reviewer_who_sets_a_password_once_and_signs_in(
    manager_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(manager_client)
    assert response.status_code == 200
    rui = User.objects.get(email="rui@example.com")
    assert rui.username == "rui"
    assert not rui.has_usable_password()
    assert is_reviewer(rui)
    assert not is_manager(rui)

    # the e-mail carries the link, and the page shows it once as well
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["rui@example.com"]
    link = link_in(mail.outbox[0])
    assert link in response.content.decode()
    assert "maya invited you" in mail.outbox[0].body

    path = link.removeprefix(settings.PUBLIC_URL)
    anonymous = Client()
    form_page = anonymous.get(path, follow=True)
    assert form_page.status_code == 200
    assert b"Set your password" in form_page.content
    set_url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else path
    done = anonymous.post(set_url, {"new_password1": "a-long-new-secret-42", "new_password2": "a-long-new-secret-42"})
    assert done.status_code == 302
    signed_in = anonymous.post("/accounts/login/", {"username": "rui", "password": "a-long-new-secret-42"})
    assert signed_in.status_code == 302
    assert anonymous.get("/").status_code == 200

    # the link works once
    again = Client().get(path, follow=True)
    assert b"has been used already or has expired" in again.content


def test_an_invitation_is_refused_for_an_e_mail_in_use_and_a_bad_role(manager_client, reviewer):
    reviewer.email = "alice@example.com"
    reviewer.save()
    taken = invite(manager_client, email="Alice@Example.com")
    assert taken.status_code == 422
    assert "An account with this e-mail exists already." in taken.content.decode()
    bad_role = invite(manager_client, role="admin")
    assert bad_role.status_code == 422
    assert mail.outbox == []


def test_roles_machine_and_removal_from_the_members_page(manager_client, manager, reviewer):
    page = manager_client.get("/members/")
    assert page.status_code == 200
    assert 'data-member="alice"' in page.content.decode()

    manager_client.post(f"/members/{reviewer.pk}/role", {"role": "manager"})
    assert is_manager(User.objects.get(pk=reviewer.pk))

    manager_client.post(f"/members/{reviewer.pk}/machine", {"is_machine": "on"})
    assert is_machine(reviewer)
    assert "machine" in manager_client.get("/members/").content.decode()
    manager_client.post(f"/members/{reviewer.pk}/machine", {})
    assert not is_machine(reviewer)
    assert Profile.objects.get(user=reviewer).is_machine is False

    manager_client.post(f"/members/{reviewer.pk}/remove")
    removed = User.objects.get(pk=reviewer.pk)
    assert not removed.is_active
    assert not removed.groups.exists()


def test_a_manager_cannot_demote_or_remove_themselves(manager_client, manager):
    response = manager_client.post(f"/members/{manager.pk}/role", {"role": "reviewer"}, follow=True)
    assert "You cannot take away your own manager role." in response.content.decode()
    response = manager_client.post(f"/members/{manager.pk}/remove", follow=True)
    assert "You cannot remove yourself." in response.content.decode()
    assert is_manager(User.objects.get(pk=manager.pk))


def test_the_members_page_is_for_managers_only(reviewer_client):
    assert reviewer_client.get("/members/").status_code == 403
    assert reviewer_client.post("/members/invite", {"email": "x@example.com", "role": "manager"}).status_code == 403


def test_a_user_with_no_role_sees_why_where_they_are_without_a_loop(manager):
    manager.email = "maya@example.com"
    manager.save()
    nobody = make_user("nora")
    client = Client()
    client.force_login(nobody)
    for path in ("/", "/insights/", "/members/", "/accounts/no-role"):
        response = client.get(path)
        assert response.status_code == 403, path  # answered in place: no redirect
        body = response.content.decode()
        assert "have no role yet" in body
        assert "maya@example.com" in body
        # no link back to a page that refuses them
        assert 'href="/"' not in body.replace('href="/static', "")
        assert 'href="/insights' not in body
    # their own page opens
    assert client.get("/account/").status_code == 200


def test_everyone_creates_names_lists_and_revokes_their_reviewer_tokens(reviewer_client, reviewer, other_reviewer):
    created = reviewer_client.post("/account/tokens", {"label": "triage script"})
    assert created.status_code == 200
    assert created["Cache-Control"].startswith("max-age=0") or "no-store" in created["Cache-Control"]
    token = re.search(r'value="(hnr_[^"]+)"', created.content.decode()).group(1)
    row = ReviewerToken.objects.get(user=reviewer)
    assert row.label == "triage script"
    assert row.token_hash == ReviewerToken.hash(token)

    # the list never shows the token again, and says it was never used
    listed = reviewer_client.get("/account/").content.decode()
    assert token not in listed
    assert "triage script" in listed
    assert "never" in listed

    # a use through the reviewer API is noted
    api = Client().get("/api/v1/review/queue", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None

    # another user cannot revoke it
    other = Client()
    other.force_login(other_reviewer)
    assert other.post(f"/account/tokens/{row.pk}/revoke").status_code == 404

    reviewer_client.post(f"/account/tokens/{row.pk}/revoke")
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert Client().get("/api/v1/review/queue", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_a_token_needs_a_name(reviewer_client):
    response = reviewer_client.post("/account/tokens", {"label": "  "})
    assert response.status_code == 422
    assert not ReviewerToken.objects.exists()


def test_a_machine_reviewers_webhook_url_is_set_on_the_members_page(manager_client, reviewer):
    Profile.objects.update_or_create(user=reviewer, defaults={"is_machine": True})
    page = manager_client.get("/members/").content.decode()
    assert f'id="webhook-{reviewer.pk}"' in page  # beside the machine flag

    saved = manager_client.post(
        f"/members/{reviewer.pk}/webhook", {"webhook_url": "https://bots.example.com/handoff"}, follow=True
    )
    profile = Profile.objects.get(user=reviewer)
    assert profile.webhook_url == "https://bots.example.com/handoff"
    assert profile.signing_secret.startswith("whsec_")
    html = saved.content.decode()
    assert profile.signing_secret in html  # shown once
    assert 'value="https://bots.example.com/handoff"' in html

    # the outbound-address rules refuse a cloud metadata address; a bad URL is refused too
    for bad, why in (
        ("http://169.254.169.254/latest/", "a cloud metadata address"),
        ("ftp://bots.example.com/x", "Enter a valid URL."),
    ):
        refused = manager_client.post(f"/members/{reviewer.pk}/webhook", {"webhook_url": bad}, follow=True)
        assert "webhook URL" in refused.content.decode()
        assert why in refused.content.decode()
    assert Profile.objects.get(user=reviewer).webhook_url == "https://bots.example.com/handoff"

    again = manager_client.post(f"/members/{reviewer.pk}/webhook", {"webhook_url": ""}, follow=True)
    assert Profile.objects.get(user=reviewer).webhook_url == ""
    assert Profile.objects.get(user=reviewer).signing_secret == profile.signing_secret
    assert profile.signing_secret not in again.content.decode()
