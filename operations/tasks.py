"""Celery tasks of operating Handoff: the retention purge (beat runs it)."""

from celery import shared_task

from escalations.tasks import repeat

from . import services


@shared_task(ignore_result=True)
def purge_expired_task() -> int:
    """Purge escalations past RETENTION_DAYS, batch after batch while batches are full
    (within the periodic budget). Nothing when retention is off. Returns how many."""
    return repeat(services.retention_purge, "escalations purged (retention)", services.RETENTION_BATCH)
