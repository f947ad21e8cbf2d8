"""Rate limits on the API: per agent token, per reviewer token and per client address.

Every request under /api/ is counted before Django sees it, by a wrapper around the ASGI
application (uvicorn: long-polls included, which escalations.transport.longpoll holds in front of
Django) and one around the WSGI application (gunicorn). Gate checks count like any call.

- A request with a bearer token counts against that token (RATE_LIMIT_REVIEWER under
  /api/v1/review/, RATE_LIMIT_AGENT elsewhere) and against its client address
  (RATE_LIMIT_ADDRESS); one without, against its address only. All or nothing: a refused
  call counts against none of them. A token is counted by its hash, valid or not: a flood
  of made-up tokens is stopped by the address limit.
- Moving windows, in the notation and the Redis layout of the `limits` library: N calls in
  any window of the period, exactly. On Redis when REDIS_URL is set (every process shares
  the counts; one script call per request), else in this process (limits' memory storage).
- Refused: 429 application/problem+json with Retry-After (whole seconds until the oldest
  call in the window leaves it), and the `refused` signal (for metrics).
- If Redis does not answer, requests go through uncounted for a second, then it is tried
  again: an outage of the limiter never refuses the API nor fails it.

The client address is the TCP peer, or with TRUSTED_PROXY_COUNT = N > 0 the address the
N-th proxy from us saw (X-Forwarded-For, read from the right); sign-in throttling
(django-axes) uses the same address.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.dispatch import Signal
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from escalations.problems import CONTENT_TYPE, Problem
from operations import metrics
from operations.redis_clients import redis_client

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
# The agent API over MCP (escalations.mcp_api) counts as the agent API does; the single
# sign-on hops (people.oidc: each callback costs a token exchange with the provider) count
# against the client's address, as any call without a token does.
OIDC_PREFIX = "/accounts/oidc/"
LIMITED_PREFIXES = (API_PREFIX, "/mcp", OIDC_PREFIX)
REVIEWER_PREFIX = "/api/v1/review/"
KEY_PREFIX = "handoff-limits"
REDIS_TIMEOUT_SECONDS = 0.5  # a request's worst case while Redis hangs (then the breaker)
RETRY_REDIS_AFTER_SECONDS = 1.0

# Sent once per refused request, with sender = the limit's name ("agent", "reviewer" or
# "address"). Receivers run on the request's path: keep them cheap (a counter).
refused = Signal()


def _count_refusal(sender: str, **kwargs) -> None:
    metrics.rate_limit_refused(sender)


refused.connect(_count_refusal, dispatch_uid="handoff_site.ratelimit.metrics")

_WHO = {
    "agent": "with this agent token",
    "reviewer": "with this reviewer token",
    "address": "from this address",
}


# ---------------------------------------------------------------- what to count (pure)
@lru_cache(maxsize=64)
def parse_limits(value: str) -> tuple[RateLimitItem, ...]:
    """'1200/minute' or '10/second;600/minute' (the limits notation); '' is no limit."""
    return tuple(parse_many(value)) if value.strip() else ()


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: int) -> str:
    """The client's address: the peer, or the one the outermost trusted proxy saw.

    X-Forwarded-For is read from the right: each proxy appends the address it was reached
    from, and only the last `trusted_proxies` entries were written by proxies we trust (a
    client can put anything on the left). Too few entries: the peer.
    """
    address = peer or ""
    if trusted_proxies > 0 and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        if len(hops) >= trusted_proxies:
            address = hops[-trusted_proxies]
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address[:64] or "unknown"
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def address_key(address: str) -> str:
    """What an address limit counts: IPv6 clients per /64, the block one host usually holds."""
    if ":" in address:
        try:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        except ValueError:
            pass
    return address


def request_ip(request) -> str | None:
    """client_address of a Django request when it is an IP address (django-axes uses it)."""
    meta = request.META
    address = client_address(
        meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), settings.TRUSTED_PROXY_COUNT
    )
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def counted(path: str, authorization: str | None, address: str) -> list[tuple[str, str]]:
    """(limit name, identity) pairs this request counts against, in order; [] outside /api/,
    /mcp and the single sign-on hops."""
    if not path.startswith(LIMITED_PREFIXES):
        return []
    pairs = []
    token = bearer_token(authorization)
    if token is not None and not path.startswith(OIDC_PREFIX):
        name = "reviewer" if path.startswith(REVIEWER_PREFIX) else "agent"
        pairs.append((name, hashlib.sha256(token.encode()).hexdigest()[:32]))
    pairs.append(("address", address_key(address)))
    return pairs


def limits_for(name: str) -> tuple[RateLimitItem, ...]:
    return parse_limits(
        {
            "agent": settings.RATE_LIMIT_AGENT,
            "reviewer": settings.RATE_LIMIT_REVIEWER,
            "address": settings.RATE_LIMIT_ADDRESS,
        }[name]
    )


@dataclass(frozen=True)
class Refusal:
    name: str
    limit: RateLimitItem
    retry_after: int

    def problem(self) -> Problem:
        return Problem(
            429,
            f"Too many requests {_WHO[self.name]}: the limit is {self.limit}. "
            f"Retry in {self.retry_after} s.",
            headers={"Retry-After": str(self.retry_after)},
        )


def _retry_after(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


# limits' moving window as it keeps it in Redis (per key a list of call times, newest first,
# at most `limit` long, the same keys), for all of a request's limits in ONE round trip and
# all or nothing: a refused call counts against none of them. Answers {0} when counted, or
# {i, t}: the i-th window is full and its oldest call, at t, leaves it at t + expiry.
ACQUIRE_SCRIPT = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local oldest = redis.call('lindex', KEYS[i], tonumber(ARGV[2 * i]) - 1)
  if oldest and tonumber(oldest) >= now - tonumber(ARGV[2 * i + 1]) then
    return {i, oldest}
  end
end
for i = 1, #KEYS do
  redis.call('lpush', KEYS[i], ARGV[1])
  redis.call('ltrim', KEYS[i], 0, tonumber(ARGV[2 * i]) - 1)
  redis.call('expire', KEYS[i], tonumber(ARGV[2 * i + 1]))
end
return {0}
"""


def _windows(pairs: list[tuple[str, str]]) -> list[tuple[str, RateLimitItem, str]]:
    return [(name, item, identity) for name, identity in pairs for item in limits_for(name)]


def _script_call(windows) -> tuple[list[str], list]:
    now = time.time()
    keys = [f"{KEY_PREFIX}:{item.key_for(name, identity)}" for name, item, identity in windows]
    args: list = [repr(now)]
    for _, item, _ in windows:
        args += [item.amount, item.get_expiry()]
    return keys, args


def _script_refusal(windows, answer) -> Refusal | None:
    if not answer or int(answer[0]) == 0:
        return None
    name, item, _ = windows[int(answer[0]) - 1]
    return Refusal(name, item, _retry_after(float(answer[1]) + item.get_expiry()))


def _evalsha(client: redis.Redis, script: redis.commands.core.Script, keys: list[str], args: list):
    """The script by its digest, one EVALSHA, straight through the client's execute_command:
    redis-py's Script.__call__ and evalsha wrappers cost ~10 us of CPU a call (~1% of an
    agent's read). When Redis no longer has the script (a restart, SCRIPT FLUSH), the Script
    object loads it again and runs it."""
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return script(keys, args)


class _Breaker:
    """After a storage error, let requests through uncounted for a second."""

    def __init__(self) -> None:
        self.open_until = 0.0

    def closed(self) -> bool:
        return time.monotonic() >= self.open_until

    def trip(self, exc: Exception) -> None:
        if self.closed():
            log.warning(
                "rate limits not checked for %g s: %s: %s",
                RETRY_REDIS_AFTER_SECONDS, type(exc).__name__, exc,
            )  # fmt: skip
        self.open_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS


# ---------------------------------------------------------------- the two checkers
class Limiter:
    """Blocking checks, for WSGI workers (one per process; redis-py's pool is fork-aware).
    On Redis: one script call per request; without it: limits' in-memory moving window."""

    def __init__(self) -> None:
        self.breaker = _Breaker()
        self.script: redis.commands.core.Script | None = None
        self.memory: MovingWindowRateLimiter | None = None
        if settings.REDIS_URL:
            self.client = redis_client(settings.REDIS_URL, timeout=REDIS_TIMEOUT_SECONDS)
            self.script = self.client.register_script(ACQUIRE_SCRIPT)
        else:
            self.memory = MovingWindowRateLimiter(storage_from_string("memory://"))
            self.memory_lock = threading.Lock()  # test-then-hit, all or nothing

    def check(self, pairs: list[tuple[str, str]]) -> Refusal | None:
        windows = _windows(pairs)
        if not windows or not self.breaker.closed():
            return None
        if self.memory is not None:
            with self.memory_lock:
                return _check_memory(self.memory, windows)
        try:
            return _script_refusal(windows, _evalsha(self.client, self.script, *_script_call(windows)))  # type: ignore[arg-type]
        except Exception as exc:  # Redis down or slow: never refuse, never fail the request
            self.breaker.trip(exc)
        return None


def _check_memory(memory: MovingWindowRateLimiter, windows) -> Refusal | None:
    for name, item, identity in windows:
        if not memory.test(item, name, identity):
            stats = memory.get_window_stats(item, name, identity)
            return Refusal(name, item, _retry_after(stats.reset_time))
    for name, item, identity in windows:
        memory.hit(item, name, identity)
    return None


class AsyncLimiter:
    """The same on asyncio (one per event loop: an asyncio Redis client is bound to its loop)."""

    def __init__(self) -> None:
        self.breaker = _Breaker()
        self.script: redis.commands.core.AsyncScript | None = None
        self.memory: AsyncMovingWindow | None = None
        if settings.REDIS_URL:
            client = aioredis.Redis.from_url(
                settings.REDIS_URL,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self.script = client.register_script(ACQUIRE_SCRIPT)
        else:
            self.memory = AsyncMovingWindow(storage_from_string("async+memory://"))
            self.memory_lock = asyncio.Lock()  # test-then-hit, all or nothing

    async def check(self, pairs: list[tuple[str, str]]) -> Refusal | None:
        windows = _windows(pairs)
        if not windows or not self.breaker.closed():
            return None
        if self.memory is not None:
            async with self.memory_lock:
                return await _check_memory_async(self.memory, windows)
        try:
            return _script_refusal(windows, await self.script(*_script_call(windows)))  # type: ignore[misc]
        except Exception as exc:
            self.breaker.trip(exc)
        return None


async def _check_memory_async(memory: AsyncMovingWindow, windows) -> Refusal | None:
    for name, item, identity in windows:
        if not await memory.test(item, name, identity):
            stats = await memory.get_window_stats(item, name, identity)
            return Refusal(name, item, _retry_after(stats.reset_time))
    for name, item, identity in windows:
        await memory.hit(item, name, identity)
    return None


_lock = threading.Lock()
_limiter: Limiter | None = None
_async_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncLimiter] = (
    weakref.WeakKeyDictionary()
)


def limiter() -> Limiter:
    global _limiter
    if _limiter is None:
        with _lock:
            if _limiter is None:
                _limiter = Limiter()
    return _limiter


def async_limiter() -> AsyncLimiter:
    loop = asyncio.get_running_loop()
    found = _async_limiters.get(loop)
    if found is None:
        found = _async_limiters[loop] = AsyncLimiter()
    return found


def _refuse(refusal: Refusal) -> tuple[int, list[tuple[str, str]], bytes]:
    refused.send(sender=refusal.name, limit=str(refusal.limit))
    response = refusal.problem().response()
    headers = [
        ("Content-Type", CONTENT_TYPE),
        ("Content-Length", str(len(response.content))),
        ("Retry-After", str(refusal.retry_after)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
    ]
    return 429, headers, response.content


# ---------------------------------------------------------------- the wrappers
class RateLimitMiddleware:
    """ASGI: in front of the long-poll middleware and Django."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(LIMITED_PREFIXES):
            authorization = forwarded = None
            for key, value in scope.get("headers", ()):
                if key == b"authorization":
                    authorization = value.decode("latin-1")
                elif key == b"x-forwarded-for":
                    value = value.decode("latin-1")
                    forwarded = f"{forwarded},{value}" if forwarded else value
            peer = (scope.get("client") or ("",))[0]
            address = client_address(peer, forwarded, settings.TRUSTED_PROXY_COUNT)
            refusal = await async_limiter().check(counted(scope["path"], authorization, address))
            if refusal is not None:
                status, headers, body = _refuse(refusal)
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class SyncRateLimitMiddleware:
    """WSGI: in front of the long-poll wrapper and Django."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(API_PREFIX):
            address = client_address(
                environ.get("REMOTE_ADDR"),
                environ.get("HTTP_X_FORWARDED_FOR"),
                settings.TRUSTED_PROXY_COUNT,
            )
            refusal = limiter().check(counted(path, environ.get("HTTP_AUTHORIZATION"), address))
            if refusal is not None:
                status, headers, body = _refuse(refusal)
                start_response(f"{status} Too Many Requests", headers)
                return [body]
        return self.app(environ, start_response)
