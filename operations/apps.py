from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Running Handoff: metrics, health and readiness probes, logs, retention."""

    name = "operations"
    verbose_name = "Operations"
