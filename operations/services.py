"""The writes of operating Handoff: retention (RETENTION_DAYS).

A purge batch runs in one transaction, under the rollups' lease (insights.services
.rollup_lease: no refresh rebuilds a day meanwhile): the insights keep what the batch's
escalations contributed (archived rollup rows), the escalations go with everything that
hangs off them, and the days they were created on are rebuilt from what remains. The
insights page shows the same figures before and after; the per-agent decisions feed keeps
its numbering (its cursor is a sequence number on the agent, never reused).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from escalations import services as escalation_services
from insights import services as insights_services

from . import metrics, selectors

log = logging.getLogger(__name__)

# Escalations per purge transaction.
RETENTION_BATCH = 500


def retention_purge(*, now: datetime | None = None, days: int | None = None) -> int:
    """Purge one batch of expired escalations (operations.selectors.expired_escalations
    with `before` = now - RETENTION_DAYS, or `days`). Does nothing when retention is off
    (0) or another writer of the rollups holds their lease. Rows locked by someone else
    are skipped this time. Returns how many escalations were purged."""
    days = settings.RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    now = now or timezone.now()
    with insights_services.rollup_lease(now) as held:
        if not held:
            log.info("retention: the rollups' lease is held (a refresh is running); next time")
            return 0
        with transaction.atomic():
            expired = selectors.expired_escalations(before=now - timedelta(days=days))
            ids = list(
                expired.values_list("pk", flat=True)[:RETENTION_BATCH].select_for_update(skip_locked=True)
            )
            if not ids:
                return 0
            touched = insights_services.rollups_archive(escalations=expired.filter(pk__in=ids))
            purged = escalation_services.escalations_delete(ids=ids)
            insights_services.rollups_rebuild(days=touched)
            metrics.count_on_commit(metrics.RETENTION_PURGED, purged)
    return purged
