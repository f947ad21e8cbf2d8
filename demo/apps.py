from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data for `make run` and the screenshots: no models, two commands."""

    name = "demo"
    verbose_name = "Demo data"
