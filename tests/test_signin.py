"""Sign-in throttling (django-axes): per account and per address, with a clear message."""

import pytest
from django.test import Client

from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
LOGIN = "/accounts/login/"


def sign_in(username: str, password: str, address: str = "192.0.2.10"):
    return Client(REMOTE_ADDR=address).post(LOGIN, {"username": username, "password": password})


def test_five_wrong_passwords_lock_the_account_with_a_message(settings):
    make_user("alice", "reviewer")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = sign_in("alice", "wrong")
        assert response.status_code == 200
        assert b"Please enter a correct username and password" in response.content
    locked = sign_in("alice", "wrong")
    assert locked.status_code == 429
    assert b"Too many failed sign-ins for this account or from this address" in locked.content
    assert b"paused for 15 minutes" in locked.content
    assert b'name="username"' in locked.content  # still the login page
    # The right password does not help while the lock lasts, from another address either.
    assert sign_in("alice", PASSWORD, address="198.51.100.20").status_code == 429
    # Another account from elsewhere signs in as usual.
    make_user("bob", "reviewer")
    assert sign_in("bob", PASSWORD, address="198.51.100.21").status_code == 302


def test_failures_from_one_address_lock_that_address_for_every_account(settings):
    for name in ("carol", "dave", "erin", "frank", "gina", "hank"):
        make_user(name, "reviewer")
    for name in ("carol", "dave", "erin", "frank", "gina"):
        sign_in(name, "wrong", address="203.0.113.5")
    assert sign_in("hank", PASSWORD, address="203.0.113.5").status_code == 429
    assert sign_in("hank", PASSWORD, address="203.0.113.6").status_code == 302


def test_the_address_is_the_trusted_proxys_not_the_clients_claim(settings):
    """Behind one proxy, the address is the one it appended: a client cannot dodge the lock
    by writing addresses of its own into X-Forwarded-For."""
    settings.TRUSTED_PROXY_COUNT = 1
    for name in ("ivan", "judy"):
        make_user(name, "reviewer")
    for i in range(5):
        Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"1.1.1.{i}, 203.0.113.7").post(
            LOGIN, {"username": "ivan", "password": f"wrong-{i}"}
        )
    judy = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.1.1.9, 203.0.113.7")
    assert judy.post(LOGIN, {"username": "judy", "password": PASSWORD}).status_code == 429
    judy_elsewhere = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert judy_elsewhere.post(LOGIN, {"username": "judy", "password": PASSWORD}).status_code == 302


def test_a_successful_sign_in_clears_the_accounts_failures():
    make_user("kim", "reviewer")
    for _ in range(4):
        sign_in("kim", "wrong")
    assert sign_in("kim", PASSWORD).status_code == 302
    for _ in range(4):
        assert sign_in("kim", "wrong", address="192.0.2.11").status_code == 200
    assert sign_in("kim", PASSWORD, address="192.0.2.12").status_code == 302
