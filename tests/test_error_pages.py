"""The product's own error pages (404, 403, 500, an expired form) when DEBUG is off, never
Django's technical pages."""

import pytest
from django.test import Client, RequestFactory

from handoff_site.outage import server_error

pytestmark = pytest.mark.django_db


def test_an_unknown_address_is_the_products_404(reviewer_client, settings):
    settings.DEBUG = False
    response = reviewer_client.get("/no/such/page")
    assert response.status_code == 404
    body = response.content.decode()
    assert "There is nothing at this address" in body
    assert "Back to the queue" in body
    assert "Page not found (404)" not in body  # Django's own text


def test_an_error_no_view_caught_is_the_products_500(settings):
    settings.DEBUG = False
    request = RequestFactory().get("/somewhere")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        response = server_error(request)
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong on our side" in body
    assert "boom" not in body  # nothing of the error itself


def test_an_expired_form_is_the_products_403(reviewer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "This form was out of date" in body
    assert "CSRF verification failed" not in body


def test_a_reviewer_on_a_managers_page_sees_the_products_403(reviewer, settings):
    """A role, but not this page's: the product's 403 naming the role (a signed-in user with
    no role at all gets people's no-role page instead: tests/test_members.py)."""
    settings.DEBUG = False
    client = Client()
    client.force_login(reviewer)
    response = client.get("/policies/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "can't open this page" in body
    assert "This page is for managers" in body
