from django.apps import AppConfig


def _count_refusal(sender: str, **kwargs) -> None:
    """handoff_site.ratelimit's `refused` signal: sender is the limit's name."""
    from . import metrics

    metrics.rate_limit_refused(sender)


class OperationsConfig(AppConfig):
    """Running Handoff: metrics, health and readiness probes, logs, retention."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from handoff_site import ratelimit

        ratelimit.refused.connect(_count_refusal, dispatch_uid="operations.rate_limit_refusals")
