"""The families /metrics answers with, built at each scrape by prometheus_client.

Counters and the histogram come from the shared store (operations.metrics), gauges from
the database (operations.selectors). A source that fails (Redis or PostgreSQL down) leaves
its families out and says so in handoff_scrape_source_up, so the rest is still scraped.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Iterator

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis import RedisError

from escalations.models import Decision, Escalation
from notifications.models import Channel

from . import metrics, selectors

log = logging.getLogger(__name__)

# API.md's decided_by types (a machine reviewer's decisions are "machine").
DECIDED_BY = ("human", "machine", "policy", "timeout")
TIERS = (1, 2, 3, 4)


def known_series() -> dict[str, list[tuple[str, ...]]]:
    """The label values every counter shows from the start, at 0 (a series that appears
    only with its first count hides that count from increase() and rate())."""
    decided_by = sorted(set(DECIDED_BY) | set(Decision.DecidedBy.values))
    return {
        metrics.DECISIONS.name: [(k, d) for k in Decision.Kind.values for d in decided_by],
        metrics.WEBHOOK_ATTEMPTS.name: [("success",), ("failure",)],
        metrics.WEBHOOK_FAILURES.name: [()],
        metrics.NOTIFICATION_FAILURES.name: [
            (c, f) for c in Channel.values for f in ("false", "true")
        ],
        metrics.RATE_LIMIT_REFUSALS.name: [],
        metrics.RETENTION_PURGED.name: [()],
    }


def counter_families(stored: dict[str, float]) -> Iterator[Metric]:
    series: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for name, values in known_series().items():
        for labels in values:
            series[name][labels] = 0.0
    histogram_buckets: dict[int, float] = defaultdict(float)
    histogram_sum = 0.0
    for key, value in stored.items():
        name, labels = metrics.parse_field(key)
        if name == metrics.DECISION_TO_WEBHOOK.name:
            if labels[:1] == ("bucket",):
                histogram_buckets[int(labels[1])] += value
            elif labels == ("sum",):
                histogram_sum += value
        else:
            series[name][labels] = series[name].get(labels, 0.0) + value
    for family in metrics.COUNTERS:
        counter = CounterMetricFamily(family.name, family.help, labels=family.labels)
        for labels, value in sorted(series[family.name].items()):
            if len(labels) == len(family.labels):
                counter.add_metric(list(labels), value)
        yield counter
    histogram = metrics.DECISION_TO_WEBHOOK
    cumulative, running = [], 0.0
    for index, bound in enumerate((*histogram.buckets, float("inf"))):
        running += histogram_buckets.get(index, 0.0)
        cumulative.append((_bound(bound), running))
    webhook_latency = HistogramMetricFamily(histogram.name, histogram.help)
    webhook_latency.add_metric([], cumulative, sum_value=histogram_sum)
    yield webhook_latency


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def gauge_families(now=None) -> Iterator[Metric]:
    now = now or timezone.now()
    depth = selectors.queue_depth()
    queue = GaugeMetricFamily(
        "handoff_queue_depth",
        "Open escalations waiting for a person, by tier and status (pending or claimed).",
        labels=("tier", "status"),
    )
    tiers = sorted(set(TIERS) | {tier for tier, _ in depth})
    for tier in tiers:
        for status in Escalation.QUEUE_STATUSES:
            queue.add_metric([str(tier), str(status)], depth.get((tier, status), 0))
    yield queue
    oldest = selectors.oldest_open_created_at()
    yield GaugeMetricFamily(
        "handoff_queue_oldest_age_seconds",
        "Age of the oldest open escalation (0 when none is open).",
        value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )
    for name, rows, what in (
        ("handoff_webhook_outbox", selectors.webhook_outbox(), "Decision deliveries"),
        ("handoff_notification_outbox", selectors.notification_outbox(), "Notifications"),
    ):
        outbox = GaugeMetricFamily(
            name, f"{what} not yet sent, by status (pending, sending, retrying).", labels=("status",)
        )
        for state in selectors.UNFINISHED:
            outbox.add_metric([state], rows.get(state, 0))
        yield outbox


class HandoffCollector:
    """prometheus_client's custom-collector protocol: collect() yields the families."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "handoff_scrape_source_up",
            "Whether the scrape could read a source: counters (the shared store: Redis in "
            "production) and database (the gauges).",
            labels=("source",),
        )
        duration = GaugeMetricFamily(
            "handoff_scrape_duration_seconds", "Time spent reading each source.", labels=("source",)
        )
        for source, read in (("counters", self._counters), ("database", self._gauges)):
            started = time.perf_counter()
            try:
                families = list(read())
            except (RedisError, DatabaseError) as exc:
                log.warning("metrics: %s not read (%s: %s)", source, type(exc).__name__, exc)
                families, ok = [], False
            else:
                ok = True
            duration.add_metric([source], time.perf_counter() - started)
            up.add_metric([source], 1 if ok else 0)
            yield from families
        yield up
        yield duration

    def _counters(self) -> Iterator[Metric]:
        return counter_families(metrics.snapshot())

    def _gauges(self) -> Iterator[Metric]:
        return gauge_families()


def registry() -> CollectorRegistry:
    """A registry of Handoff's families only: no per-process collectors (process_*,
    python_gc_*), whose figures would depend on which process answered the scrape."""
    found = CollectorRegistry(auto_describe=False)
    found.register(HandoffCollector())
    return found
