"""What Handoff counts for Prometheus (GET /metrics; operations.views renders it).

Two kinds of figures:

- Gauges of what stands now (queue depth by tier and status, the oldest open escalation,
  the webhook and notification outboxes by status) are read from the database at scrape
  time, with counts that indexes answer (operations.gauges).
- Counters and a histogram of what happened (decisions, webhook attempts and failures,
  decision-to-webhook latency, notification failures, rate-limit refusals) are added,
  after commit, by whichever process made them happen, into one store that every
  process shares: a Redis hash in production (each process writes its counts with
  HINCRBY once a second, off the request path; a scrape reads it with one HGETALL),
  this process's memory in the embedded mode (one process does everything).

Why a shared store and not the alternatives:
- prometheus_client's multiprocess mode keeps one file per process id in a directory.
  Our processes live in separate containers (web-http, web-async, worker), whose process
  ids collide and whose directories are not shared, and a scrape of web-http would never
  see what the worker counted; dead gunicorn workers (recycled every 5,000 requests) also
  leave files behind. It would take one scrape target per container and a shared volume.
- Counting recorded rows at scrape time is exact but grows with history (every decision,
  attempt and delivery joined to its decision, at each scrape) and goes backwards when
  retention purges rows, which Prometheus reads as a reset. Rate-limit refusals have no
  rows at all, and should not get any.
The price of the Redis hash: it counts from the moment the process counts, not from the
rows, so a Redis restart without persistence starts the counters again from zero (the
usual counter reset, which rate() and increase() handle). Counts that cannot reach Redis
(an outage) are kept in the process and written once it is back, so an outage delays
counts but loses them only if that process dies before Redis returns; a process killed
outright (SIGKILL) loses at most its last second of counts.
"""

import atexit
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import redis
from django.conf import settings
from django.db import transaction

from .redis_clients import redis_client

log = logging.getLogger(__name__)

REDIS_KEY = "handoff:metrics"
# How often a process writes what it counted to Redis (and retries, during an outage).
FLUSH_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 0.5
SEP = "\t"


@dataclass(frozen=True)
class Family:
    """A counter: its name (without _total), help text and label names."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied


DECISIONS = Family(
    "handoff_decisions",
    "Decisions made, by kind and by who decided (human, machine, policy, timeout).",
    ("kind", "decided_by"),
)
WEBHOOK_ATTEMPTS = Family(
    "handoff_webhook_attempts",
    "Attempts at POSTing a decision to an agent's resume_url, by result "
    "(success: a 2xx answer; failure: another status, a timeout or a network error).",
    ("result",),
)
WEBHOOK_FAILURES = Family(
    "handoff_webhook_deliveries_failed",
    "Decision deliveries given up for good (retries exhausted, a 4xx, or a poison delivery).",
)
NOTIFICATION_FAILURES = Family(
    "handoff_notification_failures",
    "Notification attempts that failed, by channel; final=true when the notification was "
    "given up for good, false when it will be retried.",
    ("channel", "final"),
)
RATE_LIMIT_REFUSALS = Family(
    "handoff_rate_limit_refusals",
    "Requests refused with 429 by a rate limit, by the limit that refused them.",
    ("limit",),
)
RETENTION_PURGED = Family(
    "handoff_retention_purged_escalations",
    "Escalations purged by retention (RETENTION_DAYS), with their timeline and deliveries.",
)
INBOUND_ACTIONS = Family(
    "handoff_inbound_actions",
    "Decisions attempted from outside the dashboard (via: slack, email), by outcome (decided, "
    "already_decided, refused; bad_signature: a Slack request whose signature did not verify).",
    ("via", "outcome"),
)
COUNTERS = (
    DECISIONS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_FAILURES,
    NOTIFICATION_FAILURES,
    RATE_LIMIT_REFUSALS,
    RETENTION_PURGED,
    INBOUND_ACTIONS,
)

DECISION_TO_WEBHOOK = Histogram(
    "handoff_decision_to_webhook_seconds",
    "Seconds from a decision to the webhook delivery that resumed its agent (the first 2xx).",
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)


# ---------------------------------------------------------------- counting


def count(family: Family, amount: int = 1, **labels: str) -> None:
    """Add to a counter now. For something a transaction does, use count_on_commit."""
    if set(labels) != set(family.labels):
        raise ValueError(f"{family.name} takes the labels {family.labels}, not {tuple(labels)}")
    _store().add({field(family.name, *(labels[name] for name in family.labels)): amount})


def count_on_commit(family: Family, amount: int = 1, **labels: str) -> None:
    """Add to a counter once the current transaction commits (never for a rollback)."""
    transaction.on_commit(lambda: count(family, amount, **labels))


def observe_on_commit(histogram: Histogram, value: float) -> None:
    """Put one observation in a histogram once the current transaction commits."""
    index = next((i for i, bound in enumerate(histogram.buckets) if value <= bound), len(histogram.buckets))
    # One count per bucket (not cumulative: the scrape adds them up), and the sum.
    deltas = {field(histogram.name, "bucket", str(index)): 1, field(histogram.name, "sum"): float(value)}
    transaction.on_commit(lambda: _store().add(deltas))


def rate_limit_refused(limit: str) -> None:
    """Count one request refused by a rate limit (call it where the 429 is answered).
    `limit` names the limit, from a small fixed set (e.g. "agent", "reviewer", "address",
    "sign-in"): it becomes a label, so never a token, a user or an address."""
    count(RATE_LIMIT_REFUSALS, limit=limit)


def field(name: str, *values: str) -> str:
    """The store's key of one series: the name and its label values, tab-separated."""
    return SEP.join([name, *(str(value).replace(SEP, " ") for value in values)])


def parse_field(key: str) -> tuple[str, tuple[str, ...]]:
    """(name, label values) of a stored field."""
    name, *values = key.split(SEP)
    return name, tuple(values)


def snapshot() -> dict[str, float]:
    """Every stored figure: field -> value (operations.views turns them into families)."""
    return _store().read()


# ---------------------------------------------------------------- the stores


class LocalStore:
    """This process's memory: the embedded mode, where one process does everything."""

    def __init__(self) -> None:
        self._values: Counter = Counter()
        self._lock = threading.Lock()

    def add(self, deltas: dict[str, float]) -> None:
        with self._lock:
            self._values.update(deltas)

    def read(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)


class RedisStore:
    """One Redis hash shared by every process.

    Counting costs the caller a dict update: a daemon thread of the process writes what
    was counted to Redis every FLUSH_SECONDS (and at exit), in one MULTI/EXEC. What Redis
    refuses (an outage) stays in the process and goes with the next flush. A scrape
    flushes its own process first, so it sees its own counts at once and other
    processes' within FLUSH_SECONDS.
    """

    def __init__(self, url: str, key: str = REDIS_KEY) -> None:
        self.url, self.key = url, key
        self._pending: Counter = Counter()
        self._lock = threading.Lock()
        # One flush at a time: a batch on its way is in neither _pending nor Redis, so a
        # read waits for it (else a scrape could miss counts the flusher thread is writing).
        self._flushing = threading.Lock()
        self._flusher_pid: int | None = None
        self._failing = False
        os.register_at_fork(after_in_child=self._forget_parent)
        atexit.register(self.flush)

    def _forget_parent(self) -> None:
        """In a forked child: the parent's counts are the parent's to write; its lock and
        flusher thread did not come along."""
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending = Counter()
        self._flusher_pid = None

    def client(self) -> redis.Redis:
        return redis_client(self.url, timeout=REDIS_TIMEOUT_SECONDS)

    def add(self, deltas: dict[str, float]) -> None:
        with self._lock:
            self._pending.update(deltas)
            if self._flusher_pid != os.getpid():
                self._flusher_pid = os.getpid()
                threading.Thread(target=self._flush_forever, name="handoff-metrics", daemon=True).start()

    def _flush_forever(self) -> None:
        pid = os.getpid()
        while self._flusher_pid == pid:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> bool:
        """Write the waiting counts to Redis now. False (and they wait) if Redis refuses."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            batch, self._pending = self._pending, Counter()
        if not batch:
            return True
        try:
            pipe = self.client().pipeline(transaction=True)
            for field, value in batch.items():
                if isinstance(value, float):
                    pipe.hincrbyfloat(self.key, field, value)
                else:
                    pipe.hincrby(self.key, field, value)
            pipe.execute()
        except redis.RedisError as exc:
            with self._lock:
                self._pending.update(batch)
                waiting = len(self._pending)
            if not self._failing:  # once per outage, not once per second
                log.warning(
                    "metrics: Redis refused the counts (%s: %s); they wait in this process "
                    "(%d series) until it is back", type(exc).__name__, exc, waiting,
                )
            self._failing = True
            return False
        if self._failing:
            log.warning("metrics: Redis is back; the counts that waited are written")
            self._failing = False
        return True

    def read(self) -> dict[str, float]:
        """The shared figures, this process's waiting counts included. Raises
        redis.RedisError when Redis does not answer."""
        self.flush()
        raw = cast("dict[bytes, bytes]", self.client().hgetall(self.key))
        values = {field.decode(): float(value) for field, value in raw.items()}
        with self._lock:
            for field, count in self._pending.items():
                values[field] = values.get(field, 0.0) + count
        return values


@lru_cache(maxsize=4)
def _store_for(url: str) -> LocalStore | RedisStore:
    return RedisStore(url) if url else LocalStore()


def _store() -> LocalStore | RedisStore:
    return _store_for(settings.REDIS_URL)
