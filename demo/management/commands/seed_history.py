from django.core.management.base import BaseCommand
from django.utils import timezone

from demo.history import seed_history


class Command(BaseCommand):
    help = "Load eight weeks of escalation history for the insights page (idempotent)."

    def handle(self, *args, **options):
        seed_history(now=timezone.now(), say=self.stdout.write)
