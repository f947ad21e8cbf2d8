"""Readiness checks: can this process reach the database and Redis (broker, channel layer,
cache, wake-ups) right now? Each check runs in a thread of a small pool with a deadline,
so a server that does not answer (a dropped packet, a full connection pool) fails the
check after READYZ_TIMEOUT_SECONDS instead of holding the probe."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from .redis_clients import redis_client

log = logging.getLogger(__name__)

# Enough for the checks of two probes at once, even with both of an earlier probe stuck.
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="handoff-readyz")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    ms: float
    error: str = ""  # the exception's class name, or "timeout" (details go to the log)

    def as_dict(self) -> dict:
        out: dict = {"status": "ok" if self.ok else "failed", "ms": round(self.ms, 1)}
        if self.error:
            out["error"] = self.error
        return out


def _database() -> None:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # back to psycopg's pool (or closed): this thread keeps none


def _redis() -> None:
    redis_client(settings.REDIS_URL, timeout=settings.READYZ_TIMEOUT_SECONDS).ping()


def checks() -> dict:
    """{name: function} of what readiness needs: the database always, Redis in production
    (the embedded mode keeps broker, channel layer and cache in the process)."""
    found = {"database": _database}
    if settings.REDIS_URL:
        found["redis"] = _redis
    return found


def readiness() -> list[Check]:
    """Run every check at once; each gets READYZ_TIMEOUT_SECONDS from the start."""
    timeout = settings.READYZ_TIMEOUT_SECONDS
    started = time.perf_counter()
    futures = {name: _pool.submit(_timed, check) for name, check in checks().items()}
    results = []
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.perf_counter() - started))
        try:
            ms, error = future.result(timeout=remaining)
        except FutureTimeout:
            results.append(Check(name, False, timeout * 1000, "timeout"))
            log.warning("readyz: %s did not answer within %.1f s", name, timeout)
            continue
        if error is not None:
            results.append(Check(name, False, ms, type(error).__name__))
            log.warning("readyz: %s failed (%s: %s)", name, type(error).__name__, error)
        else:
            results.append(Check(name, True, ms))
    return results


def _timed(check) -> tuple[float, Exception | None]:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:
        return (time.perf_counter() - started) * 1000, exc
    return (time.perf_counter() - started) * 1000, None
