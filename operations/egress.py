"""Outbound HTTP to URLs that people type in (agents' resume_url, notification webhook and
Slack URLs), kept away from the service's own network (SSRF).

A URL is refused when its host resolves to a link-local or cloud-metadata address, or to
anything that is not a unicast address, and, unless OUTBOUND_ALLOW_PRIVATE is on (the
embedded mode, DEBUG and the tests), to a loopback or private one. Checked twice:
- when it is saved (`validate_outbound_url`, a form error naming the field);
- when a connection is opened (`GuardedTransport`, for httpx): the name is resolved once,
  every address checked, and the connection made to a checked address, so a DNS answer
  that changes between the check and the connection (rebinding) cannot slip through. TLS
  still verifies the certificate for the name (SNI and Host are the URL's).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata and platform endpoints a server can reach but a webhook never should.
METADATA = {
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public address)
    )
}

getaddrinfo = socket.getaddrinfo  # the resolver (tests put one of their own here)


class OutboundRefused(httpcore.ConnectError):
    """A connection Handoff will not open (httpx reports it as a ConnectError)."""


def refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why Handoff will not connect to `ip`, or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_loopback:  # (::1 is also in a reserved block: decide on it first)
        return None if allow_private else "a loopback address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "not a unicast address"
    if not allow_private and not ip.is_global:
        return "a private address"
    return None


def allow_private() -> bool:
    return settings.OUTBOUND_ALLOW_PRIVATE


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is itself), in the resolver's order."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    found: list[IPAddress] = []
    for *_, sockaddr in getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if ip not in found:
            found.append(ip)
    return found


def first_refusal(host: str, addresses: list[IPAddress]) -> str | None:
    """A sentence for the first address that is refused, or None when all are allowed."""
    private = allow_private()
    for ip in addresses:
        reason = refusal(ip, allow_private=private)
        if reason is not None:
            named = host if host.strip("[]") == str(ip) else f"{host} resolves to {ip},"
            return f"{named} {reason}: Handoff does not send requests there."
    return None


def validate_outbound_url(value: str) -> None:
    """A form validator: refuses a URL whose host is (or resolves to) a refused address.

    A name that does not resolve now is let through: the connection checks it again.
    """
    if not value:
        return
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:
        return  # the URL validator says what is wrong with it
    if not host:
        return
    try:
        addresses = resolve(host, port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError):
        return
    problem = first_refusal(host, addresses)
    if problem is not None:
        raise ValidationError(problem, code="refused_address")


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to checked addresses."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        problem = first_refusal(host, addresses) if addresses else f"{host} has no address"
        if problem is not None:
            raise OutboundRefused(problem)
        last_error: Exception | None = None
        for ip in addresses:  # connect to the very addresses checked, never to the name
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error  # type: ignore[misc]


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose connections are opened by
    GuardedBackend. TLS verifies the certificate for the URL's host name, as usual."""

    def __init__(self, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(),
        )
