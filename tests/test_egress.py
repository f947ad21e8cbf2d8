"""SSRF: resume URLs, notification webhooks and Slack URLs never reach link-local or
metadata addresses (nor, in production settings, loopback and private ones): refused when
saved, and again when connecting, against the address actually connected to."""

import ipaddress
import itertools
import re
import socket

import pytest

from escalations.models import Agent
from escalations.transport import webhooks
from notifications.forms import PreferencesForm
from notifications.models import Kind
from operations import egress
from tests.conftest import make_user
from tests.test_agents_page import field_errors, register

pytestmark = pytest.mark.django_db


class Resolver:
    """A DNS we control: each name answers from its list, one answer per lookup, cycling."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = {name: itertools.cycle(values) for name, values in answers.items()}
        self.lookups: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.lookups.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = next(self.answers[host])
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]


@pytest.fixture
def dns(monkeypatch):
    resolver = Resolver(
        {
            "metadata.test": ["169.254.169.254"],
            "intranet.test": ["10.1.2.3"],
            "local.test": ["127.0.0.1"],
            "public.test": ["93.184.215.14"],
            # Answers a loopback address (where the receiver is), then the metadata service.
            "rebind.test": ["127.0.0.1", "169.254.169.254"],
        }
    )
    monkeypatch.setattr(egress, "getaddrinfo", resolver)
    return resolver


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Whatever happens, these tests open TCP connections to 127.0.0.1 alone, and only to
    an address (never to a name that could be resolved again behind the check's back)."""
    real = socket.create_connection
    opened = []

    def create_connection(address, *args, **kwargs):
        host = address[0]
        assert ipaddress.ip_address(host).is_loopback, f"connection to {host} attempted"
        opened.append(host)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


@pytest.fixture
def production(settings):
    settings.OUTBOUND_ALLOW_PRIVATE = False
    return settings


# ---------------------------------------------------------------- the rules (pure)
@pytest.mark.parametrize(
    ("address", "allow_private", "reason"),
    [
        ("169.254.169.254", True, "a cloud metadata address"),
        ("::ffff:169.254.169.254", True, "a cloud metadata address"),
        ("2002:a9fe:a9fe::1", True, "a cloud metadata address"),  # 6to4 of 169.254.169.254
        ("fd00:ec2::254", True, "a cloud metadata address"),
        ("100.100.100.200", True, "a cloud metadata address"),
        ("169.254.10.1", True, "a link-local address"),
        ("fe80::1", True, "a link-local address"),
        ("0.0.0.0", True, "not a unicast address"),  # noqa: S104 - an address refused here
        ("224.0.0.1", True, "not a unicast address"),
        ("127.0.0.1", True, None),
        ("::1", True, None),
        ("10.0.0.5", True, None),
        ("127.0.0.1", False, "a loopback address"),
        ("::1", False, "a loopback address"),
        ("10.0.0.5", False, "a private address"),
        ("192.168.1.1", False, "a private address"),
        ("fd12::1", False, "a private address"),
        ("100.64.0.1", False, "a private address"),
        ("93.184.215.14", False, None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", False, None),
    ],
)
def test_which_addresses_are_refused(address, allow_private, reason):
    assert egress.refusal(ipaddress.ip_address(address), allow_private=allow_private) == reason


# ---------------------------------------------------------------- at save
def registered(client, resume_url: str) -> bool:
    response = register(client, resume_url=resume_url)
    return response.status_code == 200 and Agent.objects.filter(resume_url=resume_url).exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://metadata.test/latest/meta-data/", "metadata.test resolves to 169.254.169.254, a cloud metadata address"),
        ("http://169.254.169.254/latest/", "169.254.169.254 a cloud metadata address"),
        ("http://[fe80::1]:8080/hook", "fe80::1 a link-local address"),
    ],
)
def test_the_agent_form_refuses_a_metadata_or_link_local_resume_url(dns, manager_client, url, message):
    response = register(manager_client, resume_url=url)
    assert response.status_code == 422
    assert field_errors(response) == {"resume_url": f"Resume URL: {message}: Handoff does not send requests there."}


def test_production_settings_refuse_loopback_and_private_resume_urls(dns, manager_client, production):
    for url, reason in [
        ("http://127.0.0.1:9000/hook", "a loopback address"),
        ("http://local.test/hook", "a loopback address"),
        ("https://intranet.test/hook", "a private address"),
    ]:
        errors = field_errors(register(manager_client, resume_url=url))
        assert list(errors) == ["resume_url"], (url, errors)
        assert reason in errors["resume_url"], (url, errors)
    assert registered(manager_client, "https://public.test/hook")


def test_the_embedded_mode_keeps_local_agents_working(dns, manager_client, settings):
    assert settings.OUTBOUND_ALLOW_PRIVATE  # the tests' (and the embedded mode's) default
    assert registered(manager_client, "http://127.0.0.1:9000/hook")


def test_the_notification_urls_are_checked_too(dns, production):
    user = make_user("nora", "reviewer")
    data = {
        "slack_url": "http://metadata.test/hooks/x",
        "webhook_url": "http://intranet.test/hook",
        f"event_{Kind.HALT_CREATED}": ["slack", "webhook"],
    }
    form = PreferencesForm(data, kinds=[Kind.HALT_CREATED], email=user.email)
    assert not form.is_valid()
    assert "169.254.169.254, a cloud metadata address" in form.errors["slack_url"][0]
    assert "10.1.2.3, a private address" in form.errors["webhook_url"][0]


def test_the_command_line_refuses_it_too(dns, production):
    from django.core.management import CommandError, call_command

    from tests.conftest import ensure_default_policies

    ensure_default_policies()
    with pytest.raises(CommandError, match=re.escape("--resume-url: metadata.test resolves to 169.254.169.254")):
        call_command("agent_create", "bot", "--resume-url", "http://metadata.test/")


# ---------------------------------------------------------------- at connect time
def post(url: str) -> webhooks.Outcome:
    return webhooks.post(url, {"event": "test"}, delivery_id="d-1", secret="s")


def test_a_delivery_to_a_metadata_name_is_refused_before_connecting(dns, loopback_only):
    outcome = post("http://metadata.test/latest/meta-data/")
    assert outcome.status_code is None
    assert "metadata.test resolves to 169.254.169.254, a cloud metadata address" in outcome.error
    assert loopback_only == []


def test_production_settings_refuse_loopback_at_connect_time(dns, receiver, production, loopback_only):
    outcome = post(receiver.url)
    assert outcome.status_code is None
    assert "a loopback address" in outcome.error
    assert loopback_only == []
    assert receiver.requests == []


def test_a_name_that_changes_its_answer_cannot_rebind(dns, receiver, loopback_only):
    """Checked at save with one answer, the name answers the metadata address when the
    delivery connects: refused. Each connection resolves once and connects to the very
    address it checked, with the URL's Host."""
    url = f"http://rebind.test:{receiver.port}/hook"
    egress.validate_outbound_url(url)  # at save: 127.0.0.1, fine here (loopback allowed)
    assert dns.lookups == ["rebind.test"]

    refused = post(url)  # the second answer: 169.254.169.254
    assert refused.status_code is None
    assert "169.254.169.254, a cloud metadata address" in refused.error
    assert loopback_only == []

    delivered = post(url)  # the third answer: 127.0.0.1 again
    assert delivered.status_code == 200
    assert dns.lookups == ["rebind.test"] * 3  # one lookup per check, none behind its back
    assert loopback_only == ["127.0.0.1"]
    (request,) = receiver.wait_for(1)
    assert request.header("Host") == f"rebind.test:{receiver.port}"
