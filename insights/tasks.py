"""Celery tasks of the insights app: the periodic rollup refresh and drift check."""

import logging

from celery import shared_task

from . import services

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def refresh_insights_task() -> int:
    """Rebuild the rollup days that may have changed (services.rollups_refresh), then raise
    drift alerts (services.drift_check, once per agent-week). Safe to run twice or late.
    Returns how many days were rebuilt."""
    days = services.rollups_refresh()
    alerts = services.drift_check()
    if alerts:
        log.info("drift alerts: %s", ", ".join(a.agent.name for a in alerts))
    return days
